"""`loss=...`: each loss against its formula computed by hand, and the reported loss of a run in the
targets' own units, recomputed from its checkpoint."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from tests.conftest import make_cfg
from trainer.config.build import build_data, build_model
from trainer.data import prepare_data
from trainer.run import run
from trainer.storage.checkpoint import load_checkpoint
from trainer.training.losses import Loss
from trainer.vectorized.grouping import plan


def test_classification_losses_are_their_formulas():
    out = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0]])
    y = torch.tensor([0, 2])
    log_p = out - out.exp().sum(1, keepdim=True).log()
    cross_entropy = -(log_p[0, 0] + log_p[1, 2]) / 2
    one_hot = torch.tensor([[1.0, 0, 0], [0, 0, 1.0]])
    for name, expected in (("auto", cross_entropy), ("cross_entropy", cross_entropy), ("nll", cross_entropy),
                           ("mse", ((out - one_hot) ** 2).sum() / 6)):
        loss = Loss(name, "classification")
        assert loss.factor == 1.0
        torch.testing.assert_close(loss(out, y), expected, msg=name)


@pytest.mark.parametrize("delta", [1.0, 0.25])
def test_regression_losses_in_the_targets_units(delta):
    # predictions and targets in their own units; training sees them standardized (centred, / s)
    pred = torch.tensor([1.0, 4.0, -2.0, 0.5])
    y = torch.tensor([1.5, 1.0, -2.2, 3.0])
    mean, s = 0.7, 2.5
    r = pred - y  # -0.5, 3.0, 0.2, -2.5: some within delta, some beyond
    huber = torch.where(r.abs() <= delta, 0.5 * r ** 2, delta * (r.abs() - 0.5 * delta)).mean()
    for name, expected in (("auto", (r ** 2).mean()), ("mse", (r ** 2).mean()), ("l1", r.abs().mean()),
                           ("huber", huber)):
        loss = Loss(name, "regression", scale=s, huber_delta=delta)
        reported = loss((pred - mean) / s, (y - mean) / s) * loss.factor
        torch.testing.assert_close(reported, expected, msg=name)


@pytest.mark.parametrize("overrides", [("loss=l1",), ("loss=huber", "huber_delta=0.3")])
def test_a_runs_reported_loss_is_recomputed_from_its_checkpoint(tmp_path, overrides):
    metrics = run(make_cfg("data=regression", *overrides, "epochs=3", "model.width=16"), out_dir=tmp_path)
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    cfg = OmegaConf.create(ckpt["config"])
    splits, _ = prepare_data(build_data(cfg.data), prep_state=ckpt["preprocess"], target_state=ckpt["target"])
    model = build_model(cfg.model, splits.in_dim, splits.out_dim)
    model.load_state_dict(ckpt["model"])
    with torch.no_grad():
        pred = splits.target.inverse(model(splits.x_test))
    r = pred - splits.target.inverse(splits.y_test).view_as(pred)  # residuals in the targets' units
    if cfg.loss == "l1":
        expected = r.abs().mean()
    else:
        d = cfg.huber_delta
        expected = torch.where(r.abs() <= d, 0.5 * r ** 2, d * (r.abs() - 0.5 * d)).mean()
    assert metrics["test/loss"] == pytest.approx(float(expected), rel=1e-5)
    assert splits.target.scale != pytest.approx(1.0)  # the units matter: the targets were rescaled


def test_mse_on_one_hot_targets_trains_and_nll_is_cross_entropy(tmp_path):
    common = ("epochs=3", "model.width=32")
    mse = run(make_cfg("loss=mse", "optimizer.lr=0.01", *common), out_dir=tmp_path / "mse")
    assert mse["val/acc"] > 0.85 and mse["train/loss"] < 0.1  # one-hot MSE starts near 1/K + outputs^2
    nll = run(make_cfg("loss=nll", *common), out_dir=tmp_path / "nll")
    ce = run(make_cfg("loss=cross_entropy", *common), out_dir=tmp_path / "ce")
    for key in ("train/loss", "val/loss", "val/acc", "test/loss", "test/acc"):
        assert nll[key] == pytest.approx(ce[key], rel=1e-6), key


def test_a_loss_other_than_auto_trains_alone_in_a_vectorized_sweep():
    tasks = [OmegaConf.to_container(make_cfg("loss=mse", f"seed={s}"), resolve=True) for s in (0, 1)]
    alone = "loss=mse is not vectorized (loss=auto only)"
    assert plan(tasks) == [(alone, [0]), (alone, [1])]
