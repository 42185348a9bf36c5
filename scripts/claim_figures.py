"""The figures of docs/experiments.md "The lectures' comparisons", from a finished sweep and the
report's numbers.

    python scripts/claim_figures.py SWEEP_DIR select=KEY[,KEY] [x=epoch,step,time]
        [kind=curves|capacity] [out=PATH.png]

The figure goes into the sweep folder (SWEEP_DIR/claim.png) unless `out=` names another file.

The choosing is the report's (`python -m trainer.report SWEEP_DIR select=KEY`): for each value of
the select keys, the setting of the other swept keys (the learning rate) with the best mean
validation metric over seeds; never the test metric. This draws, per value, that setting's mean
validation curve with a ± std band over the seeds on each x axis, and its test metric, mean ± std
with one dot per seed. Runs that diverged are counted in red under their value's name, and a
value with no completed setting (the report chooses only settings whose seeds all completed)
gets the words "diverged: no test value" in its empty column.
With several select keys and one x axis, the curves are small multiples: a panel per value of
the first key, the other keys' values in the same colours in each. kind=capacity draws the test
metric against the counted parameters instead, with the notes' estimate p ≈ dH + (L-1)H² + HK
beside each point.
"""

from __future__ import annotations

import math
import statistics
import sys
from pathlib import Path

from trainer.report.axes import AXIS_LABELS, group_series
from trainer.report.read import read_sweep, sweep_monitor, swept_keys
from trainer.report.stats import ARM_KEY, Choice, group_jobs, resolved_lr, select, test_metric

DIGITS_IN, DIGITS_OUT = 64, 10  # the notes' d and K for the 8x8 digits


def notes_estimate(depth: int, width: int, d: int = DIGITS_IN, k: int = DIGITS_OUT) -> int:
    """The notes' count of an MLP's weights: dH + (L-1)H² + HK (biases left out)."""
    return d * width + (depth - 1) * width**2 + width * k


def label(choice: Choice, shown: list[str] | None = None) -> str:
    """The value (of the `shown` select keys, default all) and its chosen setting; `arms.rate=high`
    as the rate it stands for in the experiment's table (`arms.lr`: digits_optimizers.yaml)."""
    chosen = choice.chosen
    values = ", ".join(choice.value.values()) if shown is None else \
        ", ".join(f"{k}={choice.value[k]}" for k in shown)  # beside a panel's title naming the others
    if chosen is None:
        return values
    others = chosen.others(list(choice.value))
    lr = resolved_lr(chosen.jobs[0]) if ARM_KEY in others else None
    if lr is not None:
        del others[ARM_KEY]
        others["lr"] = f"{lr:g}"
    rate = " ".join(f"{k}={v}" for k, v in others.items())
    return values + (f" ({rate})" if rate else "")


def diverged(choice: Choice) -> int:
    """Jobs of the value that diverged, over all its settings (every rate tried)."""
    return sum(j.status == "diverged" for g in choice.candidates for j in g.jobs)


def tick_label(choice: Choice) -> str:
    """The value, and under it how many of its runs diverged, and at which settings if the value
    still has a chosen one (the diverged runs are then not the ones drawn)."""
    lost = diverged(choice)
    name = ", ".join(choice.value.values())
    if not lost:
        return name
    if choice.chosen is None:
        return f"{name}\n(all {lost} runs diverged)" if lost == sum(len(g.jobs) for g in choice.candidates) \
            else f"{name}\n({lost} runs diverged)"
    at = [" ".join(f"{k}={v}" for k, v in g.others(list(choice.value)).items())
          for g in choice.candidates if any(j.status == "diverged" for j in g.jobs)]
    return f"{name}\n({lost} runs at {'; '.join(at)} diverged)"


