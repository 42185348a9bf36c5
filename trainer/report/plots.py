"""The report's figures: validation curves, best values per swept value, the
notes' protocol as bars."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from trainer.report.axes import AXIS_LABELS, Series
from trainer.report.cells import cell, numbers
from trainer.report.read import Job
from trainer.report.stats import Choice, test_metric


def label(job: Job, keys: list[str]) -> str:
    return f"{job.name}: " + " ".join(f"{k}={cell(job.overrides.get(k, ''))}" for k in keys)


@dataclass
class Panel:
    """One plot of report_curves: its title, its y label and its lines."""

    title: str
    ylabel: str
    series: list[Series]


def plot_curves(panels: list[Panel], axis: str, path: Path) -> None:
    """The panels side by side: each line a job or a group's mean (with its band), the best thick."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, Agg when saving
    from matplotlib.ticker import MaxNLocator

    many = max((len(p.series) for p in panels), default=0) > 5  # legends beside the plots
    fig = Figure(figsize=(6.5 * len(panels) + (2.5 if many else 0), 5.5), layout="constrained")
    for ax, panel in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
        for line in panel.series:
            drawn = ax.plot(line.x, line.y, marker="o" if len(line.x) < 3 else None, label=line.label,
                            linewidth=3 if line.thick else 1.2, zorder=3 if line.thick else 2)
            if line.band is not None:
                ax.fill_between(line.x, *line.band, color=drawn[0].get_color(), alpha=0.2, linewidth=0)
        ax.set(xlabel=AXIS_LABELS[axis], ylabel=panel.ylabel, title=panel.title)
        ax.title.set_fontsize("medium")
        if axis == "epoch":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if panel.series:
            outside(ax, len(panel.series))
    fig.savefig(path)  # dpi: matplotlib's savefig.dpi (report's dpi=)


def outside(ax: object, entries: int) -> None:
    """The legend inside the axes up to five entries, beside them (never over the data) beyond."""
    if entries <= 5:
        ax.legend(fontsize="small", loc="best")
    else:
        ax.legend(fontsize="small" if entries <= 15 else "x-small", loc="upper left",
                  bbox_to_anchor=(1.01, 1.0), borderaxespad=0, ncols=1 + entries // 25)


def plot_select(choices: list[Choice], keys: list[str], monitor: str, path: Path) -> None:
    """Per value of the `select` keys, the test metric of the setting chosen on validation: the
    mean as a point with ± std error bars, each seed a dot beside it (spread sideways so that none
    hides another or the bar). Points, not bars: the axis can start near the values without
    making one mean look a fraction of another."""
    import numpy as np
    from matplotlib.figure import Figure

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
        ax.errorbar(i, found.mean, yerr=found.std if found.n > 1 else None, fmt="o", markersize=8, capsize=6,
                    color="tab:blue", zorder=3, label="mean ± std" if i == 0 else None)
        seeds = [j.values[test] for j in chosen.completed if test in j.values]
        spread = np.linspace(0.12, 0.3, len(seeds)) if len(seeds) > 1 else np.array([0.2])
        ax.scatter(i + spread, seeds, color="black", s=12, alpha=0.7, zorder=4,
                   label="each seed" if i == 0 else None)
    ax.set_xticks(range(len(choices)), names, fontsize="small")
    ax.set_xlim(-0.5, len(choices) - 0.5)
    ax.set(xlabel=",".join(keys), ylabel=f"{test} (mean ± std over seeds)",
           title=f"{test} of the setting chosen on {monitor}")
    ax.margins(y=0.15)
    ax.grid(alpha=0.3, axis="y")
    if any(c.chosen for c in choices):
        ax.legend(fontsize="small", loc="best")
    fig.savefig(path)  # dpi: matplotlib's savefig.dpi (report's dpi=)


def plot_params(jobs: list[Job], keys: list[str], best: Job | None, monitor: str, path: Path) -> None:
    """The best validation `monitor` against each swept key, one panel per key (seeds are not a
    panel: they are what is averaged), as seaborn's pointplot draws it: per value, the mean over
    the jobs that share it (± sample std when there are several), joined by a line; with two swept
    keys, one line per value of the other key (its hue). The best job is a red star. Each panel's
    legend sits below it, outside the data."""
    from matplotlib.figure import Figure

    panels = [k for k in keys if k != "seed"] or keys
    fig = Figure(figsize=(4.4 * len(panels), 5), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    scored = [j for j in jobs if math.isfinite(j.score(monitor))]
    for ax, key in zip(axes, panels, strict=True):
        others = [k for k in panels if k != key]
        hue = others[0] if len(others) == 1 else None
        position = axis_positions(ax, [j.overrides.get(key, "") for j in scored])
        levels = list(dict.fromkeys(j.overrides.get(hue, "") for j in scored)) if hue else [""]
        for level in levels:
            members = [j for j in scored if hue is None or j.overrides.get(hue, "") == level]
            xs, means, stds = mean_per_value(members, key, position, monitor)
            ax.errorbar(xs, means, yerr=stds, marker="o", capsize=4, linewidth=1.5,
                        label=cell(level) if hue else "mean ± std")
        if best is not None and best in scored:
            ax.scatter([position[best.overrides.get(key, "")]], [best.score(monitor)], marker="*", s=250,
                       color="tab:red", zorder=4, label=f"best (job {best.name})")
        if not scored:
            ax.text(0.5, 0.5, f"no job has a finite {monitor} yet", ha="center", transform=ax.transAxes)
        ax.set(xlabel=key, ylabel=f"best {monitor}")
        ax.margins(x=0.08, y=0.12)  # the best star and the end points inside the frame
        ax.grid(alpha=0.3)
        if scored:
            ax.legend(title=hue, fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.2),
                      ncols=min(4, len(levels) + 1), frameon=False)
    fig.savefig(path)  # dpi: matplotlib's savefig.dpi (report's dpi=)


def axis_positions(ax: object, raw: list[str]) -> dict[str, float]:
    """Where each value of a swept key sits on the x axis: numbers as numbers (a log axis when they
    span a factor of 10 or more), other values as categories in order of appearance."""
    values = list(dict.fromkeys(raw))
    xs = numbers(values)
    if xs is None:
        ax.set_xticks(range(len(values)), values, rotation=30, ha="right")
        return {v: float(i) for i, v in enumerate(values)}
    if xs and min(xs) > 0 and max(xs) / min(xs) >= 10:
        ax.set_xscale("log")
    return dict(zip(values, xs, strict=True))


def mean_per_value(jobs: list[Job], key: str, position: dict[str, float],
                   monitor: str) -> tuple[list[float], list[float], list[float]]:
    """(x, mean, std) of the jobs' best `monitor` per value of `key`, in x order (std 0 for one job)."""
    import statistics

    by_value: dict[str, list[float]] = {}
    for job in jobs:
        by_value.setdefault(job.overrides.get(key, ""), []).append(job.score(monitor))
    points = sorted((position[v], statistics.fmean(s), statistics.stdev(s) if len(s) > 1 else 0.0)
                    for v, s in by_value.items())
    return [p[0] for p in points], [p[1] for p in points], [p[2] for p in points]
