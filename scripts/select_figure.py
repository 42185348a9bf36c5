"""The notes' protocol on a sweep of arms x grid x seeds: for each arm, the grid value (e.g. the
learning rate) with the best mean validation accuracy; its train, validation and test accuracy,
mean and std over seeds, as a Markdown table and a figure (the train/test gap beside the selection).

    python scripts/select_figure.py SWEEP_DIR arm=model.norm [grid=optimizer.lr] [out=docs/NAME.png]

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

from trainer.checkpoint import load_checkpoint
from trainer.eval import evaluate_checkpoint
from trainer.report import find_jobs, read_job
from trainer.tb import read_scalars

Record = dict[str, float | list[float]]


def records(sweep: Path, arm: str, grid: str) -> dict[str, dict[str, list[Record]]]:
    """{arm value: {grid value: [one record per seed]}} of the completed jobs."""
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
        out[job.overrides.get(arm, "?")][job.overrides.get(grid, "?")].append(
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


def plot(data: dict[str, dict[str, list[Record]]], arm: str, grid: str, path: Path) -> None:
    from matplotlib.figure import Figure

    names = list(data)
    grads = all(r["grad"] for n in names for r in data[n][select(data[n])])
    fig = Figure(figsize=(17 if grads else 12, 4.6), layout="constrained")
    short = grid.rsplit(".", 1)[-1]  # optimizer.lr -> lr
    left, right, *third = fig.subplots(1, 3 if grads else 2)
    for offset, (key, colour) in enumerate((("train", "tab:blue"), ("test", "tab:orange"))):
        stats = [mean_std([r[key] for r in data[n][select(data[n])]]) for n in names]
        left.bar([i + 0.38 * offset for i in range(len(names))], [m for m, _ in stats], width=0.36,
                 yerr=[s for _, s in stats], capsize=3, color=colour, label=f"{key} accuracy")
    left.set_xticks([i + 0.19 for i in range(len(names))],
                    [f"{n}\n{short}={select(data[n])}" for n in names], fontsize="small")
    lows = [r["test"] for n in names for r in data[n][select(data[n])]]
    left.set(ylim=(max(0.0, min(lows) - 0.05), 1.005), ylabel="accuracy",
             title=f"train and test accuracy, {short} chosen on validation\n(mean ± std over seeds)")
    left.legend(loc="lower right")
    for name in names:
        grids = sorted(data[name], key=float)
        stats = [mean_std([r["val"] for r in data[name][g]]) for g in grids]
        right.errorbar([float(g) for g in grids], [m for m, _ in stats], yerr=[s for _, s in stats],
                       marker="o", capsize=3, label=name)
    right.set(xscale="log", xlabel=grid, ylabel="validation accuracy",
              title=f"validation accuracy per {short} (mean ± std)")
    right.legend(fontsize="small", title=arm)
    right.grid(alpha=0.3)
    if grads:
        for name in names:
            chosen = data[name][select(data[name])]
            per_layer = [statistics.fmean(v) for v in zip(*(r["grad"] for r in chosen), strict=True)]
            third[0].plot(range(1, len(per_layer) + 1), per_layer, marker="o", label=name)
        third[0].set(yscale="log", xlabel="layer (1: input side; last: output layer)",
                     ylabel="gradient norm ||dL/dW||",
                     title=f"gradient norm per layer after epoch {chosen[0]['grad_epoch']}")
        third[0].legend(fontsize="small", title=arm)
        third[0].grid(alpha=0.3)
    fig.savefig(path, dpi=110)


def main(argv: list[str]) -> None:
    if not argv or "=" in argv[0]:
        sys.exit(__doc__)
    options = dict(a.split("=", 1) for a in argv[1:])
    sweep, grid = Path(argv[0]), options.get("grid", "optimizer.lr")
    arm = options["arm"].lstrip("+~")  # as parse_overrides keys them
    data = records(sweep, arm, grid)
    print(table(data, arm, grid))
    out = Path(options.get("out", sweep / "select.png"))
    plot(data, arm, grid, out)
    print(f"figure: {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
