"""The report over seeds: n, mean ± std and min..max per setting, curves on four axes with bands,
and select= (the notes' protocol: choose on validation, report test)."""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path

import pytest
from matplotlib.image import imread

from tests.conftest import cli_in_process, make_cfg, read_metrics
from tests.unit.sweeps.test_objective import fake_job
from trainer.logs.events import elapsed_seconds
from trainer.logs.writer import RunLogger
from trainer.report import stats as report_stats
from trainer.report import sweep as report
from trainer.report.axes import x_values
from trainer.report.stats import group_jobs, select
from trainer.run import run

METRICS = ("val/loss", "val/acc", "test/loss", "test/acc")
TINY = ["data=spirals", "data.n_samples=300", "model.width=8", "epochs=3"]  # 210 training samples


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def assert_image(path: Path) -> None:
    """A PNG that decodes to pixels."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100


def by_hand(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1), written out."""
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


@pytest.fixture(scope="module")
def seeds_sweep(tmp_path_factory) -> Path:
    """A real multirun: 2 learning rates x 3 seeds on 300 spirals, 3 epochs."""
    sweep = tmp_path_factory.mktemp("seeds") / "sweep"
    proc = cli_in_process("-m", *TINY, "optimizer.lr=0.1,0.01", "seed=0,1,2", f"hydra.sweep.dir={sweep}",
                          "progress=false")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return sweep


@pytest.mark.slow
def test_report_of_three_seeds_gives_mean_and_std_per_setting(seeds_sweep, tmp_path, capsys):
    paths = report.report(seeds_sweep, tmp_path / "out")
    out = capsys.readouterr().out
    jobs = {j.name: j for j in report.read_sweep(seeds_sweep)}
    assert len(jobs) == 6 and {j.status for j in jobs.values()} == {"completed"}
    groups = read_csv(paths["csv"])  # report.csv: one row per setting
    assert [g["optimizer.lr"] for g in groups] == ["0.1", "0.01"] and "seed" not in groups[0]
    means = {}
    for group in groups:
        members = [j for j in jobs.values() if j.overrides["optimizer.lr"] == group["optimizer.lr"]]
        assert sorted(j.overrides["seed"] for j in members) == ["0", "1", "2"]
        assert group["n"] == "3" and group["jobs"] == " ".join(j.name for j in members)
        for metric in METRICS:
            values = [read_metrics(j.path)[metric] for j in members]
            mean, std = by_hand(values)
            assert float(group[f"{metric} mean"]) == pytest.approx(mean, rel=1e-9)
            assert float(group[f"{metric} std"]) == pytest.approx(std, rel=1e-9)
            assert float(group[f"{metric} min"]) == min(values)
            assert float(group[f"{metric} max"]) == max(values)
            lr = group["optimizer.lr"]
            line = next(ln for ln in out.splitlines() if ln.lstrip("* ").split()[:1] == [lr])
            assert f"{mean:.4f} ± {std:.4f}" in line and f"{min(values):.4f}..{max(values):.4f}" in line
        means[group["optimizer.lr"]] = float(group["val/acc mean"])
    best = max(means, key=means.get)  # monitor auto: val/acc on classification
    assert [g["optimizer.lr"] for g in groups if g["best"] == "*"] == [best]
    assert f"best on mean val/acc: optimizer.lr={best}" in out
    assert [r["job"] for r in read_csv(paths["jobs_csv"])] == [str(n) for n in range(6)]
    assert_image(paths["curves"])


@pytest.mark.slow
@pytest.mark.parametrize("axis,per_epoch", [("epoch", 1), ("step", 4), ("samples", 210), ("time", None)])
def test_curves_on_each_axis(seeds_sweep, tmp_path, axis, per_epoch):
    jobs = report.read_sweep(seeds_sweep)
    for job in jobs:
        xs = x_values(job, axis)
        if per_epoch is not None:  # 210 samples in batches of 64: 4 updates an epoch
            assert xs == [per_epoch * e for e, _ in job.curve] == [per_epoch * e for e in (1, 2, 3)]
        else:  # seconds from the event file's first event, increasing, within the job's wall time
            assert 0 < xs[0] < xs[1] < xs[2] <= read_metrics(job.path)["wall_time_s"]
    report.main([str(seeds_sweep), f"out={tmp_path}", f"x={axis}", "band=minmax"])
    assert_image(tmp_path / "report_curves.png")


