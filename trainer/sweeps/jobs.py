"""Sweep jobs: folder names that say what differs, and the record of the process that runs a job.

`configs/config.yaml` names a job's folder `${trainer_job_dir:${hydra.job.num},${hydra.job.override_dirname}}`
(e.g. `3_optimizer=adam,optimizer.lr=0.01`) and excludes from Hydra's `override_dirname` the keys that
are the same in every job (`${trainer_fixed_keys:}`). Hydra computes `override_dirname` in the
sweep's main process, where `SweepCallback.on_multirun_start` has seen the sweep's own overrides.
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

from trainer.runtime.job import RUN_ID

log = logging.getLogger(__name__)

NEVER_IN_NAMES = ("resume", "ckpt", "overwrite", "progress")  # say how a job runs, not what it is
MAX_NAME = 100  # characters of a job folder's name: short enough to read as a TensorBoard run
# Not allowed in a file name on Windows, macOS or Linux, or awkward in one (whitespace).
UNSAFE = re.compile(r'[\x00-\x1f/\\:*?"<>|\s]')
PROCESS_FILE = "process.json"
# `=0.007845577141205887`: a value with more than 4 significant digits after its point, in a name
LONG_NUMBER = re.compile(r"=(-?\d+\.\d{5,}(?:e-?\d+)?)(?=,|$)")


class SweepKeys(metaclass=Singleton):
    """Override keys of the running sweep that are the same in every job. A Hydra singleton:
    launchers that compose job configs in worker processes (joblib, submitit) carry it there."""

    def __init__(self) -> None:
        self.fixed: list[str] = []


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
    """`3_optimizer=adam,optimizer.lr=0.01`: the job number first, then what differs, shortened;
    a number drawn to 17 digits (an Optuna trial's `optimizer.lr=0.007845577141205887`) to 4
    significant ones (`optimizer.lr=0.007846`): the job number keeps the name unique, and the
    job's .hydra/overrides.yaml has the exact value."""
    existing = existing_job_dir(num)
    if existing is not None:  # a rerun of the sweep (resume): its folder, as an earlier version named it
        return existing
    what = UNSAFE.sub("_", LONG_NUMBER.sub(lambda m: f"={float(m.group(1)):.4g}", str(override_dirname)))
    name = f"{num}_{what}" if what else str(num)
    if len(name) > MAX_NAME:  # the number stays first, so the name stays unique
        name = name[: MAX_NAME - 1] + "~"
    return name.rstrip(". ")  # Windows drops trailing dots and spaces


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


def read_process(job_dir: Path) -> dict[str, Any] | None:
    """The job's process record, or None (older folders, or a job that never started)."""
    try:
        record = json.loads((job_dir / PROCESS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("pid"), int) else None


def process_alive(record: dict[str, Any]) -> bool | None:
    """Whether the recorded process still exists; None when it ran on another machine."""
    if record.get("host") != socket.gethostname():
        return None
    try:
        os.kill(record["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def planned_jobs(sweep_dir: Path) -> list[list[str]] | None:
    """The overrides of every job a grid sweep will run, from the `multirun.yaml` Hydra's basic
    sweeper writes before the first job; None for other sweepers (Optuna decides as it goes)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    path = sweep_dir / "multirun.yaml"
    if not path.is_file():
        return None
    try:
        hydra = OmegaConf.load(path).hydra
        if not str(hydra.sweeper.get("_target_", "")).endswith("BasicSweeper"):
            return None
        arguments = [f"{k}={v}" for k, v in (hydra.sweeper.get("params") or {}).items()]
        overrides = OverridesParser.create().parse_overrides(arguments + list(hydra.overrides.task))
    except Exception as exc:  # a damaged file: report the folders there are
        log.warning("%s cannot be read (%s); listing the job folders only", path, exc)
        return None
    return [list(job) for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def unfinished_status(job_dir: Path, now: float, stale_s: float, superseded: bool = False) -> str:
    """`running` or `failed` for a job folder without metrics.json.

    failed: its log has an ERROR line; or its recorded process has ended (same machine), or went
    on to a later job (Hydra's basic launcher runs the jobs one after another in one process); or,
    without a record (older folders), the process that wrote its events has ended; or none of its
    files changed for `stale_s` seconds (a job on another machine). Running otherwise.
    """
    for path in job_dir.glob("*.log"):
        if "][ERROR]" in path.read_text(errors="replace"):
            return "failed"
    record = read_process(job_dir)
    alive = process_alive(record) if record is not None else None
    if alive is False or (alive and superseded):
        return "failed"
    if alive:
        return "running"
    if record is None and writer_gone(job_dir):
        return "failed"
    newest = max((p.stat().st_mtime for p in job_dir.rglob("*") if p.is_file()), default=0.0)
    return "running" if now - newest < stale_s else "failed"


def superseded(job_dir: Path, others: list[Path]) -> bool:
    """Whether the process that ran this job started another job after it (a sequential launcher)."""
    mine = read_process(job_dir)
    if mine is None:
        return False
    records = [r for d in others if (r := read_process(d)) is not None]
    return any((r.get("host"), r["pid"]) == (mine.get("host"), mine["pid"])
               and r.get("started", 0) > mine.get("started", 0) for r in records)


def writer_gone(job_dir: Path) -> bool:
    """Whether an event file was written by a process on this machine that no longer exists.

    TensorBoard names event files `events.out.tfevents.TIME.HOST.PID.N`.
    """
    files = list(job_dir.glob("events.out.tfevents.*"))
    for path in files:
        parts = path.name.split(".")
        host, pid = ".".join(parts[4:-2]), parts[-2]
        if not pid.isdigit() or process_alive({"host": host, "pid": int(pid)}) is not False:
            return False
    return bool(files)


class SweepCallback(Callback):
    """Hydra callback (configs/config.yaml `hydra.callbacks`): job names, the sweep's HParams. (A job's
    process record is written by the run once its folder is its own: trainer.storage.rundir.)"""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        swept, SweepKeys.instance().fixed = swept_keys(config)
        try:
            from trainer.logs.dashboard import write_sweep_experiment

            write_sweep_experiment(Path(str(config.hydra.sweep.dir)), config, swept)
        except Exception as exc:  # the dashboard must never stop a sweep
            log.warning("could not write the sweep's HParams experiment: %s", exc)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Where to look at the whole sweep, once, after the jobs' one line each."""
        sweep = Path(str(config.hydra.sweep.dir))
        print(f"sweep done: {sweep}\n  compare the jobs: python -m trainer.report {sweep}\n"
              f"  view with: tensorboard --logdir {sweep}")


def hydra_subdir(resume: object, ckpt: object) -> str:
    """`${trainer_hydra_subdir:${resume},${ckpt}}`: where Hydra writes a job's config files: `.hydra`, or
    a pending folder for a run that may be refused (a resume, or a job folder that holds a run:
    trainer.storage.rundir)."""
    return f".hydra/pending-{RUN_ID}" if resume is True or ckpt or _output_holds_run() else ".hydra"


def _output_holds_run() -> bool:
    """Whether the job's output folder (Hydra's, set before it writes its config files) holds a run."""
    from hydra.core.hydra_config import HydraConfig

    from trainer.storage.rundir import run_files

    try:
        out = Path(str(HydraConfig.get().runtime.output_dir))
    except Exception:  # no job yet (the sweep's own process): nothing to stage
        return False
    return bool(run_files(out))


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("trainer_job_dir"):
        OmegaConf.register_new_resolver("trainer_job_dir", job_dir_name)
        OmegaConf.register_new_resolver("trainer_fixed_keys", fixed_keys)
    if not OmegaConf.has_resolver("trainer_hydra_subdir"):
        OmegaConf.register_new_resolver("trainer_hydra_subdir", hydra_subdir)


register_resolvers()
