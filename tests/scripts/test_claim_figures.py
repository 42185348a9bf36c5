"""scripts/claim_figures.py on a real sweep: the report's choice, diverged seeds counted, the notes'
parameter estimate against the counted parameters."""

import pytest
from PIL import Image

from tests.conftest import cli_in_process, script
from trainer.report.stats import Choice
from trainer.run import run

claim_figures = script("claim_figures")


@pytest.mark.slow
def test_lr_sweep_figure_marks_diverged_seeds(tmp_path):
    sweep = tmp_path / "lr"
    proc = cli_in_process("-m", "+experiment=digits_lr", "optimizer.lr=0.1,30.0", "seed=0,1", "epochs=2",
                          f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "lr.png"
    choices = claim_figures.figure(sweep, out, ["optimizer.lr"], ["epoch", "step"], "curves")
    by_rate = {c.value["optimizer.lr"]: c for c in choices}
    assert set(by_rate) == {"0.1", "30.0"}
    assert [j.status for j in by_rate["0.1"].chosen.jobs] == ["completed"] * 2
    assert by_rate["30.0"].chosen is None and claim_figures.diverged(by_rate["30.0"]) == 2
    # Written as words under the value, not drawn as a point; the title has no choice to speak of.
    assert claim_figures.tick_label(by_rate["30.0"]) == "30.0\n(all 2 runs diverged)"
    assert claim_figures.tick_label(by_rate["0.1"]) == "0.1"
    assert claim_figures.title("lr", ["optimizer.lr"], choices, "val/acc", ["epoch"]) == \
        "lr: mean val/acc per epoch and test/acc of each optimizer.lr (2 seeds)"
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size[0] > 500


def test_small_multiples_keep_a_colour_per_value_of_the_other_keys():
    choices = [Choice({"scheduler": s, "averaging": a}, [], None)
               for s in ("none", "step") for a in ("none", "poly")]
    panels = claim_figures.facets(choices, ["scheduler", "averaging"])
    assert list(panels) == ["none", "step"]
    assert [[(colour, c.value["averaging"]) for colour, c in panels[s]] for s in panels] == \
        [[(0, "none"), (1, "poly")]] * 2


# The optimizer labels: tests/cli/test_main.py, on the sweep of digits_optimizers made there.


def test_notes_estimate_leaves_out_the_biases(cfg_factory, tmp_path):
    # One hidden layer of 16 on the digits: dH + HK = 64*16 + 16*10; the counted ones add LH + K biases.
    assert claim_figures.notes_estimate(1, 16) == 1184
    assert claim_figures.notes_estimate(3, 16) == 64 * 16 + 2 * 16**2 + 16 * 10
    metrics = run(cfg_factory("model.depth=3", "model.width=16", "epochs=1"), out_dir=tmp_path)
    assert metrics["params"] == claim_figures.notes_estimate(3, 16) + 3 * 16 + 10
