"""The report's table cells and figures: every job's validation curve, best values per swept value."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trainer.report import Job


def cell(value: object) -> str:
    """A table cell: metrics to 4 decimals, long swept numbers (Optuna's) to 4 significant digits."""
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.4g}"
    text = str(value)
    if len(text) > 8 and numbers([text]):
        return f"{float(text):.4g}"
    return text


def label(job: Job, keys: list[str]) -> str:
    return f"{job.name}: " + " ".join(f"{k}={cell(job.overrides.get(k, ''))}" for k in keys)


def plot_curves(jobs: list[Job], keys: list[str], best: Job | None, monitor: str, path: Path) -> None:
    """The validation `monitor` per epoch of every job on one plot; the best job drawn thick."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, Agg when saving
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(9, 5.5), layout="constrained")
    ax = fig.add_subplot()
    for job in jobs:
        if job.curve:
            steps, values = zip(*job.curve, strict=True)
            ax.plot(steps, values, marker="o" if len(steps) < 3 else None, label=label(job, keys),
                    linewidth=3 if job is best else 1.2, zorder=3 if job is best else 2)
    ax.set(xlabel="epoch", ylabel=monitor, title=f"{monitor} of every job"
           + (f" (best: job {best.name})" if best else ""))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if any(j.curve for j in jobs):
        ax.legend(fontsize="small" if len(jobs) <= 12 else "xx-small", loc="best")
    fig.savefig(path, dpi=110)


def numbers(values: list[str]) -> list[float] | None:
    try:
        return [float(v) for v in values]
    except ValueError:
        return None


def plot_params(jobs: list[Job], keys: list[str], best: Job | None, monitor: str, path: Path) -> None:
    """The best validation `monitor` of each job against each swept value, one panel per key."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2 * len(keys), 4), layout="constrained")
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    scored = [j for j in jobs if math.isfinite(j.score(monitor))]
    for ax, key in zip(axes, keys, strict=True):
        raw = [j.overrides.get(key, "") for j in scored]
        xs = numbers(raw)
        if xs is None:  # categories, in order of appearance
            categories = list(dict.fromkeys(raw))
            xs = [categories.index(v) for v in raw]
            ax.set_xticks(range(len(categories)), categories, rotation=30, ha="right")
            ax.set_xlim(-0.5, len(categories) - 0.5)
        elif xs and min(xs) > 0 and max(xs) / min(xs) >= 10:
            ax.set_xscale("log")
        ax.scatter(xs, [j.score(monitor) for j in scored], color="tab:blue")
        if best is not None and best in scored:
            i = scored.index(best)
            ax.scatter([xs[i]], [best.score(monitor)], marker="*", s=250, color="tab:red", label="best",
                       zorder=3)
            ax.legend(fontsize="small")
        if not scored:
            ax.text(0.5, 0.5, f"no job has a finite {monitor} yet", ha="center", transform=ax.transAxes)
        ax.set(xlabel=key, ylabel=f"best {monitor}")
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110)
