"""One process's part of an Optuna search whose study lives in a database.

Several processes may share a study (same storage): each asks trials while the study has fewer
than `n_trials` (finished, running or waiting), under a lock file in the sweep folder and, for a
study in PostgreSQL, an advisory lock in the database (processes on machines that share no disk),
so none asks one too many. A trial whose process died (same machine: its pid is gone;
elsewhere: no heartbeat for two intervals) is marked failed and queued again with the same values,
and the queued copy replaces it in the count. Job folders are named by trial number.
"""

from __future__ import annotations

import copy
import fcntl
import functools
import json
import logging
import math
import os
import socket
import threading
import time
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobStatus
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from optuna.trial import FrozenTrial, Trial, TrialState

from hydra_plugins.trainer_optuna_sweeper import _check, _space
from trainer.config.validate import static_monitor
from trainer.runtime.errors import ConfigError
from trainer.sweeps.jobs import job_number
from trainer.sweeps.objective import direction_of
from trainer.sweeps.trial import OWNER, make_pruner, open_storage, storage_url

log = logging.getLogger(__name__)
RESULTS = "optimization_results.yaml"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def told(study: optuna.Study, trial: Trial, value: float | None, state: TrialState) -> None:
    try:
        study.tell(trial, value, state=state)
    except RuntimeError as exc:  # the grid sampler calls study.stop() on its last point
        if "Study.stop" not in str(exc):
            raise


# What optuna-dashboard shows of each trial beside its value (user attributes), from its job's folder.
SHOWN_METRICS = ("val/loss", "val/acc", "test/loss", "test/acc", "best_epoch", "epochs", "status")


def record_job(study: optuna.Study, trial: Trial, ret: Any) -> None:
    """The trial's job folder and its metrics.json's main numbers as user attributes (never fails
    the search: a job that wrote no metrics has only its folder)."""
    try:
        folder = Path(str(ret.hydra_cfg.hydra.runtime.output_dir))
        trial.set_user_attr("job_folder", str(folder))
        metrics = json.loads((folder / "metrics.json").read_text())
        for key in SHOWN_METRICS:
            if key in metrics:
                trial.set_user_attr(key, metrics[key])
    except Exception as exc:  # noqa: BLE001  (attributes are a courtesy)
        log.debug("trial %d: no job attributes (%s)", trial.number, exc)


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Only one process of the search counts and asks trials at a time."""
    with open(folder / ".optuna.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def check_no_jobs(sweep_dir: Path, url: str) -> None:
    """A study with no trials in a sweep folder that holds job folders (its database deleted or lost)
    would number its trials from 0 again, into the old jobs' folders: refused."""
    jobs = sorted((p.name for p in sweep_dir.iterdir() if p.is_dir() and job_number(p.name) is not None
                   and (p / ".hydra").is_dir()), key=job_number)
    if jobs:
        shown = ", ".join(jobs[:3]) + (", ..." if len(jobs) > 3 else "")
        raise ConfigError(f"{sweep_dir} holds {len(jobs)} job folders of an earlier search ({shown}) but "
                          f"its study in {url} has no trials (the database was deleted, lost or "
                          "replaced): a new study would number its trials from 0 again, into those "
                          "folders. Restore the study's database to continue that search, or start "
                          "this one in another hydra.sweep.dir")


@functools.cache
def lock_engine(url: str) -> Any:
    import sqlalchemy

    return sqlalchemy.create_engine(url, pool_size=1)


@contextmanager
def database_locked(url: str, study_name: str) -> Iterator[None]:
    """With a study in PostgreSQL, only one process of the search, on any machine, counts and asks
    trials at a time: a session advisory lock, which the server drops when a killed process's
    connection goes. Other databases rely on the sweep folder's lock file alone."""
    if not url.startswith("postgresql"):
        yield
        return
    from sqlalchemy import text

    key = zlib.crc32(f"trainer_optuna_sweeper:{study_name}".encode())
    try:
        conn = lock_engine(url).connect()
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
    except Exception as exc:  # a missing driver, a server that cannot be reached
        raise ConfigError(f"hydra.sweeper.storage={url} cannot be opened ({type(exc).__name__}: {exc}); "
                          "give an SQLAlchemy URL such as postgresql+psycopg://user:password@host/db "
                          "(with its driver installed: pip install '.[postgres]')") from None
    try:
        yield
    finally:
        conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
        conn.close()


class Heartbeat:
    """Records a heartbeat for the running trials every `interval` seconds, in a thread."""

    def __init__(self, storage: Any, trial_ids: list[int], interval: int) -> None:
        self.storage, self.trial_ids, self.interval = storage, trial_ids, interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while not self.stop.wait(self.interval):
            for trial_id in self.trial_ids:
                self.storage.record_heartbeat(trial_id)

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


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
            if host == socket.gethostname() and pid.isdigit() and not alive(int(pid)):
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
        if not history:
            return []
        for folder in self.sweep_dir.glob(f"{history[-1]}*"):  # `N` or `N_values` (folder names)
            last = folder / "checkpoints" / "last.pt"
            if job_number(folder.name) == history[-1] and last.is_file():
                return [f"ckpt={_space.quoted(str(last))}"]
        return []

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
            value, state = None, TrialState.COMPLETE
            try:
                # A pruned job raises TrialPruned; looked at directly, since reading return_value
                # would print Hydra's "Error executing job" for it.
                if ret.status == JobStatus.FAILED and isinstance(ret._return_value, optuna.TrialPruned):
                    state = TrialState.PRUNED
                else:
                    value = float(ret.return_value)
            except Exception as exc:  # the job raised; Hydra keeps the exception in its return
                state = TrialState.FAIL
                failures.append(ret)
                log.warning("trial %d failed: %s: %s", trial.number, type(exc).__name__, exc)
            record_job(study, trial, ret)
            told(study, trial, value if state == TrialState.COMPLETE else None, state)
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
        self.save_results(study)

    def save_config(self) -> None:
        """multirun.yaml, as Hydra's own sweeper writes it, with the study's storage and name."""
        saved = copy.deepcopy(self.config)
        with read_write(saved), open_dict(saved):
            saved.hydra.sweeper.storage, saved.hydra.sweeper.study_name = self.url, self.study_name
        OmegaConf.save(saved, self.sweep_dir / "multirun.yaml")

    def save_results(self, study: optuna.Study) -> None:
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not complete:
            log.warning("no trial of the study completed; %s not written", RESULTS)
            return
        best: FrozenTrial = study.best_trial
        log.info("best trial %d: %s -> %s", best.number, best.params, best.value)
        OmegaConf.save(OmegaConf.create({"name": "optuna", "study_name": self.study_name, "storage": self.url,
                                         "best_trial": best.number, "best_params": best.params,
                                         "best_value": best.value}), self.sweep_dir / RESULTS)
