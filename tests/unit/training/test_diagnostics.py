"""Gradient diagnostics: the logged per-layer values equal a hand computation from the checkpoint."""

from __future__ import annotations

import re

import pytest
import torch
from torch.nn import functional as F

from tests.conftest import read_scalars
from trainer.config.build import build_data
from trainer.data import prepare_data
from trainer.logs.dashboard import LAYER_LAYOUT
from trainer.logs.events import read_histograms
from trainer.run import run
from trainer.runtime.errors import ConfigError
from trainer.storage.checkpoint import load_checkpoint


def test_logged_layer_stats_equal_a_hand_computation(cfg_factory, tmp_path):
    cfg = cfg_factory("epochs=2", "log_layer_stats=true", "model.width=32", "batch_size=100")
    run(cfg, out_dir=tmp_path)
    w = load_checkpoint(tmp_path / "checkpoints" / "last.pt")["model"]  # the weights after epoch 2
    splits, _ = prepare_data(build_data(cfg.data))
    x, y = splits.x_train[:100], splits.y_train[:100]  # the probe: the first batch_size samples
    weights = [w[f"net.{i}.weight"].clone().requires_grad_() for i in (0, 2, 4)]
    biases = [w[f"net.{i}.bias"] for i in (0, 2, 4)]
    # the notes' network written out: y1 = relu(W1 x + b1), y2 = relu(W2 y1 + b2), out = W3 y2 + b3
    y1 = torch.relu(x @ weights[0].T + biases[0])
    y2 = torch.relu(y1 @ weights[1].T + biases[1])
    loss = F.cross_entropy(y2 @ weights[2].T + biases[2], y)
    grads = torch.autograd.grad(loss, weights)

    scalars = {tag: dict(series) for tag, series in read_scalars(tmp_path).items()}
    for layer, (g, wt) in enumerate(zip(grads, weights, strict=True), start=1):
        assert scalars[f"grad_norm/layer{layer}"][2] == pytest.approx(g.norm().item(), rel=1e-5)
        assert scalars[f"weight_norm/layer{layer}"][2] == pytest.approx(wt.norm().item(), rel=1e-5)
    for layer, act in ((1, y1), (2, y2)):
        assert scalars[f"activation_mean/layer{layer}"][2] == pytest.approx(act.mean().item(), rel=1e-5)
        assert scalars[f"activation_std/layer{layer}"][2] == pytest.approx(
            act.std(unbiased=False).item(), rel=1e-5)
    assert "activation_mean/layer3" not in scalars  # the output layer has no activation
    assert sorted(scalars["grad_norm/layer1"]) == [1, 2]
    charts = {title: tags for title, (_, tags) in LAYER_LAYOUT.items()}
    matched = [t for t in scalars if any(re.search(p, t) for p in charts["gradient norm per layer"])]
    assert sorted(matched) == [f"grad_norm/layer{i}" for i in (1, 2, 3)]  # one chart, every layer

    hists = read_histograms(tmp_path)
    assert set(hists) == {f"{k}/layer{i}" for k in ("gradients", "weights") for i in (1, 2, 3)} | {
        "activations/layer1", "activations/layer2"}
    step, h = hists["gradients/layer1"][-1]
    assert step == 2 and h.num == grads[0].numel()
    assert h.sum == pytest.approx(grads[0].sum().item(), rel=1e-4, abs=1e-6)
    step, h = hists["activations/layer2"][-1]
    assert h.num == y2.numel() and h.max == pytest.approx(y2.max().item(), rel=1e-5)


def test_layer_stats_every_n_epochs(cfg_factory, tmp_path):
    run(cfg_factory("epochs=5", "log_layer_stats=true", "log_layer_stats_every_n_epochs=2",
                    "model.width=16"), out_dir=tmp_path)
    scalars = read_scalars(tmp_path)
    assert [s for s, _ in scalars["grad_norm/layer1"]] == [2, 4]
    assert [s for s, _ in read_histograms(tmp_path)["weights/layer3"]] == [2, 4]


def test_diagnostics_leave_training_unchanged(cfg_factory, tmp_path):
    # dropout draws random numbers and BatchNorm keeps running statistics: the probe pass must not
    # consume the former nor move the latter
    opts = ("epochs=3", "model.norm=batch", "model.dropout=0.3", "model.width=16", "batch_size=50")
    a = run(cfg_factory(*opts), out_dir=tmp_path / "plain")
    b = run(cfg_factory(*opts, "log_layer_stats=true"), out_dir=tmp_path / "stats")
    wa, wb = (load_checkpoint(tmp_path / n / "checkpoints" / "last.pt")["model"] for n in ("plain", "stats"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a["val/loss"] == b["val/loss"] and a["test/acc"] == b["test/acc"]


@pytest.mark.parametrize("override, message", [
    ("log_layer_stats=sometimes", "log_layer_stats='sometimes' must be true or false"),
    ("log_layer_stats_every_n_epochs=0", "log_layer_stats_every_n_epochs=0 must be a positive whole number"),
])
def test_bad_diagnostics_values_are_refused(cfg_factory, tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        run(cfg_factory(override), tmp_path)


def test_layer_stats_may_be_switched_on_for_a_resume(cfg_factory, tmp_path):
    run(cfg_factory("epochs=1", "model.width=16"), out_dir=tmp_path)
    run(cfg_factory("epochs=3", "model.width=16", "resume=true", "log_layer_stats=true"), out_dir=tmp_path)
    assert [s for s, _ in read_scalars(tmp_path)["grad_norm/layer1"]] == [2, 3]