def draw_tests(ax, choices: list[Choice], monitor: str, colours: list[int] | None = None) -> None:
    """The test metric of each value's chosen setting: mean ± std, a dot per seed. Diverged runs
    are written as words, in the tick label and, where no setting is left, across the empty column,
    so that they never read as a measured value."""
    test = test_metric(monitor)
    for i, choice in enumerate(choices):
        if choice.chosen is not None:
            values = [j.values[test] for j in choice.chosen.completed]
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            colour = f"C{colours[i] if colours else i}"
            ax.errorbar([i], [statistics.fmean(values)], yerr=[std], fmt="o", ms=8, capsize=6, color=colour)
            ax.scatter([i + 0.15] * len(values), values, color="k", s=8, zorder=3)
        elif diverged(choice):  # the column is empty: say why, in axes units whatever the scale
            ax.text(i, 0.5, "diverged: no test value", transform=ax.get_xaxis_transform(), rotation=90,
                    ha="center", va="center", color="red", fontsize="small",
                    bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "red"})
    ax.set_xticks(range(len(choices)), [tick_label(c) for c in choices], rotation=30, ha="right")
    for tick, choice in zip(ax.get_xticklabels(), choices, strict=True):
        if choice.chosen is None and diverged(choice):
            tick.set_color("red")
    ax.set_xlim(-0.5, len(choices) - 0.5)
    ax.set(ylabel=f"{test} of the setting chosen on {monitor}", title="test (mean ± std, dots: seeds)")
    ax.grid(alpha=0.3, axis="y")


def draw_capacity(ax, choices: list[Choice], monitor: str) -> None:
    """The chosen setting's test metric against its counted parameters, the notes' estimate beside."""
    test = test_metric(monitor)
    for i, choice in enumerate(c for c in choices if c.chosen is not None):
        jobs = choice.chosen.completed
        counted = jobs[0].metrics["params"]
        depth, width = int(choice.value["model.depth"]), int(choice.value["model.width"])
        values = [j.values[test] for j in jobs]
        ax.errorbar([counted], [statistics.fmean(values)], yerr=[statistics.stdev(values)], fmt="o",
                    capsize=4, color=f"C{i}", label=f"L={depth} H={width}: {counted:,} counted, "
                    f"{notes_estimate(depth, width):,} by dH+(L-1)H²+HK")
    ax.set_xscale("log")
    ax.set(xlabel="parameters (counted)", ylabel=f"{test} of the setting chosen on {monitor}",
           title="test (mean ± std over seeds) against the parameter count")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1))
    ax.grid(alpha=0.3)


def title(name: str, keys: list[str], choices: list[Choice], monitor: str, panels: list[str]) -> str:
    """What the figure shows, in words: the curves' metric and axes, the test metric, and what was
    chosen on validation (only where a value had more than one setting to choose from)."""
    tuned = {k if k != ARM_KEY else "lr" for c in choices if c.chosen is not None and len(c.candidates) > 1
             for k in c.chosen.others(keys)}
    seeds = max((len(c.chosen.jobs) for c in choices if c.chosen is not None), default=0)
    shown = (f"mean {monitor} per {', '.join(panels)} and " if panels else "") + test_metric(monitor)
    chosen = f", at the {', '.join(sorted(tuned))} chosen on {monitor}" if tuned else ""
    return f"{name}: {shown} of each {', '.join(keys)}{chosen} ({seeds} seeds)"


def facets(choices: list[Choice], keys: list[str]) -> dict[str, list[tuple[int, Choice]]]:
    """Small multiples: the values of the first select key, each with its choices and a colour per
    value of the other keys, the same colour in every panel (scheduler=step: averaging none, poly)."""
    rest = list(dict.fromkeys(tuple(c.value[k] for k in keys[1:]) for c in choices))
    out: dict[str, list[tuple[int, Choice]]] = {}
    for choice in choices:
        colour = rest.index(tuple(choice.value[k] for k in keys[1:]))
        out.setdefault(choice.value[keys[0]], []).append((colour, choice))
    return out


def draw_curves(ax, drawn: list[tuple[int, Choice]], axis: str, monitor: str, keys: list[str] | None) -> None:
    """Each choice's mean validation curve with its ± std band, in its colour, labelled by its
    values of `keys` (what the panel's title does not say; None: every value) and chosen rate."""
    for colour, choice in drawn:
        series = group_series(choice.chosen, axis, "std", False, {}) if choice.chosen else None
        if series is None:
            continue
        ax.plot(series.x, series.y, color=f"C{colour}", label=label(choice, keys))
        if series.band:
            ax.fill_between(series.x, *series.band, color=f"C{colour}", alpha=0.2)
    if axis in ("step", "samples", "time"):
        ax.set_xscale("log")
    # seconds measure this machine at its load then, not the method: say so under the axis
    load = "\n(depends on the machine and its load at the time)" if axis == "time" else ""
    shown = AXIS_LABELS[axis] + load
    ax.set(xlabel=shown, ylabel=f"mean {monitor} (± std over seeds)")
    ax.grid(alpha=0.3)


