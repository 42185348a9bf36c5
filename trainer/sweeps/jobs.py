"""Sweep jobs: folder names that say what differs, and the record of the process that runs a job.

`configs/config.yaml` names a job's folder `${trainer_job_dir:${hydra.job.num},${hydra.job.override_dirname}}`
(e.g. `03_optimizer=adam,optimizer.lr=0.01`: the number padded to the sweep's width, the swept keys in
the command line's order) and excludes from Hydra's `override_dirname` the keys that are the same in
every job (`${trainer_fixed_keys:}`). Hydra computes `override_dirname` in the sweep's main process,
where `SweepCallback.on_multirun_start` has seen the sweep's own overrides and counted its jobs.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import socket
import time
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from trainer.runtime.resolvers import RUN_ID

log = logging.getLogger(__name__)

NEVER_IN_NAMES = ("resume", "ckpt", "overwrite", "progress")  # say how a job runs, not what it is
MAX_NAME = 100  # characters of a job folder's name: short enough to read as a TensorBoard run
# Not allowed in a file name on Windows, macOS or Linux, or awkward in one (whitespace).
UNSAFE = re.compile(r'[\x00-\x1f/\\:*?"<>|\s]')
PROCESS_FILE = "process.json"
# `=0.007845577141205887`: a value with more than 4 significant digits after its point, in a name
LONG_NUMBER = re.compile(r"=(-?\d+\.\d{5,}(?:e-?\d+)?)(?=,|$)")
# Where the next `key=value` of an `override_dirname` starts: a comma before `key=` (not the commas
# inside a value such as `model.widths=[64,32]`)
NEXT_ITEM = re.compile(r",(?=[+~]?[\w.@/-]+=)")


class SweepKeys(metaclass=Singleton):
    """Override keys of the running sweep that are the same in every job. A Hydra singleton:
    launchers that compose job configs in worker processes (joblib, submitit) carry it there."""

    def __init__(self) -> None:
        self.fixed: list[str] = []
        self.swept: list[str] = []  # in the command line's order: the order of the names' keys
        self.jobs: int | None = None  # how many jobs the sweep runs, where known at its start

    def clear(self) -> None:
        """No sweep running (its end): names as outside a sweep, for a next one in this process."""
        self.__init__()


def swept_keys(config: DictConfig) -> tuple[list[str], list[str]]:
    """The keys a sweep varies (in the command line's order, then the sweep's params') and those it
    sets to one value, from its main config.

    Varied: an override with sweep syntax (`optimizer=sgd,adam`, `range(...)`, `choice(...)`) or a key
    of `hydra.sweeper.params` (an experiment's sweep, Optuna's search space).
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    params = config.hydra.sweeper.get("params") or {}
    swept = [o.key_or_group for o in overrides if o.is_sweep_override()]
    swept = list(dict.fromkeys([*swept, *(str(k).lstrip("+~") for k in params)]))
    fixed = [o.key_or_group for o in overrides if o.key_or_group not in swept]
    return swept, fixed


def fixed_keys() -> list[str]:
    """`${trainer_fixed_keys:}`: what Hydra leaves out of `override_dirname`."""
    return [*NEVER_IN_NAMES, *SweepKeys.instance().fixed]


def job_dir_name(num: int | str, override_dirname: str) -> str:
    """`03_optimizer=adam,optimizer.lr=0.01`: the job number first, zero-padded to the sweep's width
    (`00` .. `29` in a 30-job sweep, so that names sort as numbers), then what differs, in the command
    line's order, shortened; a number drawn to 17 digits (an Optuna trial's
    `optimizer.lr=0.007845577141205887`) to 4 significant ones (`optimizer.lr=0.007846`): the job
    number keeps the name unique, and the job's .hydra/overrides.yaml has the exact value."""
    existing = existing_job_dir(num)
    if existing is not None:  # a rerun of the sweep (resume): its folder, as an earlier version named it
        return existing
    keys = SweepKeys.instance()
    what = in_command_order(str(override_dirname), keys.swept)
    what = UNSAFE.sub("_", LONG_NUMBER.sub(lambda m: f"={float(m.group(1)):.4g}", what))
    number = f"{int(num):0{number_width(keys.jobs)}d}"
    name = f"{number}_{what}" if what else number
    if len(name) > MAX_NAME:  # the number stays first, so the name stays unique
        name = name[: MAX_NAME - 1] + "~"
    return name.rstrip(". ")  # Windows drops trailing dots and spaces


def number_width(jobs: int | None) -> int:
    """Digits of the last job's number (2 for 10 to 100 jobs); 1 when the count is not known."""
    return len(str(jobs - 1)) if jobs and jobs > 1 else 1


def in_command_order(override_dirname: str, keys: list[str]) -> str:
    """Hydra's `override_dirname` (its items sorted by text) with the items of `keys` first, in that
    order (`seed=0,optimizer=adam` for `optimizer=adam,seed=0` of `-m seed=0,1 optimizer=sgd,adam`)."""
    rank = {key: i for i, key in enumerate(keys)}
    items = NEXT_ITEM.split(override_dirname) if override_dirname else []
    items.sort(key=lambda item: rank.get(item.partition("=")[0].lstrip("+~"), len(rank)))  # stable
    return ",".join(items)


def existing_job_dir(num: int | str) -> str | None:
    """The name of the folder that job `num` of the running sweep already has, with the same
    overrides (a rerun of the same sweep), if any; a job of other values gets a folder of its own."""
    from hydra.core.hydra_config import HydraConfig

    try:
        sweep = Path(str(HydraConfig.get().sweep.dir))
        wanted = same_job_overrides(list(HydraConfig.get().overrides.task))
    except Exception:  # outside a Hydra job (tests call job_dir_name directly)
        return None
    if not sweep.is_dir():
        return None
    for folder in sweep.iterdir():
        saved = folder / ".hydra" / "overrides.yaml"
        if job_number(folder.name) == int(num) and saved.is_file():
            try:
                if same_job_overrides(list(OmegaConf.load(saved))) == wanted:
                    return folder.name
            except Exception:  # an unreadable record: not this job's folder
                continue
    return None


def hydra_subdir(resume: object, ckpt: object) -> str:
    """`${trainer_hydra_subdir:}`, where Hydra writes a job's config files: `.hydra`, or a pending
    folder for a run that may be refused (a resume, or a job folder that holds a run:
    trainer.storage.rundir)."""
    return f".hydra/pending-{RUN_ID}" if resume is True or ckpt or _output_holds_run() else ".hydra"


def _output_holds_run() -> bool:
    """Whether the job's output folder (Hydra's, set before it writes its config files) holds a run."""
    from hydra.core.hydra_config import HydraConfig

    try:
        out = Path(str(HydraConfig.get().runtime.output_dir))
    except Exception:  # no job yet (the sweep's own process): nothing to stage
        return False
    from trainer.storage.rundir import run_files  # imports torch: only once a job runs

    return bool(run_files(out))


def same_job_overrides(overrides: list[str]) -> set[str]:
    """A job's overrides without those a resume may change (`resume=true`, `epochs=...`)."""
    from trainer.storage.resume import RESUMABLE_CHANGES

    return {str(o) for o in overrides
            if str(o).lstrip("+~").partition("=")[0] not in (*NEVER_IN_NAMES, *RESUMABLE_CHANGES)}


def job_number(name: str) -> int | None:
    """The job number a folder name starts with (`3_optimizer=adam` and the older `3`), else None."""
    match = re.match(r"(\d+)(?:_|$)", name)
    return int(match.group(1)) if match else None


def order_key(name: str) -> tuple[float, str]:
    """Sorts job folders by job number (`10_...` after `9_...`), other names after them."""
    number = job_number(name)
    return (number, "") if number is not None else (float("inf"), name)


def hydra_arg(key: str, value: str) -> str:
    """`key=value` as one shell word that Hydra reads back as `value`: quoted inside when the value
    holds what Hydra would parse (a job folder's `=` and `,`)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        override = OverridesParser.create().parse_override(f"{key}={value}")
        if not override.is_sweep_override() and override.value() == value:
            return shlex.quote(f"{key}={value}")
    except HydraException:  # a value Hydra cannot read unquoted
        pass
    return shlex.quote(f"{key}={json.dumps(value)}")


def record_process(out_dir: str | Path, started: float | None = None) -> None:
    """Write which process runs the job, so a report can tell at once when it died. Jobs trained
    together (hydra/launcher=vectorized) share one `started`: none of them supersedes another."""
    path = Path(out_dir) / PROCESS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"pid": os.getpid(), "host": socket.gethostname(), "started": started or time.time()}
    path.write_text(json.dumps(record))


def planned_jobs(sweep_dir: Path) -> list[list[str]] | None:
    """The overrides of every job a grid sweep will run, from the `multirun.yaml` Hydra's basic
    sweeper writes before the first job; None for other sweepers (Optuna decides as it goes)."""
    path = sweep_dir / "multirun.yaml"
    if not path.is_file():
        return None
    try:
        hydra = OmegaConf.load(path).hydra
        if not str(hydra.sweeper.get("_target_", "")).endswith("BasicSweeper"):
            return None
        return grid_jobs(hydra)
    except Exception as exc:  # a damaged file: report the folders there are
        log.warning("%s cannot be read (%s); listing the job folders only", path, exc)
        return None


def grid_jobs(hydra: DictConfig) -> list[list[str]]:
    """Each job's overrides, as Hydra's basic sweeper splits the sweep (its params, then the command line)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    arguments = [f"{k}={v}" for k, v in (hydra.sweeper.get("params") or {}).items()]
    overrides = OverridesParser.create().parse_overrides(arguments + list(hydra.overrides.task))
    return [list(job) for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def sweep_size(config: DictConfig) -> int | None:
    """How many jobs the sweep runs: a grid's (Hydra's basic sweeper), an Optuna search's `n_trials`;
    None for another sweeper, or a grid that cannot be counted here."""
    sweeper = config.hydra.sweeper
    if str(sweeper.get("_target_", "")).endswith("BasicSweeper"):
        try:
            return len(grid_jobs(config.hydra))
        except Exception:  # the sweeper itself will say what is wrong with it
            return None
    trials = sweeper.get("n_trials")
    return trials if isinstance(trials, int) and not isinstance(trials, bool) else None


class SweepCallback(Callback):
    """Hydra callback (configs/config.yaml `hydra.callbacks`): job names, the sweep's HParams. (A job's
    process record is written by the run once its folder is its own: trainer.storage.rundir.)"""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        keys = SweepKeys.instance()
        swept, keys.fixed = swept_keys(config)
        keys.swept, keys.jobs = swept, sweep_size(config)
        try:
            from trainer.logs.dashboard import write_sweep_experiment

            write_sweep_experiment(Path(str(config.hydra.sweep.dir)), config, swept)
        except Exception as exc:  # the dashboard must never stop a sweep
            log.warning("could not write the sweep's HParams experiment: %s", exc)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Where to look at the whole sweep, once, after the jobs' one line each."""
        SweepKeys.instance().clear()
        sweep = Path(str(config.hydra.sweep.dir))
        print(f"sweep done: {sweep}\n  compare the jobs: python -m trainer.report {sweep}\n"
              f"  view with: tensorboard --logdir {sweep}")

