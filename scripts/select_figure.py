"""The notes' protocol (`python -m trainer.report DIR select=KEY`: each value of KEY takes the setting
with the best mean validation accuracy over seeds) with what the report does not show: the train
accuracy of the tested weights beside the test accuracy (the train/test gap), and, for jobs run with
log_layer_stats=true, each layer's gradient norm. A Markdown table and a figure:

    python scripts/select_figure.py SWEEP_DIR arm=model.norm [out=outputs/NAME.png]

`arm` may name several keys (`arm=model.activation,model.init`): an arm is each combination. Train
accuracy is each chosen job's checkpoints/best.pt evaluated on its train split (not the running
accuracy logged during an epoch). The choice never looks at test metrics.
"""

from __future__ import annotations

import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from trainer.eval import evaluate_checkpoint
from trainer.logs.events import read_scalars
from trainer.report.read import read_sweep, swept_keys
from trainer.report.stats import Choice, group_jobs, select
from trainer.storage.checkpoint import load_checkpoint

MONITOR = "val/acc"


@dataclass
class Arm:
    """One value of the arm keys: its chosen setting's per-seed accuracies and gradient norms."""

    name: str
    choice: Choice
    val: list[float]
    test: list[float]
    train: list[float]
    grads: list[list[float]]  # per seed: each layer's gradient norm at the first logged epoch
    grad_epoch: int


def arms(sweep: Path, keys: list[str]) -> list[Arm]:
    """The report's selection, with the chosen jobs' train accuracy and gradient norms."""
    jobs = [j for j in read_sweep(sweep) if j.status == "completed"]
    groups = group_jobs(jobs, swept_keys(jobs), over=["seed"])
    out = []
    for choice in in_arm_order(select(groups, keys, MONITOR), keys):
        chosen = choice.chosen.completed if choice.chosen is not None else []
        train = [evaluate_checkpoint(load_checkpoint(j.path / "checkpoints" / "best.pt"), "train",
                                     device="cpu")["train/acc"] for j in chosen]
        logged = [layer_grads(j.path) for j in chosen]
        out.append(Arm(" ".join(choice.value.values()), choice, [j.values["val/acc"] for j in chosen],
                       [j.values["test/acc"] for j in chosen], train, [g for g, _ in logged],
                       logged[0][1] if logged else 0))
    return out


def in_arm_order(choices: list[Choice], keys: list[str]) -> list[Choice]:
    """Grouped by the first arm key, then the next (`arm=model.activation,model.init`: each
    activation's inits side by side), each key's values in the order the sweep first ran them."""
    first_seen = [list(dict.fromkeys(c.value[k] for c in choices)) for k in keys]
    return sorted(choices, key=lambda c: [seen.index(c.value[k])
                                          for k, seen in zip(keys, first_seen, strict=True)])


def layer_grads(job_dir: Path) -> tuple[list[float], int]:
    """`grad_norm/layerL` at the first epoch it was logged, layer by layer, and that epoch."""
    series = {int(t.removeprefix("grad_norm/layer")): v for t, v in read_scalars(job_dir).items()
              if t.startswith("grad_norm/layer")}
    first = min((v[0][0] for v in series.values()), default=0)
    return [series[layer][0][1] for layer in sorted(series)], first


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def chosen_text(arm: Arm) -> str:
    """The chosen setting (`optimizer.lr=0.003`), or `-` when only seeds differ."""
    return " ".join(f"{k}={v}" for k, v in chosen_setting(arm).items()) or "-"


def chosen_setting(arm: Arm) -> dict[str, str]:
    """The swept keys other than the arm and the seed, at the chosen setting (empty when only seeds
    differ)."""
    chosen = arm.choice.chosen
    return chosen.others(list(arm.choice.value)) if chosen is not None else {}


def tick_label(arm: Arm) -> str:
    """The arm's name a word a line, then its chosen setting if anything was chosen."""
    rate = " ".join(f"{k.removeprefix('optimizer.')}={v}" for k, v in chosen_setting(arm).items())
    return arm.name.replace(" ", "\n") + (f"\n{rate}" if rate else "")


def legend_under(ax, **kwargs) -> None:
    """The legend under the panel, in columns, never over what it shows: the panel's own (sub)figure's
    legend, for which constrained layout makes room below. (Beside the axes, each panel's legend
    widened every column to the widest one's, leaving a wide gap between the panels.)"""
    handles, labels = kwargs.pop("handles", None), kwargs.pop("labels", None)
    if handles is None:
        handles, labels = ax.get_legend_handles_labels()
    ax.figure.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 3), fontsize="small",
                     **kwargs)


