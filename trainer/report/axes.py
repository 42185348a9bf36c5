"""The report's curves: each job's validation metric against epochs, updates, samples or seconds, and
a group's mean with its band over seeds."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from trainer.config.build import batch_size_for
from trainer.report.read import Job
from trainer.report.stats import Group
from trainer.training.loop import num_batches

AXES = ("epoch", "step", "samples", "time")
BANDS = ("std", "minmax")
AXIS_LABELS = {"epoch": "epoch", "step": "optimizer updates", "samples": "training samples seen",
               "time": "seconds since the job started (wall clock)"}


def x_values(job: Job, axis: str) -> list[float] | str:
    """x of each point of `job.curve` (one per epoch) on `axis`, or why the job has none.

    step and samples are counted from metrics.json (`train_samples`, `steps`) and the job's
    `batch_size` and `drop_last`: every epoch but a last one cut by `max_steps` is whole. time is
    read from the TensorBoard events' wall times (trainer.logs.events.elapsed_seconds).
    """
    epochs = [epoch for epoch, _ in job.curve]
    if axis == "epoch":
        return [float(e) for e in epochs]
    if axis == "time":
        if job.path is None:
            return "it has no folder yet"
        from trainer.logs.events import elapsed_seconds

        seconds = elapsed_seconds(job.path, job.monitor)
        return [seconds[e] for e in epochs] if all(e in seconds for e in epochs) else "its events lack epochs"
    n = job.metrics.get("train_samples")
    if n is None:
        return "it has no metrics.json with train_samples (still running, or from an older trainer)"
    batch = batch_size_for(job.config.get("batch_size", 64), int(n))
    drop_last = bool(job.config.get("drop_last", False))
    per_epoch = num_batches(int(n), batch, drop_last)
    whole = per_epoch * batch if drop_last else int(n)  # samples of a whole epoch
    total = int(job.metrics.get("steps", per_epoch * max(epochs, default=0)))
    out = []
    for epoch in epochs:
        steps = min(epoch * per_epoch, total)
        in_last = steps - (epoch - 1) * per_epoch  # updates of this epoch
        samples = (epoch - 1) * whole + (whole if in_last == per_epoch else in_last * batch)
        out.append(float(steps if axis == "step" else samples))
    return out


@dataclass
class Series:
    """One line of report_curves.png: a job, or a group's mean with a band when it has several jobs."""

    label: str
    x: list[float]
    y: list[float]
    band: tuple[list[float], list[float]] | None = None
    thick: bool = False


def group_series(group: Group, axis: str, band: str, thick: bool, skipped: dict[str, str],
                 tag: str | None = None) -> Series | None:
    """The mean curve of a group's jobs over the epochs that all of them reached (so every point
    averages the same jobs), x the mean of theirs; failed, diverged and pruned jobs are left out.
    `tag`: another per-epoch curve than the monitor (`train/loss`: Job.curves). Jobs without x on
    `axis` go into `skipped` (job name -> why)."""
    curves = []
    for job in group.jobs:
        points = job.curve if tag is None else job.curves.get(tag, [])
        if not job.curve or not points or job.status in ("failed", "diverged", "pruned"):
            continue
        xs = x_values(job, axis)
        if isinstance(xs, str):
            skipped[job.name] = xs
            continue
        at = {epoch: x for (epoch, _), x in zip(job.curve, xs, strict=True)}  # the monitor's epochs
        curves.append({epoch: (at[epoch], v) for epoch, v in points if epoch in at})
    if not curves:
        return None
    epochs = sorted(set.intersection(*(set(c) for c in curves)))
    xs = [statistics.fmean(c[e][0] for c in curves) for e in epochs]
    values = [[c[e][1] for c in curves] for e in epochs]
    mean = [statistics.fmean(v) for v in values]
    spread = None
    if len(curves) > 1:
        if band == "std":
            std = [statistics.stdev(v) for v in values]
            pairs = list(zip(mean, std, strict=True))
            spread = ([m - s for m, s in pairs], [m + s for m, s in pairs])
        else:
            spread = ([min(v) for v in values], [max(v) for v in values])
    label = group.title() + (f" (n={len(curves)})" if len(group.jobs) > 1 else "")
    if len(group.jobs) == 1:
        label = f"{group.jobs[0].name}: {label}"
    return Series(label, xs, mean, spread, thick)