def test_steps_and_samples_of_a_run_cut_by_max_steps(tmp_path, capsys):
    # 210 samples, batches of 64 with drop_last: 3 updates (192 samples) an epoch; max_steps=10
    # stops after 1 update of the 4th epoch
    overrides = [*TINY, "epochs=5", "max_steps=10", "drop_last=true"]
    job_dir = fake_job(tmp_path / "sweep", 0, overrides)
    metrics = run(make_cfg(*overrides), job_dir)
    assert (metrics["epochs"], metrics["steps"], metrics["train_samples"]) == (4, 10, 210)
    running = fake_job(tmp_path / "sweep", 1, [*overrides[:-1], "drop_last=false"])
    logger = RunLogger(running)  # this process writes it: alive, so the job is running
    logger.scalars({"val/loss": 0.7, "val/acc": 0.6}, 1)
    logger.close()
    job, other = report.read_sweep(tmp_path / "sweep")
    assert x_values(job, "step") == [3, 6, 9, 10]
    assert x_values(job, "samples") == [192, 384, 576, 640]
    assert other.status == "running" and "no metrics.json" in x_values(other, "step")
    report.main([str(tmp_path / "sweep"), f"out={tmp_path / 'out'}", "x=samples"])
    out = capsys.readouterr().out
    assert "x=samples: left out of report_curves.png: job 1: it has no metrics.json" in out


@pytest.mark.slow  # over a second on 2 cores
def test_time_axis_leaves_out_the_pause_of_a_resumed_run(tmp_path):
    first = RunLogger(tmp_path)  # the stopped process: epochs 1 and 2
    for epoch in (1, 2):
        first.scalars({"val/acc": 0.5}, epoch)
    first.close()
    time.sleep(1.2)  # the pause before the resume
    second = RunLogger(tmp_path)
    second.scalars({"val/acc": 0.6}, 3)
    second.close()
    seconds = elapsed_seconds(tmp_path, "val/acc")
    assert sorted(seconds) == [1, 2, 3]
    assert 0 <= seconds[1] <= seconds[2] <= seconds[3] < seconds[2] + 1.0


def fake_finished(sweep: Path, num: int, overrides: list[str], values: dict[str, float],
                  status: str = "completed", monitor: str = "val/acc") -> None:
    """A job whose training does not matter here: its folder and a metrics.json with `values`."""
    job = fake_job(sweep, num, overrides)
    (job / "metrics.json").write_text(json.dumps({**values, "status": status, "monitor": monitor,
                                                  "epochs": 3, "best_epoch": 3}))


# (optimizer, lr) -> per seed (val/acc, test/acc): on validation, SGD at 0.1 wins, on test 0.01 does;
# Adam at 0.1 is best on validation in the seeds that survived, but one seed diverged.
PROTOCOL = {("sgd", "0.1"): [(0.90, 0.50), (0.92, 0.54)], ("sgd", "0.01"): [(0.80, 0.95), (0.82, 0.97)],
            ("adam", "0.1"): [(0.99, 0.99), (0.10, 0.10)], ("adam", "0.01"): [(0.85, 0.70), (0.87, 0.74)]}


@pytest.fixture(scope="module")
def protocol_sweep(tmp_path_factory) -> Path:
    sweep = tmp_path_factory.mktemp("protocol") / "sweep"
    num = 0
    for (optimizer, lr), seeds in PROTOCOL.items():
        for seed, (val, test) in enumerate(seeds):
            status = "diverged" if (optimizer, lr, seed) == ("adam", "0.1", 1) else "completed"
            fake_finished(sweep, num, [f"optimizer={optimizer}", f"optimizer.lr={lr}", f"seed={seed}"],
                          {"val/acc": val, "test/acc": test, "val/loss": 1 - val, "test/loss": 1 - test},
                          status)
            num += 1
    return sweep


