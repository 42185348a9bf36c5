"""trainer.report.plots: what the report's figures draw, read back from the matplotlib objects."""

from __future__ import annotations

import statistics

import pytest
from matplotlib.figure import Figure

from trainer.report.plots import axis_positions, mean_per_value, outside
from trainer.report.sweep import Job


def job(name: str, lr: str, opt: str, seed: str, acc: float) -> Job:
    return Job(name, {"optimizer.lr": lr, "optimizer": opt, "seed": seed}, "val/acc", "completed",
               values={"val/acc": acc})


JOBS = [job("0", "0.01", "sgd", "0", 0.5), job("1", "0.01", "sgd", "1", 0.7),
        job("2", "0.1", "sgd", "0", 0.9), job("3", "0.1", "sgd", "1", 0.8),
        job("4", "0.01", "adam", "0", 0.95), job("5", "0.1", "adam", "0", 0.92)]


def test_mean_and_sample_std_per_value_in_x_order():
    ax = Figure().add_subplot()
    sgd = [j for j in JOBS if j.overrides["optimizer"] == "sgd"]
    position = axis_positions(ax, [j.overrides["optimizer.lr"] for j in sgd])
    assert position == {"0.01": 0.01, "0.1": 0.1} and ax.get_xscale() == "log"  # a factor of 10: log
    xs, means, stds = mean_per_value(sgd, "optimizer.lr", position, "val/acc")
    assert xs == [0.01, 0.1] and means == pytest.approx([0.6, 0.85])
    assert stds == pytest.approx([statistics.stdev([0.5, 0.7]), statistics.stdev([0.9, 0.8])])
    ax = Figure().add_subplot()
    assert axis_positions(ax, ["sgd", "adam", "sgd"]) == {"sgd": 0.0, "adam": 1.0}  # categories


def test_params_figure_has_one_line_per_hue_and_no_seed_panel(tmp_path, monkeypatch):
    import trainer.report.plots as plots

    saved = {}
    monkeypatch.setattr(Figure, "savefig", lambda fig, path, **kw: saved.update(fig=fig))
    plots.plot_params(JOBS, ["optimizer.lr", "optimizer", "seed"], JOBS[4], "val/acc", tmp_path / "p.png")
    axes = saved["fig"].axes
    assert [a.get_xlabel() for a in axes] == ["optimizer.lr", "optimizer"]  # seeds are averaged
    legend = axes[0].get_legend()
    assert legend.get_title().get_text() == "optimizer"
    assert sorted(t.get_text() for t in legend.get_texts()) == ["adam", "best (job 4)", "sgd"]
    sgd_line = axes[0].lines[0]
    assert list(sgd_line.get_ydata()) == pytest.approx([0.6, 0.85])


def test_legends_beyond_five_entries_go_outside_the_axes():
    ax = Figure().add_subplot()
    for i in range(8):
        ax.plot([0, 1], [i, i], label=str(i))
    outside(ax, 8)
    assert ax.get_legend()._loc != 0 and ax.get_legend().get_bbox_to_anchor().x0 > ax.bbox.x1 - 1


def test_a_table_wider_than_the_terminal_leaves_out_constant_columns_then_ranges():
    from trainer.report.tables import format_table

    table = [{"best": "*" if i == 0 else "", "job": str(i), "n": 5, "val/acc": f"0.9{i}00 ± 0.0100",
              "val/acc min..max": "0.9000..0.9500", "test/acc": f"0.8{i}00 ± 0.0200",
              "test/acc min..max": "0.8000..0.8500", "status": "completed"} for i in range(3)]
    full = format_table(table)
    assert "min..max" in full and max(len(line) for line in full.splitlines()) > 80
    fitted = format_table(table, width=80).splitlines()
    assert all(len(line) <= 80 for line in fitted[:-1])
    assert fitted[0].split() == ["best", "job", "val/acc", "test/acc", "test/acc", "min..max", "status"]
    assert fitted[-1].startswith("(left out to fit the terminal's 80 columns: n, val/acc min..max;")
    assert format_table(table, width=500) == full  # wide enough: everything


def test_curves_show_the_monitor_the_other_metric_and_the_best_ones_train_against_val(tmp_path, monkeypatch):
    from trainer.report.stats import Group
    from trainer.report.tables import draw_curves

    def curves_job(name: str, lr: str, scale: float) -> Job:
        job = Job(name, {"optimizer.lr": lr}, "val/acc", "completed", values={"val/acc": 0.9 * scale})
        job.curve = [(1, 0.5 * scale), (2, 0.9 * scale)]
        job.curves = {"val/acc": job.curve, "val/loss": [(1, 1.0 / scale), (2, 0.5 / scale)],
                      "train/loss": [(1, 1.2 / scale), (2, 0.3 / scale)]}
        return job

    groups = [Group({"optimizer.lr": lr}, [curves_job(str(i), lr, s)])
              for i, (lr, s) in enumerate((("0.1", 1.0), ("0.01", 0.8)))]
    saved = {}
    monkeypatch.setattr(Figure, "savefig", lambda fig, path, **kw: saved.update(fig=fig))
    draw_curves(groups, groups[0], "val/acc", "epoch", "std", False, tmp_path / "c.png")
    axes = saved["fig"].axes
    assert [a.get_ylabel() for a in axes] == ["val/acc", "val/loss", "loss"]
    assert [list(line.get_ydata()) for line in axes[1].lines] == [[1.0, 0.5], [1.25, 0.625]]
    train, val = axes[2].lines  # the best job's training and validation loss
    assert (train.get_label(), list(train.get_ydata())) == ("train", [1.2, 0.3])
    assert (val.get_label(), list(val.get_ydata())) == ("validation", [1.0, 0.5])
