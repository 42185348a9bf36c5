"""The figure and table of docs/experiments.md "Ensembles experiment", from a finished
`+experiment=digits_ensembles` sweep:

    python scripts/ensemble_figure.py SWEEP_DIR [out=outputs/digits_ensembles.png]

The choosing is the report's (`python -m trainer.report SWEEP_DIR select=experiment/ensemble_arm,arms.k`):
for each arm and K, the learning rate with the best mean validation accuracy over the seeds; never
the test accuracy. Left: that setting's test accuracy against K, mean ± std over the seeds. Right:
for the ensembles, the ensemble's test accuracy beside the mean test accuracy of its own members
(metrics.json `members`; boosting's weighted by nothing: a member is a weak learner on reweighted
data, and a round left out by validation has alpha 0 and is not counted).
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from trainer.report.read import read_sweep, swept_keys
from trainer.report.stats import group_jobs, select

ARM, K, MONITOR = "experiment/ensemble_arm", "arms.k", "val/acc"
LABELS = {"bagging": "bagging (bootstrap)", "bagging_parts": "bagging (disjoint parts)",
          "boosting": "boosting (SAMME)", "longer": "one model, K x longer"}


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def shown(values: list[float]) -> str:
    return "{:.3f} ± {:.3f}".format(*mean_std(values))


def member_mean(metrics: dict) -> float:
    """The mean test accuracy of the members the ensemble counts (alpha > 0)."""
    return statistics.fmean(m["test/acc"] for m in metrics["members"] if m["alpha"] > 0)


def results(sweep: Path) -> dict[str, dict[int, dict]]:
    """arm -> K -> the chosen setting's per-seed test accuracies, member means and chosen rate."""
    jobs = [j for j in read_sweep(sweep) if j.status == "completed"]
    found: dict[str, dict[int, dict]] = {}
    for choice in select(group_jobs(jobs, swept_keys(jobs), over=["seed"]), [ARM, K], MONITOR):
        if choice.chosen is None:
            continue
        done = choice.chosen.completed
        found.setdefault(choice.value[ARM], {})[int(choice.value[K])] = {
            "val": [j.values["val/acc"] for j in done], "test": [j.values["test/acc"] for j in done],
            "members": [member_mean(j.metrics) for j in done if "members" in j.metrics],
            "chosen": " ".join(f"{k}={v}" for k, v in choice.chosen.others([ARM, K]).items())}
    return found


def table(found: dict[str, dict[int, dict]]) -> str:
    lines = ["| arm | K | chosen | val acc | test acc | members' mean test acc |",
             "|---|---|---|---|---|---|"]
    for arm, by_k in found.items():
        for k, r in sorted(by_k.items()):
            cells = [shown(r["val"]), shown(r["test"]), shown(r["members"]) if r["members"] else "-"]
            lines.append(f"| {LABELS.get(arm, arm)} | {k} | {r['chosen']} | {' | '.join(cells)} |")
    return "\n".join(lines)


def plot(found: dict[str, dict[int, dict]], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    for i, (arm, by_k) in enumerate(found.items()):
        ks = sorted(by_k)
        stats = [mean_std(by_k[k]["test"]) for k in ks]
        shift = [k * 1.04 ** (i - 1.5) for k in ks]  # the error bars side by side
        left.errorbar(shift, [m for m, _ in stats], yerr=[s for _, s in stats], marker="o", capsize=3,
                      color=f"C{i}", label=LABELS.get(arm, arm))
        if all(by_k[k]["members"] for k in ks):
            right.plot(ks, [statistics.fmean(by_k[k]["test"]) for k in ks], marker="o", color=f"C{i}",
                       label=f"{LABELS.get(arm, arm)}: ensemble")
            right.plot(ks, [statistics.fmean(by_k[k]["members"]) for k in ks], marker="s", ls="--",
                       color=f"C{i}", label="its members, mean")
    for ax in (left, right):
        ax.set(xscale="log", xlabel="K (members, rounds, or times longer)")
        ax.set_xticks([1, 2, 4, 8], ["1", "2", "4", "8"])
        ax.set_xticks([], minor=True)
        ax.grid(alpha=0.3)
    left.set(ylabel="test accuracy (rate chosen on validation)",
             title="test accuracy, mean ± std over 5 seeds")
    right.set(ylabel="test accuracy (mean over seeds)", title="each ensemble against its own members")
    left.legend(fontsize="small")
    right.legend(fontsize="x-small")
    fig.savefig(path, dpi=100)


def main(argv: list[str]) -> None:
    if not argv or "=" in argv[0]:
        sys.exit(__doc__)
    options = dict(a.split("=", 1) for a in argv[1:])
    found = results(Path(argv[0]))
    print(table(found))
    out = Path(options.get("out", Path(argv[0]) / "ensembles.png"))
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(found, out)
    print(f"figure: {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
