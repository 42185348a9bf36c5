"""One process's part of an Optuna search whose study lives in a database.

Several processes may share a study (same storage): each asks trials while the study has fewer
than `n_trials` (finished, running or waiting), under a lock file in the sweep folder and, for a
study in PostgreSQL, an advisory lock in the database (processes on machines that share no disk),
so none asks one too many (`_locks`). A trial whose process died (same machine: its pid is gone;
elsewhere: no heartbeat for two intervals) is marked failed and queued again with the same values,
and the queued copy replaces it in the count. Job folders are named by trial number (`_trials`).
"""

from __future__ import annotations

import copy
import logging
import math
import os
import socket
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from optuna.trial import Trial, TrialState

from hydra_plugins.trainer_optuna_sweeper import _check, _space
from hydra_plugins.trainer_optuna_sweeper._locks import Heartbeat, database_locked, locked
from hydra_plugins.trainer_optuna_sweeper._trials import (
    check_no_jobs,
    last_checkpoint,
    outcome,
    record_job,
    save_results,
    told,
)
from trainer.config.validate import static_monitor
from trainer.runtime.errors import ConfigError
from trainer.sweeps.objective import direction_of
from trainer.sweeps.status import pid_alive
from trainer.sweeps.trial import OWNER, make_pruner, open_storage, storage_url

log = logging.getLogger(__name__)


