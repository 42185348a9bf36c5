"""The real command line as a user types it: the default run (in-process), an experiment's sweep.
(The installed package: tests/cli/test_packaging.py.)"""

from pathlib import Path

import pytest

from tests.conftest import cli_in_process, read_metrics, read_scalars, script
from trainer.training.curves import LR_TAG

pytestmark = pytest.mark.slow


def test_default_run_reaches_expected_accuracy(tmp_path):
    proc = cli_in_process(f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    metrics = read_metrics(tmp_path)
    assert metrics["test/acc"] >= 0.95  # an MLP on the digits
    assert metrics["status"] == "completed" and metrics["epochs"] == 30
    assert f"tensorboard --logdir {tmp_path}" in proc.stdout
    assert "test/acc" in proc.stdout
    assert (tmp_path / "checkpoints" / "best.pt").is_file()
    losses = [v for _, v in read_scalars(tmp_path)["train/loss"]]
    assert losses[-1] < losses[0] / 10


@pytest.fixture(scope="module")
def optimizers_sweep(tmp_path_factory) -> Path:
    """Two arms and two of their rates out of the experiment's 120 jobs; one seed."""
    sweep = tmp_path_factory.mktemp("optimizers")
    proc = cli_in_process("-m", "+experiment=digits_optimizers", "optimizer=sgd,adam", "arms.rate=low,high",
                          "seed=0", "epochs=1", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr
    # the experiment trains through the vectorized launcher: a group per optimizer, its rates as members
    assert "2 stacked groups (2, 2 members)" in proc.stderr + proc.stdout
    return sweep


def test_multirun_experiment(optimizers_sweep):
    jobs = sorted(p.parent.name for p in optimizers_sweep.glob("*/metrics.json"))
    assert jobs == ["0_optimizer=sgd,arms.rate=low,seed=0", "1_optimizer=sgd,arms.rate=high,seed=0",
                    "2_optimizer=adam,arms.rate=low,seed=0", "3_optimizer=adam,arms.rate=high,seed=0"]
    # Each arm's rate comes from its own row of the experiment's table (arms.lr).
    rates = [read_scalars(optimizers_sweep / job)[LR_TAG][0][1] for job in jobs]
    assert rates == pytest.approx([0.1, 1.0, 0.001, 0.01])


def test_claim_figure_labels_give_the_rate_of_the_chosen_arm(optimizers_sweep, tmp_path):
    """scripts/claim_figures.py on that sweep (was in test_claim_figures.py with its own sweep)."""
    claim_figures = script("claim_figures")
    choices = claim_figures.figure(optimizers_sweep, tmp_path / "opt.png", ["optimizer"], ["epoch"], "curves")
    rates = {"sgd": {"low": 0.1, "high": 1.0}, "adam": {"low": 0.001, "high": 0.01}}  # the table
    assert sorted(choice.value["optimizer"] for choice in choices) == ["adam", "sgd"]
    for choice in choices:
        name, rate = choice.value["optimizer"], choice.chosen.setting["arms.rate"]
        assert claim_figures.label(choice) == f"{name} (lr={rates[name][rate]:g})"
    # from the command line, the figure goes into the sweep folder unless out= names a file
    claim_figures.main([str(optimizers_sweep), "select=optimizer"])
    assert (optimizers_sweep / "claim.png").stat().st_size > 10_000
    claim_figures.main([str(optimizers_sweep), "select=optimizer", f"out={tmp_path / 'b.png'}"])
    assert (tmp_path / "b.png").is_file()


def test_select_names_the_rate_an_arm_chose_and_a_choice_at_the_grid_edge(optimizers_sweep, capsys):
    from trainer.report import sweep as report

    report.main([str(optimizers_sweep), "select=optimizer", f"out={optimizers_sweep / 'sel'}"])
    out = capsys.readouterr().out
    rates = {"sgd": {"low": 0.1, "high": 1.0}, "adam": {"low": 0.001, "high": 0.01}}  # the table
    table = out.split("never used to choose\n\n")[1].splitlines()
    for name in ("sgd", "adam"):
        row = next(line for line in table if line.startswith(name + " "))
        rate = row.split("(arms.rate=")[1].split(")")[0]
        assert f"optimizer.lr={rates[name][rate]:g} (arms.rate={rate})" in row
        # two rates tried per arm: whichever was chosen is at an edge, and the report says so
        side = "highest" if rate == "high" else "lowest"
        assert f"{name}: optimizer.lr={rates[name][rate]:g} is the {side} of the 2 values tried: " \
               "at the edge of the grid, widen it" in out
