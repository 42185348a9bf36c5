"""The notes' protocol on a sweep of arms x grid x seeds: for each arm, the grid value (e.g. the
learning rate) with the best mean validation accuracy; its train, validation and test accuracy,
mean and std over seeds, as a Markdown table and a figure (the train/test gap beside the selection).

    python scripts/select_figure.py SWEEP_DIR arm=model.norm [grid=optimizer.lr] [out=docs/NAME.png]

`arm` may name several keys (`arm=model.activation,model.init`): an arm is each combination.

Train accuracy is that of the tested weights (each job's checkpoints/best.pt on its train split),
not the running accuracy logged during an epoch. The choice never looks at test metrics. When the
jobs ran with log_layer_stats=true, a third panel draws each layer's gradient norm at the first
logged epoch (mean over seeds of the chosen setting).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from trainer.checkpoint import load_checkpoint
from trainer.eval import evaluate_checkpoint
from trainer.report import find_jobs, read_job
from trainer.tb import read_scalars

Record = dict[str, float | list[float]]


def setting(overrides: dict[str, str], config: DictConfig, key: str) -> str:
    """A job's value of `key`: swept, or as its config (the experiment file) set it."""
    return overrides.get(key) or str(OmegaConf.select(config, key.replace("/", ".")))


def records(sweep: Path, arm: list[str], grid: str) -> dict[str, dict[str, list[Record]]]:
    """{arm values: {grid value: [one record per seed]}} of the completed jobs."""
    out: dict[str, dict[str, list[Record]]] = defaultdict(lambda: defaultdict(list))
    for job_dir in find_jobs(sweep):
        job = read_job(job_dir, sweep, time.time(), 600.0)
        if job.status != "completed":
            continue
        best = load_checkpoint(job_dir / "checkpoints" / "best.pt")
        train = evaluate_checkpoint(best, "train", device="cpu")["train/acc"]
        scalars = read_scalars(job_dir)
        layers = sorted((int(t.removeprefix("grad_norm/layer")), v[0]) for t, v in scalars.items()
                        if t.startswith("grad_norm/layer"))  # (layer, (epoch, value)) of the first log
        config = OmegaConf.load(job_dir / ".hydra" / "config.yaml")
        name = " ".join(setting(job.overrides, config, key) for key in arm)
        out[name][setting(job.overrides, config, grid)].append(
            {"val": job.values["val/acc"], "test": job.values["test/acc"], "train": train,
             "grad": [v for _, (_, v) in layers], "grad_epoch": layers[0][1][0] if layers else 0})
    return out


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def select(by_grid: dict[str, list[Record]]) -> str:
    """The grid value with the best mean validation accuracy."""
    return max(by_grid, key=lambda g: statistics.fmean(r["val"] for r in by_grid[g]))


def table(data: dict[str, dict[str, list[Record]]], arm: str, grid: str) -> str:
    lines = [f"| {arm} | chosen {grid} | seeds | val acc | train acc | test acc | train - test |",
             "|---|---|---|---|---|---|---|"]
    for name, by_grid in data.items():
        chosen = by_grid[select(by_grid)]
        cells = [mean_std([r[k] for r in chosen]) for k in ("val", "train", "test")]
        gap = mean_std([r["train"] - r["test"] for r in chosen])
        lines.append(f"| {name} | {select(by_grid)} | {len(chosen)} | "
                     + " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in (*cells, gap)) + " |")
    return "\n".join(lines)


def accuracy_panel(ax, data: dict[str, dict[str, list[Record]]], short: str, chosen: bool) -> None:
    """Train and test accuracy of each arm's chosen setting."""
    names = list(data)
    for offset, (key, colour) in enumerate((("train", "tab:blue"), ("test", "tab:orange"))):
        stats = [mean_std([r[key] for r in data[n][select(data[n])]]) for n in names]
        ax.bar([i + 0.38 * offset for i in range(len(names))], [m for m, _ in stats], width=0.36,
               yerr=[s for _, s in stats], capsize=3, color=colour, label=f"{key} accuracy")
    ax.set_xticks([i + 0.19 for i in range(len(names))],
                  [f"{n.replace(' ', chr(10))}\n{short}={select(data[n])}" for n in names], fontsize="small")
    lows = [r["test"] for n in names for r in data[n][select(data[n])]]
    ax.set(ylim=(max(0.0, min(lows) - 0.05), 1.005), ylabel="accuracy",
           title=f"train and test accuracy{f', {short} chosen on validation' if chosen else ''}"
                 "\n(mean ± std over seeds)")
    ax.legend(loc="lower right")


def selection_panel(ax, data: dict[str, dict[str, list[Record]]], arm: str, grid: str, short: str) -> None:
    """Mean validation accuracy of every grid value, per arm: what the choice saw."""
    for name, by_grid in data.items():
        grids = sorted(by_grid, key=float)
        stats = [mean_std([r["val"] for r in by_grid[g]]) for g in grids]
        ax.errorbar([float(g) for g in grids], [m for m, _ in stats], yerr=[s for _, s in stats],
                    marker="o", capsize=3, label=name)
    ax.set(xscale="log", xlabel=grid, ylabel="validation accuracy",
           title=f"validation accuracy per {short} (mean ± std)")
    ax.legend(fontsize="small", title=arm)
    ax.grid(alpha=0.3)


def gradient_panel(ax, data: dict[str, dict[str, list[Record]]], arm: str) -> None:
    """Each layer's gradient norm at the first logged epoch, mean over the chosen setting's seeds."""
    for name, by_grid in data.items():
        chosen = by_grid[select(by_grid)]
        per_layer = [statistics.fmean(v) for v in zip(*(r["grad"] for r in chosen), strict=True)]
        ax.plot(range(1, len(per_layer) + 1), per_layer, marker="o", label=name)
    ax.set(yscale="log", xlabel="layer (1: input side; last: output layer)", ylabel="gradient norm ||dL/dW||",
           title=f"gradient norm per layer after epoch {chosen[0]['grad_epoch']}")
    ax.legend(fontsize="small", title=arm)
    ax.grid(alpha=0.3)


def plot(data: dict[str, dict[str, list[Record]]], arm: str, grid: str, path: Path) -> None:
    """The panels that say something: the selection only with a grid, gradients only when logged."""
    from matplotlib.figure import Figure

    short = grid.rsplit(".", 1)[-1]  # optimizer.lr -> lr
    chosen = [r for by_grid in data.values() for r in by_grid[select(by_grid)]]
    grid_swept = any(len(by_grid) > 1 for by_grid in data.values())
    panels = [lambda ax: accuracy_panel(ax, data, short, grid_swept)]
    if grid_swept:
        panels.append(lambda ax: selection_panel(ax, data, arm, grid, short))
    if all(r["grad"] for r in chosen):
        panels.append(lambda ax: gradient_panel(ax, data, arm))
    fig = Figure(figsize=(5.7 * len(panels), 4.6), layout="constrained")
    for ax, draw in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
        draw(ax)
    fig.savefig(path, dpi=110)


def main(argv: list[str]) -> None:
    if not argv or "=" in argv[0]:
        sys.exit(__doc__)
    options = dict(a.split("=", 1) for a in argv[1:])
    sweep, grid = Path(argv[0]), options.get("grid", "optimizer.lr")
    keys = [key.lstrip("+~") for key in options["arm"].split(",")]  # as parse_overrides keys them
    data, arm = records(sweep, keys, grid), ",".join(keys)
    print(table(data, arm, grid))
    out = Path(options.get("out", sweep / "select.png"))
    plot(data, arm, grid, out)
    print(f"figure: {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
