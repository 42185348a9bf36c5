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
import socket
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

NEVER_IN_NAMES = ("resume", "ckpt", "progress")  # say how a job runs, not what it is
MAX_NAME = 100  # characters of a job folder's name: short enough to read as a TensorBoard run
# Not allowed in a file name on Windows, macOS or Linux, or awkward in one (whitespace).
UNSAFE = re.compile(r'[\x00-\x1f/\\:*?"<>|\s]')
PROCESS_FILE = "process.json"

_fixed_keys: list[str] = []  # override keys of the running sweep that are the same in every job


def swept_keys(config: DictConfig) -> tuple[set[str], list[str]]:
    """The keys a sweep varies and those it sets to one value, from its main config.

    Varied: an override with sweep syntax (`optimizer=sgd,adam`, `range(...)`, `choice(...)`) or a key
    of `hydra.sweeper.params` (an experiment's sweep, Optuna's search space).
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    params = config.hydra.sweeper.get("params") or {}
    swept = {o.key_or_group for o in overrides if o.is_sweep_override()}
    swept |= {str(k).lstrip("+~") for k in params}
    fixed = [o.key_or_group for o in overrides if o.key_or_group not in swept]
    return swept, fixed


def fixed_keys() -> list[str]:
    """`${trainer_fixed_keys:}`: what Hydra leaves out of `override_dirname`."""
    return [*NEVER_IN_NAMES, *_fixed_keys]


def job_dir_name(num: int | str, override_dirname: str) -> str:
    """`3_optimizer=adam,optimizer.lr=0.01`: the job number first, then what differs, shortened."""
    what = UNSAFE.sub("_", str(override_dirname))
    name = f"{num}_{what}" if what else str(num)
    if len(name) > MAX_NAME:  # the number stays first, so the name stays unique
        name = name[: MAX_NAME - 1] + "~"
    return name.rstrip(". ")  # Windows drops trailing dots and spaces


def job_number(name: str) -> int | None:
    """The job number a folder name starts with (`3_optimizer=adam` and the older `3`), else None."""
    match = re.match(r"(\d+)(?:_|$)", name)
    return int(match.group(1)) if match else None


def record_process(out_dir: str | Path) -> None:
    """Write which process runs the job, so a report can tell at once when it died."""
    path = Path(out_dir) / PROCESS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}))


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


class SweepCallback(Callback):
    """Hydra callback (configs/config.yaml `hydra.callbacks`): job names, process records, HParams."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global _fixed_keys
        swept, _fixed_keys = swept_keys(config)
        try:
            from trainer.dashboard import write_sweep_experiment

            write_sweep_experiment(Path(str(config.hydra.sweep.dir)), config, swept)
        except Exception as exc:  # the dashboard must never stop a sweep
            log.warning("could not write the sweep's HParams experiment: %s", exc)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        record_process(config.hydra.runtime.output_dir)


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("trainer_job_dir"):
        OmegaConf.register_new_resolver("trainer_job_dir", job_dir_name)
        OmegaConf.register_new_resolver("trainer_fixed_keys", fixed_keys)


register_resolvers()
