"""Normalization layers: placement, the formulas in training and eval mode, resume, averaging, eval."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from models import MLP
from tests.conftest import read_metrics
from tests.integration.test_reliability import assert_same_run
from tests.unit.training.test_accel import blobs, one_epoch
from trainer.config.build import build_data, check_batch_norm
from trainer.data import prepare_data
from trainer.eval import evaluate_checkpoint
from trainer.run import run
from trainer.runtime.errors import ConfigError
from trainer.storage.checkpoint import load_checkpoint
from trainer.training import accel
from trainer.training.regularization import make_penalty

EPS = 1e-5  # BatchNorm1d's and LayerNorm's default


@pytest.mark.parametrize("norm, position, kinds", [
    ("none", "pre", [nn.Linear, nn.Tanh, nn.Linear, nn.Tanh, nn.Linear]),
    ("batch", "pre", [nn.Linear, nn.BatchNorm1d, nn.Tanh, nn.Linear, nn.BatchNorm1d, nn.Tanh, nn.Linear]),
    ("batch", "post", [nn.Linear, nn.Tanh, nn.BatchNorm1d, nn.Linear, nn.Tanh, nn.BatchNorm1d, nn.Linear]),
    ("layer", "pre", [nn.Linear, nn.LayerNorm, nn.Tanh, nn.Linear, nn.LayerNorm, nn.Tanh, nn.Linear]),
])
def test_norm_follows_each_hidden_linear_layer(norm, position, kinds):
    model = MLP(3, 2, [4, 5], activation="tanh", norm=norm, norm_position=position, dropout=0.1)
    layers = [type(m) for m in model.net if not isinstance(m, nn.Dropout)]
    assert layers == kinds  # the output layer has no norm


def test_layer_norm_by_hand():
    torch.manual_seed(0)
    model = MLP(3, 2, [4], norm="layer", norm_position="post", activation="tanh")
    with torch.no_grad():
        model.net[2].weight.copy_(torch.tensor([1.0, 2.0, 0.5, -1.0]))
        model.net[2].bias.copy_(torch.tensor([0.0, 0.1, 0.2, 0.3]))
    x = torch.randn(6, 3)
    lin, ln, out = model.net[0], model.net[2], model.net[3]
    y = torch.tanh(x @ lin.weight.T + lin.bias)  # post: the norm acts on the activations y
    mean, var = y.mean(dim=1, keepdim=True), y.var(dim=1, unbiased=False, keepdim=True)
    normed = (y - mean) / torch.sqrt(var + EPS) * ln.weight + ln.bias
    torch.testing.assert_close(model(x), normed @ out.weight.T + out.bias)


def test_batch_norm_trains_on_batch_statistics_and_evaluates_on_running_ones():
    torch.manual_seed(0)
    model = MLP(3, 2, [4], norm="batch")  # Linear, BatchNorm1d, ReLU, Linear
    lin, bn, out = model.net[0], model.net[1], model.net[3]
    x = torch.randn(8, 3) * 2 + 1
    z = (x @ lin.weight.T + lin.bias).detach()

    def head(normed):
        return torch.relu(normed) @ out.weight.T + out.bias

    train_out = model(x)  # training mode: this batch's mean and biased variance
    torch.testing.assert_close(train_out, head((z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + EPS)))
    # running statistics: 0.9 * (0, 1) + 0.1 * (batch mean, unbiased batch variance)
    torch.testing.assert_close(bn.running_mean, 0.1 * z.mean(0))
    torch.testing.assert_close(bn.running_var, 0.9 + 0.1 * z.var(0, unbiased=True))
    model.eval()
    single = x[:1]
    z1 = single @ lin.weight.T + lin.bias
    expected = head((z1 - bn.running_mean) / torch.sqrt(bn.running_var + EPS))
    torch.testing.assert_close(model(single), expected)  # one sample alone: the same as in any batch
    torch.testing.assert_close(model(x)[:1], expected)


def test_resume_with_batch_norm_is_identical(cfg_factory, tmp_path):
    opts = ("model.norm=batch", "model.dropout=0.1", "optimizer=momentum", "batch_size=50", "model.width=32")
    full = run(cfg_factory("epochs=4", *opts), out_dir=tmp_path / "full")
    run(cfg_factory("epochs=2", *opts), out_dir=tmp_path / "split")
    resumed = run(cfg_factory("epochs=4", "resume=true", *opts), out_dir=tmp_path / "split")
    assert_same_run(tmp_path / "full", tmp_path / "split", full, resumed)
    last = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")["model"]
    assert last["net.1.num_batches_tracked"].item() == full["steps"]  # running statistics are saved
    # eval rebuilds the model with its norm layers and running statistics: the run's own test metrics
    best = load_checkpoint(tmp_path / "full" / "checkpoints" / "best.pt")
    assert evaluate_checkpoint(best, "test", device="cpu")["test/acc"] == pytest.approx(full["test/acc"])


def test_averaged_weights_get_their_own_batch_norm_statistics(cfg_factory, tmp_path):
    cfg = cfg_factory("model.norm=batch", "model.depth=1", "model.width=16", "averaging=swa",
                      "averaging.start_epoch=1", "epochs=2", "optimizer.lr=0.01")
    metrics = run(cfg, out_dir=tmp_path)
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    avg = {k.removeprefix("module."): v for k, v in ckpt["averaging"]["averaged"].items()}
    splits, _ = prepare_data(build_data(cfg.data))
    z = splits.x_train @ avg["net.0.weight"].T + avg["net.0.bias"]  # the averaged first layer
    # update_bn: the plain mean and unbiased variance over the training split, for the averaged weights
    torch.testing.assert_close(avg["net.1.running_mean"], z.mean(0), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(avg["net.1.running_var"], z.var(0), rtol=1e-4, atol=1e-5)
    raw = ckpt["model"]
    assert not torch.allclose(raw["net.1.running_mean"], avg["net.1.running_mean"], atol=1e-3)
    # the best weights (tested) are the averaged ones with those statistics
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert evaluate_checkpoint(best, "test", device="cpu")["test/acc"] == pytest.approx(metrics["test/acc"])


def test_layer_norm_run_trains(cfg_factory, tmp_path):
    metrics = run(cfg_factory("model.norm=layer", "model.norm_position=post", "epochs=2"), tmp_path)
    assert read_metrics(tmp_path)["status"] == "completed" and metrics["val/acc"] > 0.8


@pytest.mark.parametrize("overrides, message", [
    (("model.norm=group",), "model.norm='group' is not allowed"),
    (("model.norm_position=middle",), "model.norm_position='middle' is not allowed"),
    (("model.norm=batch", "batch_size=1"), "model.norm=batch needs at least 2 samples in every batch"),
    # digits' train split has 1,258 samples: batches of 419 leave a last batch of 1
    (("model.norm=batch", "batch_size=419"), "a batch has 1 sample; use a larger batch_size, drop_last=true"),
])
def test_bad_norm_settings_are_refused(cfg_factory, tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        run(cfg_factory(*overrides), tmp_path)
    assert not (tmp_path / "metrics.json").exists()
    assert not (tmp_path / "checkpoints").exists()


def test_batch_norm_with_drop_last_trains_past_a_batch_of_one(cfg_factory, tmp_path):
    metrics = run(cfg_factory("model.norm=batch", "batch_size=419", "drop_last=true", "epochs=1"), tmp_path)
    assert metrics["status"] == "completed" and metrics["steps"] == 1258 // 419


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_step_with_batch_norm_and_penalty_matches_the_eager_step():
    device = torch.device("cuda")
    x, y = (t.to(device) for t in blobs(n=200))
    states = []
    for graphs in (False, True):
        torch.manual_seed(0)
        model = MLP(16, 3, [32], norm="batch").to(device)
        fast = accel.optimizer_options("torch.optim.Adam", {"lr": 0.01}, device, cuda_graphs=True)
        opt = torch.optim.Adam(model.parameters(), **fast)
        step = accel.make_step(model, opt, F.cross_entropy, device, cuda_graphs=graphs, batch_size=64,
                               penalty=make_penalty(model, l1=1e-3, l2=1e-3))
        assert isinstance(step, accel.GraphedStep) == graphs
        gen = torch.Generator(device=device).manual_seed(0)
        for _ in range(3):  # the warm-up steps before capture must not move the running statistics
            one_epoch(model, opt, x, y, 64, gen, step=step)
        states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    for k, v in states[0].items():
        torch.testing.assert_close(states[1][k], v, rtol=1e-4, atol=1e-5, msg=k)


@pytest.mark.parametrize("n, batch_size, drop_last, world, ok", [
    (100, 10, False, 1, True), (101, 10, False, 1, False), (101, 10, True, 1, True),
    (100, 2, False, 2, False),  # each of 2 processes gets 1 sample of every batch
    (103, 10, False, 2, False),  # the last batch of 3 is trimmed to 2: 1 sample a process
    (104, 10, False, 2, True),  # the last batch of 4: 2 a process
    (101, 10, False, 2, True),  # a last batch of 1 cannot be shared by 2 processes: it is skipped
])
def test_batch_norm_batches_per_process(n, batch_size, drop_last, world, ok):
    if ok:
        check_batch_norm("batch", n, batch_size, drop_last, world)
    else:
        with pytest.raises(ConfigError, match="a batch has 1 sample"):
            check_batch_norm("batch", n, batch_size, drop_last, world)
    check_batch_norm("layer", n, batch_size, drop_last, world)  # LayerNorm takes any batch


def test_a_checkpoint_from_before_norm_and_regularization_resumes(cfg_factory, tmp_path):
    from trainer.storage.checkpoint import save_checkpoint

    run(cfg_factory("epochs=1", "model.width=16"), out_dir=tmp_path)
    for name in ("last.pt", "best.pt"):  # as an older version wrote them: no such keys
        path = tmp_path / "checkpoints" / name
        ckpt = load_checkpoint(path)
        del ckpt["config"]["model"]["norm"], ckpt["config"]["model"]["norm_position"]
        del ckpt["config"]["regularization"]
        save_checkpoint(ckpt, path)
    with pytest.raises(ConfigError, match="model.norm: 'none' -> 'batch'"):
        run(cfg_factory("epochs=2", "model.width=16", "model.norm=batch", "resume=true"), out_dir=tmp_path)
    metrics = run(cfg_factory("epochs=2", "model.width=16", "resume=true"), out_dir=tmp_path)
    assert metrics["status"] == "completed" and metrics["epochs"] == 2
