"""A sweep read back: each job folder's `.hydra/` (overrides and config), `metrics.json` once the job
has finished, and its TensorBoard events while it runs; the jobs of its multirun.yaml not started yet."""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from trainer.runtime.errors import DataError
from trainer.storage.rundir import MOVED
from trainer.sweeps.jobs import (
    NEVER_IN_NAMES,
    job_number,
    order_key,
    planned_jobs,
)
from trainer.sweeps.objective import direction_of
from trainer.sweeps.status import superseded, unfinished_status

METRICS = ("val/loss", "val/acc", "test/loss", "test/acc")  # the report's columns
CURVES = ("train/loss", "val/loss", "train/acc", "val/acc")  # the curves report_curves draws


@dataclass
class Job:
    """What the report knows about one job of a sweep."""

    name: str
    overrides: dict[str, str]
    monitor: str
    status: str
    epochs: int = 0
    epochs_total: int | None = None
    best_epoch: int | None = None
    wall_time_s: float | None = None
    values: dict[str, float] = field(default_factory=dict)  # METRICS at the best epoch
    curve: list[tuple[int, float]] = field(default_factory=list)  # `monitor` per epoch
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # CURVES per epoch
    path: Path | None = None  # the job's folder (None: not started)
    config: dict[str, Any] = field(default_factory=dict)  # its .hydra/config.yaml
    metrics: dict[str, Any] = field(default_factory=dict)  # its metrics.json, once finished

    def score(self, monitor: str) -> float:
        """The job's best validation `monitor`, NaN when it has none."""
        return self.values.get(monitor, math.nan)


def find_jobs(sweep_dir: Path) -> list[Path]:
    """Job folders: those holding `.hydra/overrides.yaml`, in job-number order; not the old runs that
    `overwrite=true` moved into a job's `.overwritten-TIME/`."""
    dirs = [p.parent.parent for p in sweep_dir.glob("**/.hydra/overrides.yaml")
            if not any(part.startswith(MOVED) for part in p.relative_to(sweep_dir).parts)]
    return sorted(dirs, key=lambda d: [order_key(part) for part in d.relative_to(sweep_dir).parts])


def job_name(job_dir: Path, sweep_dir: Path) -> str:
    """The job's number (`3` for the folder `3_optimizer=adam,...` or `3`), else its folder."""
    if job_dir == sweep_dir:
        return "."
    relative = job_dir.relative_to(sweep_dir)
    number = job_number(relative.name)
    return str(number) if number is not None and len(relative.parts) == 1 else str(relative)


def parse_overrides(lines: list[str]) -> dict[str, str]:
    """Hydra's `key=value` override strings as a dict (`+key`, `++key` and `~key` as `key`)."""
    out = {}
    for line in lines:
        key, _, value = str(line).partition("=")
        out[key.lstrip("+~")] = value
    return out


def load_yaml(path: Path) -> Any:
    """A file Hydra wrote into a job's .hydra/, as plain Python values."""
    try:
        return OmegaConf.to_container(OmegaConf.load(path))
    except Exception as exc:  # YAML syntax errors come in several types
        raise DataError(f"{path} cannot be read ({type(exc).__name__}: {exc}); Hydra writes it when the "
                        "job starts: restore or delete that job folder") from exc


