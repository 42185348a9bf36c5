"""Each data kind through run(cfg): regression with MSE, bad data stopped before any output."""

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import make_cfg, read_metrics, read_scalars
from trainer.config.build import build_data, build_model
from trainer.config.validate import config_dir
from trainer.data import load_source, make_splits, prepare_data
from trainer.data.sources import load_set
from trainer.run import run
from trainer.runtime.cli import paragraph
from trainer.runtime.errors import DataError
from trainer.storage.checkpoint import load_checkpoint

NEEDS_FILES = {"mnist", "fashion_mnist", "kmnist", "cifar10", "csv", "npz"}
GENERATED = sorted(p.stem for p in (Path(config_dir()) / "data").glob("*.yaml") if p.stem not in NEEDS_FILES)


@pytest.mark.parametrize("name", GENERATED)
def test_every_generated_data_config_trains(cfg_factory, tmp_path, name):
    metrics = run(cfg_factory(f"data={name}", "epochs=1", "model.width=16"), out_dir=tmp_path)
    assert metrics["status"] == "completed"


def test_regression_trains_with_mse_and_its_loss_falls(cfg_factory, tmp_path):
    cfg = cfg_factory("data=regression", "data.noise=0.05", "epochs=15", "optimizer.lr=0.01")
    metrics = run(cfg, out_dir=tmp_path)
    assert metrics == read_metrics(tmp_path)
    assert {"val/loss", "test/loss", "train/loss"} <= set(metrics)
    assert not [k for k in metrics if k.endswith("acc")]
    losses = [v for _, v in read_scalars(tmp_path)["train/loss"]]
    assert losses[-1] < 0.2 * losses[0]
    # y has variance about 0.5: predicting its mean would score that; the MLP does far better.
    assert metrics["test/loss"] < 0.1
    # test/loss is the mean squared error of the best model on the test split, in y's own units:
    # the model predicts standardized targets, mapped back with the train mean and std of y.
    splits, _ = prepare_data(build_data(cfg.data))
    raw = make_splits(load_source("regression", n_samples=1000, dim=1, noise=0.05, seed=0),
                      0.15, 0.15, 0)
    y_train = raw.y_train.double()
    mean, std = y_train.mean().item(), y_train.std(correction=0).item()
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert ckpt["target"]["mean"].item() == pytest.approx(mean, abs=1e-6)
    assert ckpt["target"]["scale"] == pytest.approx(std, rel=1e-6)
    model = build_model(cfg.model, splits.in_dim, splits.out_dim)
    model.load_state_dict(ckpt["model"])
    with torch.no_grad():
        pred = model.eval()(splits.x_test).squeeze(1) * std + mean
    mse = ((pred - raw.y_test) ** 2).mean().item()
    assert mse == pytest.approx(metrics["test/loss"], rel=1e-4)


def test_regression_summary_has_no_accuracy(cfg_factory, tmp_path):
    from trainer.__main__ import summary

    metrics = run(cfg_factory("data=regression", "epochs=1"), out_dir=tmp_path)
    text = summary(metrics, tmp_path)
    assert "test/loss" in text and "acc" not in text


def test_csv_and_npz_train(cfg_factory, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    lines = ["f1,f2,f3,cls"] + [f"{a:.5f},{b:.5f},{c:.5f},{t}" for (a, b, c), t in zip(x, y, strict=True)]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    m = run(cfg_factory("data=csv", f"data.path={tmp_path / 't.csv'}", "data.target=cls", "epochs=20"),
            out_dir=tmp_path / "csv")
    assert m["test/acc"] > 0.85
    np.savez(tmp_path / "d.npz", x=x[:150], y=x[:150, 0] * 2.0, x_test=x[150:], y_test=x[150:, 0] * 2.0)
    m = run(cfg_factory("data=npz", f"data.path={tmp_path / 'd.npz'}", "epochs=20",
                        "data.preprocess=whiten_pca"), out_dir=tmp_path / "npz")
    assert "test/acc" not in m and m["test/loss"] < 0.5


def test_bad_file_stops_before_anything_is_written(cfg_factory, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,0\n2,x\n")
    out = tmp_path / "run"
    with pytest.raises(DataError, match="line 3, column 'b'"):
        run(cfg_factory("data=csv", f"data.path={bad}"), out_dir=out)
    assert not (out / "metrics.json").exists() and not (out / "checkpoints").exists()
    assert not list(out.glob("events.*"))


# The command line prints a UserError raised by run() as paragraph(message) and exits 2
# (tests/unit/config/test_validate.py runs it); these two check that paragraph for errors in the data.
def test_bad_csv_is_one_paragraph_with_its_path_whole(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,y\n1,2,0\n3,oops,1\n")
    with pytest.raises(DataError) as err:
        run(make_cfg("data=csv", f"data.path={bad}", "data.target=y"), out_dir=tmp_path / "run")
    message = paragraph(str(err.value))
    assert "line 3, column 'b': 'oops' is not a number" in " ".join(message.split())
    assert str(bad) in message  # whole, not broken across lines
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_mnist_without_files_or_network_names_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINER_DATA", str(tmp_path / "data"))
    with pytest.raises(DataError) as err:
        run(make_cfg("data=mnist", "data.download=false"), out_dir=tmp_path / "run")
    assert str(tmp_path / "data" / "MNIST" / "raw") in paragraph(str(err.value))
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("preprocess", ["standardize", "whiten_zca"])
def test_inputs_are_standardized_with_the_train_splits_statistics_only(preprocess):
    """The notes' rule: fit the preprocessing on the training split, apply it to all three. A fit on
    any other split (or on all the data) would leak it into training."""
    cfg = make_cfg("data=gaussians", f"data.preprocess={preprocess}")
    data = build_data(cfg.data)
    raw = make_splits(load_set(data), data.val_fraction, data.test_fraction, data.split_seed)
    splits, prep = prepare_data(data)
    assert torch.allclose(prep.mean, raw.x_train.mean(dim=0), atol=1e-6)
    assert torch.allclose(prep.std, raw.x_train.std(dim=0, correction=0), atol=1e-6)
    assert torch.allclose(splits.x_train.mean(dim=0), torch.zeros(splits.in_dim), atol=1e-5)
    assert torch.allclose(splits.x_test, prep(raw.x_test), atol=1e-6)  # the same map on the test split
    assert not torch.allclose(splits.x_test.mean(dim=0), torch.zeros(splits.in_dim), atol=1e-3)