def test_select_chooses_on_validation_and_reports_test(protocol_sweep, tmp_path, capsys):
    paths = report.report(protocol_sweep, tmp_path, select_keys=["optimizer"])
    out = capsys.readouterr().out
    rows = {r["optimizer"]: r for r in read_csv(paths["select_csv"])}
    assert list(rows) == ["sgd", "adam"]
    assert list(rows["sgd"]) == ["optimizer", "chosen", "settings", "n", *(
        f"{m} {s}" for m in ("val/acc", "test/acc") for s in ("mean", "std", "min", "max"))]
    # SGD: 0.1 by validation although 0.01 is better on test
    assert rows["sgd"]["chosen"] == "optimizer.lr=0.1" and rows["sgd"]["settings"] == "2"
    assert float(rows["sgd"]["test/acc mean"]) == pytest.approx(0.52)
    assert float(rows["sgd"]["test/acc std"]) == pytest.approx(by_hand([0.50, 0.54])[1])
    assert float(rows["sgd"]["val/acc mean"]) == pytest.approx(0.91)
    # Adam: 0.1 diverged on a seed, so 0.01 (the only setting whose seeds all completed)
    assert rows["adam"]["chosen"] == "optimizer.lr=0.01" and rows["adam"]["n"] == "2"
    assert float(rows["adam"]["test/acc mean"]) == pytest.approx(0.72)
    line = next(ln for ln in out.splitlines() if ln.startswith("sgd "))
    assert "0.5200 ± 0.0283" in line and "0.5000..0.5400" in line
    groups = {(r["optimizer"], r["optimizer.lr"]): r for r in read_csv(paths["csv"])}
    adam = groups[("adam", "0.1")]
    assert adam["n"] == "1" and adam["status"] == "1 completed, 1 diverged"
    assert adam["val/acc std"] == ""  # one job: no sample std
    assert [k for k, r in groups.items() if r["best"] == "*"] == [("sgd", "0.1")]
    assert_image(paths["select"])


@pytest.mark.slow  # over a second on 2 cores
def test_select_by_loss_minimizes_and_several_keys(tmp_path):
    sweep = tmp_path / "sweep"
    num = 0
    for width in ("8", "16"):
        for lr, val_loss, test_loss in (("0.1", 0.2, 0.9), ("0.01", 0.4, 0.1)):
            for seed in (0, 1):
                fake_finished(sweep, num, [f"model.width={width}", f"optimizer.lr={lr}", f"seed={seed}"],
                              {"val/loss": val_loss + seed / 100, "test/loss": test_loss}, monitor="val/loss")
                num += 1
    choices = select(group_jobs(report.read_sweep(sweep), ["model.width", "optimizer.lr", "seed"],
                                              ["seed"]), ["model.width"], "val/loss")
    assert [(c.value["model.width"], c.chosen.setting["optimizer.lr"]) for c in choices] == [("8", "0.1"),
                                                                                            ("16", "0.1")]
    report.report(sweep, tmp_path / "out", select_keys=["model.width", "optimizer.lr"])
    rows = read_csv(tmp_path / "out" / "report_select.csv")
    assert len(rows) == 4 and {r["chosen"] for r in rows} == {"-"}  # nothing left to choose


