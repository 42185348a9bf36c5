"""What a new user hits first: monitor=auto and its checks, small tables, regression targets, CSV
layouts, mistyped keys, evaluation of a run folder, threads, per-arm sweep options."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import torch

from tests.conftest import read_metrics, read_scalars, script
from trainer.config.overrides import check_launcher
from trainer.data import load_source
from trainer.eval import evaluate_checkpoint, load
from trainer.logs.writer import LR_TAG
from trainer.run import run
from trainer.runtime import device as device_module
from trainer.runtime.device import set_threads
from trainer.runtime.errors import ConfigError, DataError
from trainer.storage.checkpoint import load_checkpoint

SMALL = ("epochs=3", "model.width=16", "model.depth=1")


def write_csv(path, values, header="a,b,y", delimiter=","):
    np.savetxt(path, values, delimiter=delimiter, header=header or "", comments="", fmt="%g")
    return path


def test_monitor_auto_is_val_acc_for_classification(cfg_factory, tmp_path):
    metrics = run(cfg_factory(*SMALL), out_dir=tmp_path)
    assert metrics["monitor"] == "val/acc" == read_metrics(tmp_path)["monitor"]
    accs = [v for _, v in read_scalars(tmp_path)["val/acc"]]
    assert metrics["best_epoch"] == 1 + int(np.argmax(accs))  # the first epoch with the best acc
    assert metrics["val/acc"] == pytest.approx(max(accs))


def test_monitor_auto_is_val_loss_for_regression(cfg_factory, tmp_path):
    metrics = run(cfg_factory("data=regression", *SMALL), out_dir=tmp_path)
    assert metrics["monitor"] == "val/loss"
    losses = [v for _, v in read_scalars(tmp_path)["val/loss"]]
    assert metrics["val/loss"] == pytest.approx(min(losses))


def test_val_acc_on_a_regression_file_fails_before_training(cfg_factory, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 2))
    path = write_csv(tmp_path / "t.csv", np.c_[x, x[:, 0] + 0.5])
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="monitor=val/acc needs classes"):
        run(cfg_factory("data=csv", f"data.path={path}", "monitor=val/acc"), out_dir=out)
    # No metrics, events or checkpoints: only the run folder's lock and the record of the process
    # that held it, so that trainer.report.sweep shows the run as failed (trainer.storage.rundir).
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) in ([], [".lock", "process.json"])


def test_regression_losses_are_in_original_units_and_eval_reproduces_them(cfg_factory, tmp_path):
    # y in the thousands: standardized for training, reported as MSE in its own units.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 2))
    y = 1000 + 300 * np.sin(x[:, 0]) + 5 * rng.normal(size=300)
    path = write_csv(tmp_path / "t.csv", np.c_[x, y])
    metrics = run(cfg_factory("data=csv", f"data.path={path}", "data.task=regression", "epochs=40",
                              "model.width=32"), out_dir=tmp_path / "run")
    assert 20 < metrics["test/loss"] < 0.2 * y.var()  # learnt, far better than the mean's MSE
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    assert ckpt["target"]["kind"] == "standardize" and 900 < float(ckpt["target"]["mean"]) < 1100
    again = evaluate_checkpoint(load(tmp_path / "run"), "test")  # a run folder: its best.pt
    assert again["test/loss"] == pytest.approx(metrics["test/loss"], rel=1e-5)


def test_eval_of_a_folder_without_checkpoints_explains(tmp_path):
    with pytest.raises(DataError, match="folder without checkpoints/best.pt"):
        load(tmp_path)


def test_many_whole_numbers_are_read_as_regression(tmp_path, caplog):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2))
    counts = np.round(100 + 40 * x[:, 0])  # ~100 distinct whole numbers in 200 rows
    with caplog.at_level(logging.WARNING):
        src = load_source("csv", path=str(write_csv(tmp_path / "c.csv", np.c_[x, counts])))
    assert src.task == "regression"
    assert "data.task=classification" in caplog.text and "distinct values" in caplog.text
    labels = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0)  # 3 classes
    path = write_csv(tmp_path / "l.csv", np.c_[x, labels])
    assert load_source("csv", path=str(path)).task == "classification"


def test_a_single_class_is_refused(tmp_path):
    path = write_csv(tmp_path / "one.csv", np.c_[np.ones((20, 2)), np.zeros(20)])
    with pytest.raises(DataError, match="single class"):
        load_source("csv", path=str(path))


def test_csv_without_header_and_with_semicolons(tmp_path):
    rng = np.random.default_rng(0)
    values = np.c_[rng.normal(size=(30, 2)), np.arange(30) % 2]
    plain = load_source("csv", path=str(write_csv(tmp_path / "n.csv", values, header=None)))
    assert len(plain.x) == 30  # the first row is data, not a header
    by_number = load_source("csv", path=str(tmp_path / "n.csv"), target="0", task="regression")
    np.testing.assert_allclose(by_number.y, values[:, 0], rtol=1e-5)
    forced = load_source("csv", path=str(tmp_path / "n.csv"), header=True)
    assert len(forced.x) == 29
    semi = write_csv(tmp_path / "s.csv", values, header="a;b;y", delimiter=";")
    assert load_source("csv", path=str(semi)).x.shape == (30, 2)
    with pytest.raises(DataError, match="set data.delimiter=';'"):
        load_source("csv", path=str(semi), delimiter=",")


def test_slurm_without_sbatch_is_one_message(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert shutil.which("sbatch") is None
    with pytest.raises(ConfigError, match="sbatch, which is not on this machine's PATH"):
        check_launcher(["-m", "hydra/launcher=slurm"])


def test_threads_auto_takes_one_for_a_small_step_and_the_default_for_a_large_one(monkeypatch):
    monkeypatch.setattr(device_module, "DEFAULT_THREADS", 2)
    before = torch.get_num_threads()
    try:
        cpu = torch.device("cpu")
        assert set_threads("auto", 203_530, 1, cpu) == 1       # 784-256-10 at batch 1
        assert set_threads("auto", 203_530, 64, cpu) == 2      # ... at batch 64: back to the default
        assert set_threads("auto", 15_000, 64, cpu) == 1
        assert set_threads(2, 15_000, 64, cpu) == 2
    finally:
        torch.set_num_threads(before)


def test_threads_auto_validates_on_all_threads_after_training_a_small_step_on_one(
        cfg_factory, tmp_path, monkeypatch):
    """A 64-256-10 net at batch 32 trains on one thread; its 8,192-row-sized validation passes (here
    all of digits' validation rows) take torch's default count, which is back for the next epoch."""
    from trainer.training import fit as fit_module

    monkeypatch.setattr(device_module, "DEFAULT_THREADS", 2)
    cpu = torch.device("cpu")
    assert device_module.eval_threads(1, 203_530, 10_000, cpu) is None  # threads=N: N everywhere
    seen: dict[str, set[int]] = {"train": set(), "val": set()}
    validate, train = fit_module.validation_metrics, fit_module.train_epoch

    def counted(kind, func):
        def call(*args, **kwargs):
            seen[kind].add(torch.get_num_threads())
            return func(*args, **kwargs)
        return call

    monkeypatch.setattr(fit_module, "validation_metrics", counted("val", validate))
    monkeypatch.setattr(fit_module, "train_epoch", counted("train", train))
    before = torch.get_num_threads()
    try:
        assert set_threads("auto", 203_530, 1, cpu) == 1  # 784-256-10 trains at batch 1 on one thread
        assert device_module.eval_threads("auto", 203_530, 10_000, cpu) == 2  # and validates on two
        assert device_module.eval_threads("auto", 203_530, 10, cpu) is None  # 10 rows: one too
        metrics = run(cfg_factory("model.width=256", "batch_size=32", "epochs=2", "device=cpu"),
                      out_dir=tmp_path)
    finally:
        torch.set_num_threads(before)
    assert metrics["status"] == "completed"
    assert seen == {"train": {1}, "val": {2}}


@pytest.mark.slow  # over a second on 2 cores
def test_per_arm_options_apply_to_the_arm_that_takes_them(cfg_factory, tmp_path, caplog):
    # The README's `python -m trainer -m +experiment=digits_schedules schedule.per_arm.tau=1000`,
    # each of its four scheduler arms in-process (one seed, one rate, one epoch; this was also a
    # CLI sweep of those four, test_cli_sweep_arms: the command line's sweeps are test_cli.py's).
    common = ("+experiment=digits_schedules", "schedule.per_arm.tau=1000", "epochs=1", "model.width=16",
              "averaging=none", "optimizer.lr=0.1", "seed=0")
    for arm in ("none", "step", "inverse_time", "plateau"):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="trainer.config.build"):
            metrics = run(cfg_factory(*common, f"scheduler={arm}"), out_dir=tmp_path / arm)
        assert metrics["status"] == "completed", arm
        said = "schedule.per_arm.tau=1000" in caplog.text and "an option of another arm" in caplog.text
        assert said == (arm in ("step", "plateau")), (arm, caplog.text)  # tau ignored, and said
    lrs = dict(read_scalars(tmp_path / "inverse_time")[LR_TAG])
    k = max(lrs)
    assert lrs[k] == pytest.approx(0.1 / (1 + k / 1000), rel=1e-5)  # tau=1000, not the default 100


def test_bench_never_overwrites_the_committed_table_with_smoke_numbers(capsys):
    bench = script("bench")
    with pytest.raises(SystemExit) as exc:
        bench.main(["--quick", "--write"])
    assert exc.value.code == 2 and "--write replaces BENCHMARKS.md" in capsys.readouterr().err


def test_offline_download_leaves_no_folders(tmp_path):
    root = tmp_path / "data"
    with pytest.raises(DataError, match="data.download=false"):
        load_source("mnist", root=str(root), download=False)
    assert not (root / "MNIST").exists()