def read_job(job_dir: Path, sweep_dir: Path, now: float, stale_s: float, superseded: bool = False) -> Job:
    """One job's row, from metrics.json when it finished, else from its TensorBoard events."""
    from trainer.logs.events import scalar_events

    hydra_dir = job_dir / ".hydra"
    config = load_yaml(hydra_dir / "config.yaml") if (hydra_dir / "config.yaml").is_file() else {}
    monitor = str(config.get("monitor", "val/loss"))
    job = Job(name=job_name(job_dir, sweep_dir),
              overrides=parse_overrides(load_yaml(hydra_dir / "overrides.yaml")),
              monitor=monitor, status="running", epochs_total=config.get("epochs"), path=job_dir,
              config=config)
    events = scalar_events(job_dir) if any(job_dir.glob("events.out.tfevents.*")) else {}
    if monitor == "auto":  # the run's rule: val/acc when the task has classes (events show it)
        monitor = job.monitor = "val/acc" if "val/acc" in events else "val/loss"
    job.curve = [(e.step, e.value) for e in events.get(monitor, [])]
    job.curves = {tag: [(e.step, e.value) for e in events[tag]] for tag in CURVES if tag in events}
    metrics_path = job_dir / "metrics.json"
    if metrics_path.is_file():
        try:
            metrics = json.loads(metrics_path.read_text())
        except (OSError, ValueError) as exc:
            raise DataError(f"{metrics_path} cannot be read as JSON ({exc}); it is written atomically "
                            "by the trainer, so it was changed by hand: delete it to report the job "
                            "from its TensorBoard events") from exc
        job.metrics, job.status = metrics, str(metrics.get("status", "completed"))
        if metrics.get("monitor") in ("val/loss", "val/acc") and metrics["monitor"] != monitor:
            job.monitor = metrics["monitor"]  # the run resolved `auto` for its task
            job.curve = [(e.step, e.value) for e in events.get(job.monitor, [])]
        job.values = {k: float(metrics[k]) for k in METRICS if metrics.get(k) is not None}
        job.epochs, job.best_epoch = metrics.get("epochs", 0), metrics.get("best_epoch")
        job.wall_time_s = metrics.get("wall_time_s")
        return job
    job.status = unfinished_status(job_dir, now, stale_s, superseded)
    if job.curve:  # so far: the best epoch by `monitor`, the other validation metrics at it
        pick = max if direction_of(monitor) == "maximize" else min
        finite = [(s, v) for s, v in job.curve if math.isfinite(v)] or job.curve
        job.best_epoch = pick(finite, key=lambda sv: sv[1])[0]
        job.values = {e_tag: e.value for e_tag in ("val/loss", "val/acc")
                      for e in events.get(e_tag, []) if e.step == job.best_epoch}
        job.epochs = max(s for s, _ in job.curve)
        walls = [e.wall_time for series in events.values() for e in series]
        job.wall_time_s = round(max(walls) - min(walls), 3)
    return job


def read_sweep(sweep_dir: str | Path, stale_s: float = 600.0) -> list[Job]:
    """Every job of a sweep, those of its multirun.yaml not started yet included; DataError when
    the folder is not a sweep."""
    path = Path(sweep_dir)
    if not path.is_dir():
        raise DataError(f"{sweep_dir} is not a folder; pass the sweep folder that `python -m trainer -m ...` "
                        "wrote, e.g. multirun/2026-01-31/12-00-00")
    dirs = find_jobs(path)
    planned = planned_jobs(path)
    if not dirs and not planned:
        raise DataError(
            f"{sweep_dir} is not a sweep: none of its folders holds a job's .hydra/overrides.yaml. Pass the "
            "folder of a multirun (`python -m trainer -m ...` writes multirun/DATE/TIME/N_.../ for job N) "
            "or of a single run (outputs/DATE/TIME)")
    now = time.time()
    jobs = [read_job(d, path, now, stale_s, superseded(d, dirs)) for d in dirs]
    seen = {j.name for j in jobs}
    monitor = sweep_monitor(jobs) if jobs else str(OmegaConf.load(path / "multirun.yaml").get("monitor"))
    jobs += [Job(name=str(num), overrides=parse_overrides(overrides), monitor=monitor, status="not started")
             for num, overrides in enumerate(planned or []) if str(num) not in seen]
    return sorted(jobs, key=lambda j: order_key(j.name))


def swept_keys(jobs: list[Job]) -> list[str]:
    """Override keys whose value is not the same in every job (all keys for a single job)."""
    # How a job ran, not what it is: a sweep resumed with resume=true has it only in the jobs it ran.
    keys = [k for k in dict.fromkeys(k for job in jobs for k in job.overrides) if k not in NEVER_IN_NAMES]
    if len(jobs) == 1:
        return keys
    return [k for k in keys if len({job.overrides.get(k) for job in jobs}) > 1]


def sweep_monitor(jobs: list[Job]) -> str:
    """The metric that ranks the jobs: their `monitor` (the most common one, if they differ)."""
    return Counter(j.monitor for j in jobs).most_common(1)[0][0]
