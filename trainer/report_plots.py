"""The report's table cells and figures: validation curves, best values per swept value, the
notes' protocol as bars."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trainer.report import Job
    from trainer.report_axes import Series
    from trainer.report_stats import Choice


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


def plot_curves(series: list[Series], monitor: str, axis: str, title: str, path: Path) -> None:
    """The validation `monitor` of every job (or group mean, with its band) on one plot; the best thick."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, Agg when saving
    from matplotlib.ticker import MaxNLocator

    from trainer.report_axes import AXIS_LABELS

    fig = Figure(figsize=(9, 5.5), layout="constrained")
    ax = fig.add_subplot()
    for line in series:
        drawn = ax.plot(line.x, line.y, marker="o" if len(line.x) < 3 else None, label=line.label,
                        linewidth=3 if line.thick else 1.2, zorder=3 if line.thick else 2)
        if line.band is not None:
            ax.fill_between(line.x, *line.band, color=drawn[0].get_color(), alpha=0.2, linewidth=0)
    ax.set(xlabel=AXIS_LABELS[axis], ylabel=monitor, title=title)
    if axis == "epoch":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize="small" if len(series) <= 12 else "xx-small", loc="best")
    fig.savefig(path, dpi=110)


def plot_select(choices: list[Choice], keys: list[str], monitor: str, path: Path) -> None:
    """Per value of the `select` keys, the test metric of the setting chosen on validation: mean
    with ± std error bars, each seed a dot."""
    from matplotlib.figure import Figure

    from trainer.report_stats import test_metric

    test = test_metric(monitor)
    fig = Figure(figsize=(max(5.0, 1.3 * len(choices) + 2), 4.8), layout="constrained")
    ax = fig.add_subplot()
    names = []
    for i, choice in enumerate(choices):
        chosen = choice.chosen
        value = " ".join(cell(v) for v in choice.value.values())
        found = chosen.stats(test) if chosen is not None else None
        if chosen is None or found is None:
            names.append(f"{value}\n(none)")
            continue
        rest = "\n".join(f"{k.rsplit('.', 1)[-1]}={cell(v)}" for k, v in chosen.others(keys).items())
        names.append(f"{value}\n{rest}".rstrip())
        ax.bar(i, found.mean, yerr=found.std if found.n > 1 else None, capsize=5, color="tab:blue", alpha=0.7)
        seeds = [j.values[test] for j in chosen.completed if test in j.values]
        ax.scatter([i] * len(seeds), seeds, color="black", s=12, zorder=3)
    ax.set_xticks(range(len(choices)), names, fontsize="small")
    ax.set(xlabel=",".join(keys), ylabel=f"{test} (mean ± std over seeds)",
           title=f"{test} of the setting chosen on {monitor}")
    if test.endswith("acc"):  # accuracies are compared near the top: start the axis near the bars
        lows = [j.values[test] for c in choices if c.chosen for j in c.chosen.completed if test in j.values]
        if lows:
            ax.set_ylim(max(0.0, min(lows) - 0.05), 1.0)
    ax.grid(alpha=0.3, axis="y")
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