def small_multiples(sweep: Path, choices: list[Choice], keys: list[str], axis: str, monitor: str):
    """One panel of curves per value of the first select key (instead of every curve on one set of
    axes), sharing both axes, and the test panel on the right."""
    from matplotlib.figure import Figure

    by_first = facets(choices, keys)
    cols = math.ceil(len(by_first) / 2) if len(by_first) > 3 else len(by_first)
    rows = math.ceil(len(by_first) / cols)
    names = [f"f{k}" for k in range(rows * cols)]
    mosaic = [names[r * cols:(r + 1) * cols] + ["test"] for r in range(rows)]
    fig = Figure(figsize=(3.6 * cols + 0.55 * len(choices) + 3, 3.3 * rows + 1.2), layout="constrained")
    axes = fig.subplot_mosaic(mosaic, width_ratios=[1] * cols + [0.2 * len(choices) + 0.6])
    first = axes["f0"]
    for k, (value, drawn) in enumerate(by_first.items()):
        ax = axes[f"f{k}"]
        if ax is not first:
            ax.sharex(first)
            ax.sharey(first)
        draw_curves(ax, drawn, axis, monitor, keys[1:])
        ax.set_title(f"{keys[0]}={value}", fontsize="medium")
        ax.legend(fontsize="x-small", loc="lower right")
        ax.label_outer()
    for k in range(len(by_first), rows * cols):
        axes[f"f{k}"].set_visible(False)
    order = [choice for drawn in by_first.values() for _, choice in drawn]
    draw_tests(axes["test"], order, monitor, [c for drawn in by_first.values() for c, _ in drawn])
    fig.suptitle(title(sweep.name, keys, choices, monitor, [axis]))
    return fig, order


def figure(sweep: Path, out: Path, keys: list[str], axes: list[str], kind: str) -> list[Choice]:
    from matplotlib.figure import Figure

    jobs = read_sweep(sweep)
    monitor = sweep_monitor(jobs)
    choices = select(group_jobs(jobs, swept_keys(jobs), ["seed"]), keys, monitor)
    panels = [] if kind == "capacity" else [a for a in axes if a]
    if len(panels) == 1 and len(keys) > 1:  # several keys: a panel per value of the first
        fig, _ = small_multiples(sweep, choices, keys, panels[0], monitor)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=100)
        return choices
    n = len(panels) + 1
    rows = 2 if n > 2 else 1
    width = 11.0 if kind == "capacity" else 5.6 * math.ceil(n / rows)  # room for its legend
    if n == 1 and kind != "capacity":  # the test panel alone: room for many values
        width = max(width, 0.5 * len(choices) + 2)
    fig = Figure(figsize=(width, 4.6 * rows), layout="constrained")
    grid = list(fig.subplots(rows, math.ceil(n / rows), squeeze=False).flat)
    for ax in grid[n:]:
        ax.set_visible(False)
    grid = grid[:n]
    for ax, axis in zip(grid, panels, strict=False):
        draw_curves(ax, list(enumerate(choices)), axis, monitor, None)
    if panels:
        grid[0].legend(fontsize="x-small")
    (draw_capacity if kind == "capacity" else draw_tests)(grid[-1], choices, monitor)
    fig.suptitle(title(sweep.name, keys, choices, monitor, panels))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return choices


def main(argv: list[str]) -> None:
    options = dict(a.split("=", 1) for a in argv[1:] if "=" in a)
    if not argv or any("=" not in a for a in argv[1:]) or "select" not in options:
        sys.exit(__doc__)
    keys = options["select"].split(",")
    axes = options.get("x", "epoch").split(",")
    out = Path(options.get("out", Path(argv[0]) / "claim.png"))
    figure(Path(argv[0]), out, keys, axes, options.get("kind", "curves"))
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