def test_a_sweep_without_repeated_seeds_has_one_row_per_job(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    for num, lr in enumerate(("0.1", "0.01")):
        fake_finished(sweep, num, [f"optimizer.lr={lr}", f"seed={num}"], {"val/acc": 0.5, "test/acc": 0.4})
    paths = report.report(sweep, tmp_path / "out")
    assert [r["job"] for r in read_csv(paths["csv"])] == ["0", "1"] and "jobs_csv" not in paths
    # over= names the keys that are repeats: here the learning rate, so the two jobs are one setting
    paths = report.report(sweep, tmp_path / "over", over=["optimizer.lr", "seed"])
    assert [r["n"] for r in read_csv(paths["csv"])] == ["2"]
    assert "one row per setting" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["x=updates"], "x='updates' is not one of epoch|step|samples|time"),
    (["band=iqr"], "band='iqr' is not one of std|minmax"),
    (["select=optimizer.momentum"], "select=optimizer.momentum: optimizer.momentum is not a swept key"),
    (["select=seed"], "select=seed: seed is not a swept key"),
    (["over=sed"], "over=sed: sed is not a swept key"),
    (["stale=-5"], "stale='-5' must be a positive number of seconds"),
    (["stale=abc"], "stale='abc' must be a positive number of seconds"),
    (["out=/proc/x"], "out=/proc/x cannot hold the report's files: No such file or directory"),
    (["format=jpg"], "format='jpg' is not one of png|pdf|svg"),
    (["dpi=0"], "dpi='0' must be a whole number of dots per inch from 20 to 1200"),
    (["dpi=high"], "dpi='high' must be a whole number of dots per inch from 20 to 1200"),
])
def test_bad_report_options_are_one_paragraph(protocol_sweep, tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        report.main([str(protocol_sweep), f"out={tmp_path / 'out'}", *args])
    assert exc.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing written


def test_figures_in_another_format_and_resolution(protocol_sweep, tmp_path):
    report.main([str(protocol_sweep), f"out={tmp_path / 'svg'}", "format=svg", "select=optimizer"])
    written = sorted(p.name for p in (tmp_path / "svg").iterdir())
    assert {"report_curves.svg", "report_params.svg", "report_select.svg"} <= set(written)
    assert not any(name.endswith(".png") for name in written)
    assert (tmp_path / "svg" / "report_curves.svg").read_text().lstrip().startswith("<?xml")
    sizes = {}
    for dpi in ("50", "200"):
        report.main([str(protocol_sweep), f"out={tmp_path / dpi}", f"dpi={dpi}"])
        with open(tmp_path / dpi / "report_curves.png", "rb") as f:
            sizes[dpi] = int.from_bytes(f.read(24)[16:20], "big")  # the PNG's width, from its header
    assert sizes["200"] == pytest.approx(4 * sizes["50"], rel=0.02)


@pytest.mark.parametrize("killed", ["interrupted", "failed"])
def test_a_retried_job_stands_for_its_killed_attempt(tmp_path, capsys, killed):
    """An Optuna trial killed while it ran and retried with the same values (issue 29: the report
    named job 3 best while the study said trial 5): the retry counts, the attempt does not."""
    sweep = tmp_path / "sweep"
    losses = {0: 0.30, 1: 0.20, 2: 0.15, 3: 0.0959}
    for num, loss in losses.items():
        fake_finished(sweep, num, [f"optimizer.lr={num / 100 + 0.01}"], {"val/loss": loss},
                      monitor="val/loss")
    attempt = ["optimizer.lr=0.05"]
    if killed == "interrupted":  # SIGTERM: its metrics.json says so
        fake_finished(sweep, 4, attempt, {"val/loss": 0.5}, status="interrupted", monitor="val/loss")
    else:  # SIGKILL: no metrics.json, an error in its log
        job = fake_job(sweep, 4, attempt)
        (job / "trainer.log").write_text("[2026-01-01 00:00:00,000][trainer][ERROR] - killed\n")
    retry = [*attempt, f"ckpt={sweep / '4' / 'checkpoints' / 'last.pt'}"]  # as the sweeper adds it
    fake_finished(sweep, 5, retry, {"val/loss": 0.0821}, monitor="val/loss")
    paths = report.report(sweep, tmp_path / "out")
    out = capsys.readouterr().out
    rows = read_csv(paths["csv"])
    assert [r["job"] for r in rows] == ["0", "1", "2", "3", "5"]
    assert [r["job"] for r in rows if r["best"] == "*"] == ["5"]
    assert out.splitlines()[0].endswith(": 5 jobs (5 completed)")
    assert f"job 4 ({killed}) was run again as job 5, which stands for it below" in out
    assert "jobs_csv" not in paths  # one job per setting: no group of an attempt and its retry


def test_a_finished_job_is_not_replaced_by_a_later_one_with_its_values(tmp_path):
    sweep = tmp_path / "sweep"
    for num, loss in enumerate((0.2, 0.1)):  # the same values twice: two results of one setting
        fake_finished(sweep, num, ["optimizer.lr=0.1"], {"val/loss": loss}, monitor="val/loss")
    assert report_stats.retried(report.read_sweep(sweep), ("ckpt",)) == {}


def test_a_retry_killed_too_is_stood_for_by_the_last_retry(tmp_path):
    sweep = tmp_path / "sweep"
    for num in (0, 1):  # killed twice: an error in the log, no metrics.json
        job = fake_job(sweep, num, ["optimizer.lr=0.1"])
        (job / "trainer.log").write_text("[2026-01-01 00:00:00,000][trainer][ERROR] - killed\n")
    fake_finished(sweep, 2, ["optimizer.lr=0.1", "ckpt=x.pt"], {"val/loss": 0.1}, monitor="val/loss")
    assert report_stats.retried(report.read_sweep(sweep), ("ckpt",)) == {"0": "2", "1": "2"}