def table(found: list[Arm], arm_keys: str) -> str:
    lines = [f"| {arm_keys} | chosen | seeds | val acc | train acc | test acc | train - test |",
             "|---|---|---|---|---|---|---|"]
    for arm in found:
        gap = [a - b for a, b in zip(arm.train, arm.test, strict=True)]
        columns = (arm.val, arm.train, arm.test, gap)
        cells = " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in map(mean_std, columns))
        lines.append(f"| {arm.name} | {chosen_text(arm)} | {len(arm.test)} | {cells} |")
    return "\n".join(lines)


def accuracy_panel(ax, found: list[Arm]) -> None:
    """Train and test accuracy of each arm's chosen setting: the mean as a point with ± std error
    bars, each seed a dot beside it. Points, not bars: the axis can start near the values (a bar
    would be cut) without making one mean look a fraction of another."""
    import numpy as np

    for offset, (kind, colour) in ((-0.2, ("train", "tab:blue")), (0.12, ("test", "tab:orange"))):
        for i, arm in enumerate(found):
            values = getattr(arm, kind)
            if not values:
                continue
            mean, std = mean_std(values)
            ax.errorbar(i + offset, mean, yerr=std, fmt="o", markersize=7, capsize=4, color=colour, zorder=3,
                        label=f"{kind}: mean ± std" if i == 0 else None)
            spread = np.linspace(0.06, 0.14, len(values)) if len(values) > 1 else np.array([0.1])
            ax.scatter(i + offset + spread, values, color="black", s=8, alpha=0.7, zorder=4,
                       label="each seed" if i == 0 and kind == "test" else None)
    ax.set_xticks(range(len(found)), [tick_label(arm) for arm in found], fontsize="small")
    ax.set_xlim(-0.5, len(found) - 0.5)
    ax.set(ylabel="accuracy", title="train and test accuracy of the setting chosen on validation")
    ax.margins(y=0.1)
    ax.grid(alpha=0.3, axis="y")
    handles, labels = ax.get_legend_handles_labels()  # train, test, then the seeds' dots
    order = sorted(range(len(labels)), key=lambda k: labels[k] == "each seed")
    legend_under(ax, handles=[handles[k] for k in order], labels=[labels[k] for k in order])


def selection_panel(ax, found: list[Arm], arm_keys: str) -> None:
    """Mean validation accuracy of every candidate setting, per arm: what the choice saw."""
    for arm in found:
        candidates = arm.choice.candidates
        labels = [" ".join(v for v in g.others(list(arm.choice.value)).values()) for g in candidates]
        stats = [g.stats(MONITOR) for g in candidates]
        ax.errorbar([float(label) for label in labels], [s.mean for s in stats],
                    yerr=[s.std if s.n > 1 else 0.0 for s in stats], marker="o", capsize=3, label=arm.name)
    ax.set(xscale="log", xlabel="learning rate", ylabel="validation accuracy",
           title="validation accuracy of every setting (mean ± std)")
    legend_under(ax, title=arm_keys)
    ax.grid(alpha=0.3)


def gradient_panel(ax, found: list[Arm], arm_keys: str) -> None:
    """Each layer's gradient norm at the first logged epoch, mean over the chosen setting's seeds."""
    for arm in found:
        per_layer = [statistics.fmean(v) for v in zip(*arm.grads, strict=True)]
        ax.plot(range(1, len(per_layer) + 1), per_layer, marker="o", label=arm.name)
    ax.set(yscale="log", xlabel="layer (1: input side; last: output layer)", ylabel="gradient norm ||dL/dW||",
           title=f"gradient norm per layer after epoch {found[0].grad_epoch}")
    legend_under(ax, title=arm_keys)
    ax.grid(alpha=0.3)


def plot(found: list[Arm], arm_keys: str, path: Path) -> None:
    """The panels that say something: the selection only among several learning rates (one swept
    key besides the arm), gradients only when logged."""
    from matplotlib.figure import Figure

    panels = [lambda ax: accuracy_panel(ax, found)]
    if any(len(arm.choice.candidates) > 1 for arm in found):
        panels.append(lambda ax: selection_panel(ax, found, arm_keys))
    if all(arm.grads and all(arm.grads) for arm in found):
        panels.append(lambda ax: gradient_panel(ax, found, arm_keys))
    # a subfigure per panel: its legend goes under it, and the panels sit side by side with no gap
    fig = Figure(figsize=(5.5 * len(panels), 5.0), layout="constrained")
    for sub, draw in zip(fig.subfigures(1, len(panels), squeeze=False)[0], panels, strict=True):
        draw(sub.subplots())
    fig.savefig(path, dpi=110)


def main(argv: list[str]) -> None:
    if not argv or "=" in argv[0]:
        sys.exit(__doc__)
    options = dict(a.split("=", 1) for a in argv[1:])
    sweep = Path(argv[0])
    keys = [key.lstrip("+~") for key in options["arm"].split(",")]  # as the report keys overrides
    found = arms(sweep, keys)
    print(table(found, ",".join(keys)))
    out = Path(options.get("out", sweep / "select_figure.png"))
    plot(found, ",".join(keys), out)
    print(f"figure: {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
