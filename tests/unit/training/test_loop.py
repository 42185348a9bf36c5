"""Batch regimes, update counting, max_steps, gradient clipping, full-batch methods and the losses."""

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from models import MLP
from tests.conftest import read_scalars
from trainer.config.build import build_data
from trainer.data import prepare_data
from trainer.run import run
from trainer.storage.checkpoint import load_checkpoint
from trainer.training.accel import TrainStep
from trainer.training.curves import LR_TAG
from trainer.training.loop import EpochCursor, train_epoch

SMALL = ("data.val_fraction=0.45", "data.test_fraction=0.45")  # ~180 train samples


def n_train(cfg) -> int:
    return len(prepare_data(build_data(cfg.data))[0].x_train)


@pytest.mark.parametrize("batch,drop_last,updates", [
    ("1", False, lambda n: n),            # pure SGD: an epoch is n updates
    ("32", False, lambda n: -(-n // 32)),  # the last partial batch is kept...
    ("32", True, lambda n: n // 32),       # ...or dropped
    ("full", False, lambda n: 1),          # full-batch gradient descent: one update per epoch
])
def test_updates_per_epoch(cfg_factory, tmp_path, batch, drop_last, updates):
    cfg = cfg_factory(*SMALL, f"batch_size={batch}", f"drop_last={drop_last}", "epochs=2",
                      "optimizer=sgd", "log_every_n_steps=1")
    metrics = run(cfg, out_dir=tmp_path)
    assert metrics["epochs"] == 2 and metrics["steps"] == 2 * updates(n_train(cfg))
    assert len(read_scalars(tmp_path)[LR_TAG]) == metrics["steps"]


def test_max_steps_stops_mid_epoch(cfg_factory, tmp_path):
    cfg = cfg_factory(*SMALL, "batch_size=16", "epochs=50", "max_steps=17", "log_every_n_steps=1")
    per_epoch = -(-n_train(cfg) // 16)
    metrics = run(cfg, out_dir=tmp_path)
    assert metrics["steps"] == 17 and metrics["stopped_by"] == "max_steps"
    assert metrics["epochs"] == -(-17 // per_epoch)
    assert 17 % per_epoch != 0  # the last epoch really was cut short
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["fit"]["step"] == 17
    assert [k for k, _ in read_scalars(tmp_path)[LR_TAG]] == list(range(1, 18))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_grad_clip_bounds_the_update_norm(precision):
    # SGD with lr 1 on one full batch: the update is minus the (clipped) gradient.
    torch.manual_seed(0)
    x, y = torch.randn(64, 5) * 10, torch.randint(0, 3, (64,))

    def step_norm(clip: float | None) -> float:
        torch.manual_seed(1)
        model = nn.Linear(5, 3)
        before = nn.utils.parameters_to_vector(model.parameters()).detach().clone()
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
        step = TrainStep(model, optimizer, nn.functional.cross_entropy, x.device, precision, clip)
        train_epoch(model, optimizer, nn.functional.cross_entropy, x, y, 64,
                    EpochCursor.start(64, x.device, None), step=step)
        return (nn.utils.parameters_to_vector(model.parameters()) - before).norm().item()

    assert step_norm(None) > 1.0
    assert step_norm(0.5) == pytest.approx(0.5, rel=1e-4)


def test_grad_clip_in_a_run(cfg_factory, tmp_path):
    metrics = run(cfg_factory("grad_clip=1.0", "epochs=2"), out_dir=tmp_path)
    assert metrics["val/acc"] > 0.5


def test_lbfgs_full_batch_trains_with_its_closure(cfg_factory, tmp_path):
    metrics = run(cfg_factory("optimizer=lbfgs", "batch_size=full", "epochs=3", "model.depth=1"),
                  out_dir=tmp_path)
    assert metrics["steps"] == 3 and metrics["val/acc"] > 0.85
    losses = [v for _, v in read_scalars(tmp_path)["train/loss"]]
    assert losses[-1] < 0.2 * losses[0]


def test_rprop_with_minibatches_warns(cfg_factory, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="trainer.config"):
        run(cfg_factory("optimizer=rprop", "batch_size=64", "epochs=1"), out_dir=tmp_path / "mini")
    assert "full-batch method" in caplog.text and "batch_size=full" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="trainer.config"):
        run(cfg_factory("optimizer=rprop", "batch_size=full", "epochs=1"), out_dir=tmp_path / "full")
    assert "full-batch" not in caplog.text


def linear_regression(path: Path) -> str:
    """y = x . w + 0.1 noise on 4 features: the quadratic loss can fall to the noise level 0.01."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 4)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5, 3.0]) + 0.1 * rng.normal(size=400)).astype(np.float32)
    np.savez(path, x=x, y=y)
    return str(path)


def test_regression_uses_mean_squared_error(cfg_factory, tmp_path):
    data = linear_regression(tmp_path / "toy.npz")
    cfg = cfg_factory("data=npz", f"data.path={data}", "model.depth=0", "optimizer=sgd", "optimizer.lr=0.1",
                      "batch_size=full", "epochs=60")
    metrics = run(cfg, out_dir=tmp_path)
    assert "test/acc" not in metrics and "val/acc" not in metrics
    assert metrics["test/loss"] < 0.03  # from ~14 (the variance of y) to about the noise 0.01
    # test/loss is the mean of (prediction - y)^2 with the best weights, computed here by hand in
    # y's units (the model predicts targets standardized with the train statistics).
    splits, _ = prepare_data(build_data(cfg.data))
    model = MLP(4, 1, [])
    model.load_state_dict(load_checkpoint(tmp_path / "checkpoints" / "best.pt")["model"])
    with torch.no_grad():
        pred, y = splits.target.inverse(model(splits.x_test).squeeze(1)), splits.target.inverse(splits.y_test)
        mse = ((pred - y) ** 2).mean().item()
    assert metrics["test/loss"] == pytest.approx(mse, rel=1e-5)