class Search:
    def __init__(self, config: DictConfig, launcher: Any, *, sampler: Any, direction: str | None,
                 storage: str | None, study_name: str | None, n_trials: int, n_jobs: int,
                 max_failure_rate: float, params: dict[str, str] | None, pruner: str,
                 pruner_args: dict[str, Any], heartbeat_interval: int, config_loader: Any = None) -> None:
        if direction is None:  # the run's monitor decides (monitor=auto on a file of unknown task: a loss)
            direction = direction_of(static_monitor(config) or "val/loss")
        if direction not in ("minimize", "maximize"):
            raise ConfigError(f"hydra.sweeper.direction={direction!r} must be minimize or maximize")
        for key, value, low in (("n_trials", n_trials, 1), ("n_jobs", n_jobs, 1),
                                ("heartbeat_interval", heartbeat_interval, 1)):
            if not isinstance(value, int) or value < low:
                raise ConfigError(f"hydra.sweeper.{key}={value!r} must be a whole number >= {low}")
        if isinstance(max_failure_rate, bool) or not 0 <= max_failure_rate <= 1:
            raise ConfigError(f"hydra.sweeper.max_failure_rate={max_failure_rate!r} must be a number in "
                              "[0, 1]: the share of a batch's trials that may fail before the search stops")
        self.config, self.launcher, self.sampler = config, launcher, sampler
        self.direction, self.n_trials, self.n_jobs = direction, n_trials, n_jobs
        self.max_failure_rate, self.params = max_failure_rate, dict(params or {})
        self.pruner = make_pruner(pruner, dict(pruner_args or {}))
        self.heartbeat_interval = heartbeat_interval
        self.config_loader = config_loader  # Hydra's: the space and each trial are composed as jobs are
        self.sweep_dir = Path(str(config.hydra.sweep.dir))
        self.url = storage_url(storage, self.sweep_dir)
        self.study_name = study_name or self.sweep_dir.name
        self.owner = f"{socket.gethostname()}:{os.getpid()}"

    def open_study(self) -> optuna.Study:
        """Create the study, or load it when it exists (a rerun, or another process of the search)."""
        storage = open_storage(
            self.url, heartbeat_interval=self.heartbeat_interval,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                inherit_intermediate_values=True))  # a retry resumed from a checkpoint goes on reporting
        study = optuna.create_study(storage=storage, study_name=self.study_name, sampler=self.sampler,
                                    pruner=self.pruner, direction=self.direction, load_if_exists=True)
        if study.direction.name.lower() != self.direction:
            raise ConfigError(f"the study {self.study_name} in {self.url} was made to "
                              f"{study.direction.name.lower()}, not to {self.direction}; pass another "
                              "hydra.sweep.dir or hydra.sweeper.study_name for a new study")
        self.storage, self.study_id = storage, storage.get_study_id_from_name(self.study_name)
        # optuna-dashboard's axes: the metric's name, not "Objective 0"
        study.set_metric_names([static_monitor(self.config) or
                                ("val/acc" if self.direction == "maximize" else "val/loss")])
        if study.get_trials(deepcopy=False):
            # Continuing: a sampler seeded as before would draw the first trials' values again.
            log.info("continuing the study's %d trials; the sampler is reseeded", len(study.trials))
            study.sampler.reseed_rng()
        return study

    @contextmanager
    def turn(self) -> Iterator[None]:
        """This process's turn to create the study or to count and ask trials (see the module doc)."""
        with locked(self.sweep_dir), database_locked(self.url, self.study_name):
            yield

    def trial_id(self, number: int) -> int:
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)

    def fail_dead_trials(self, study: optuna.Study) -> None:
        """Fail and requeue running trials whose process is gone: on this machine by pid, at once;
        elsewhere once their heartbeat is older than two intervals (Optuna's own check)."""
        retry = self.storage.get_heartbeat_stale_trial_callback()
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            host, _, pid = str(trial.user_attrs.get(OWNER, "")).rpartition(":")
            if host == socket.gethostname() and pid.isdigit() and not pid_alive(int(pid)):
                log.warning("trial %d: its process %s is gone; marked failed, its values queued again",
                            trial.number, pid)
                self.storage.set_trial_state_values(self.trial_id(trial.number), TrialState.FAIL)
                retry(study, self.storage.get_trial(self.trial_id(trial.number)))
        optuna.storages.fail_stale_trials(study)

    def ask(self, study: optuna.Study, space: dict[str, Any]) -> tuple[list[Trial], int]:
        """The trials this process runs next (none while others finish the last ones), and how many
        trials of the study count toward n_trials and are finished."""
        self.fail_dead_trials(study)
        trials = study.get_trials(deepcopy=False)
        replaced = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
        counted = [t for t in trials if t.number not in replaced]
        finished = sum(t.state.is_finished() for t in counted)
        waiting = sum(t.state == TrialState.WAITING for t in counted)
        slots = min(self.n_jobs, waiting + self.n_trials - len(counted))
        asked = []
        for _ in range(max(0, slots)):
            trial = study.ask()
            trial.set_user_attr(OWNER, self.owner)
            self.storage.record_heartbeat(self.trial_id(trial.number))  # from now on it can go stale
            _space.suggest(trial, space)
            asked.append(trial)
        return asked, finished

    def checkpoint_of_retried(self, trial: Trial) -> list[str]:
        """`ckpt=` the last checkpoint of the attempt this trial retries, if it left one: with
        `resume=true` a trial killed midway continues from it (in its own, new job folder)."""
        history = self.storage.get_trial(self.trial_id(trial.number)).system_attrs.get("retry_history")
        last = last_checkpoint(self.sweep_dir, history[-1]) if history else None
        return [f"ckpt={_space.quoted(str(last))}"] if last is not None else []

    def launch(self, trials: list[Trial], fixed: dict[str, str]) -> list[Any]:
        """Run the trials as jobs numbered by trial (consecutive numbers go in one launcher batch)."""
        storage = [f"hydra.sweeper.storage={_space.quoted(self.url)}",
                   f"hydra.sweeper.study_name={_space.quoted(self.study_name)}",
                   f"hydra.sweeper.direction={self.direction}"]
        resume = str(fixed.get("resume", "false")).lower() == "true"
        returns: list[Any] = []
        start = 0
        for end in range(1, len(trials) + 1):
            if end == len(trials) or trials[end].number != trials[end - 1].number + 1:
                batch = [_space.as_overrides(t.params, fixed) + storage
                         + (self.checkpoint_of_retried(t) if resume else []) for t in trials[start:end]]
                returns += self.launcher.launch(batch, initial_job_idx=trials[start].number)
                start = end
        return returns

    def fail_uncomposable(self, study: optuna.Study, trials: list[Trial],
                          fixed: dict[str, str]) -> list[Trial]:
        """The trials whose config composes; the others are marked failed (not retried: their values
        would fail again) and the study goes on."""
        kept = []
        for trial in trials:
            why = (None if self.config_loader is None
                   else _check.composable(self.config_loader, self.config, trial.params, fixed))
            if why is None:
                kept.append(trial)
                continue
            log.warning("trial %d failed: its config cannot be composed: %s", trial.number, why)
            told(study, trial, None, TrialState.FAIL)
        return kept

    def tell(self, study: optuna.Study, trials: list[Trial], returns: list[Any]) -> None:
        failures = []
        for trial, ret in zip(trials, returns, strict=True):
            value, state = outcome(ret, trial.number)
            if state == TrialState.FAIL:
                failures.append(ret)
            record_job(study, trial, ret)
            told(study, trial, value, state)
            shown = f"{value:.4g}" if value is not None else state.name.lower()
            values = " ".join(f"{k}={v}" for k, v in trial.params.items())
            log.info("trial %d: %s -> %s", trial.number, values, shown)
        if failures and len(failures) / len(returns) > self.max_failure_rate:
            log.error("%d of %d trials failed, above hydra.sweeper.max_failure_rate=%s",
                      len(failures), len(returns), self.max_failure_rate)
            failures[0].return_value  # noqa: B018  (raises the job's exception, with its traceback)

    def prepare(self, arguments: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
        """The search space and the fixed overrides of `params` and the command line; the grid."""
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        # Optuna's heartbeat thread runs only in Study.optimize; ours (Heartbeat) does it for ask/tell.
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        space, fixed = _space.parse([f"{k}={v}" for k, v in self.params.items()] + list(arguments))
        if self.config_loader is not None:  # before anything is written
            _check.check_space(space, fixed, self.config_loader, self.config)
        if isinstance(self.sampler, partial):  # the grid sampler: its points come from the params
            points = _space.grid(space)
            self.sampler = self.sampler(points)
            self.n_trials = min(self.n_trials, math.prod(len(v) for v in points.values()))
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        return space, fixed

    def run(self, arguments: list[str]) -> None:
        space, fixed = self.prepare(arguments)
        with self.turn():  # two processes creating the database's tables would collide
            study = self.open_study()
            if not study.get_trials(deepcopy=False):
                check_no_jobs(self.sweep_dir, self.url)
        self.save_config()
        log.info("study %s in %s: %s %s, %s sampler, %s; %d trials", self.study_name, self.url,
                 self.direction, self.config.monitor if "monitor" in self.config else "the value",
                 type(study.sampler).__name__, type(self.pruner).__name__, self.n_trials)
        while True:
            with self.turn():
                trials, finished = self.ask(study, space)
            if not trials:
                if finished >= self.n_trials:
                    break
                time.sleep(min(self.heartbeat_interval, 5))  # other processes run the last trials
                continue
            trials = self.fail_uncomposable(study, trials, fixed)
            if not trials:
                continue
            with Heartbeat(self.storage, [self.trial_id(t.number) for t in trials], self.heartbeat_interval):
                returns = self.launch(trials, fixed)
            self.tell(study, trials, returns)
        save_results(study, self.sweep_dir, self.study_name, self.url)

    def save_config(self) -> None:
        """multirun.yaml, as Hydra's own sweeper writes it, with the study's storage and name."""
        saved = copy.deepcopy(self.config)
        with read_write(saved), open_dict(saved):
            saved.hydra.sweeper.storage, saved.hydra.sweeper.study_name = self.url, self.study_name
        OmegaConf.save(saved, self.sweep_dir / "multirun.yaml")
