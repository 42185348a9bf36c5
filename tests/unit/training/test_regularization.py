"""Regularization: alpha * sum|w| and alpha * sum w^2 on the weights, checked against hand computations."""

from __future__ import annotations

import re

import pytest
import torch
from torch.nn import functional as F

from models import MLP
from tests.conftest import read_metrics, read_scalars
from trainer.run import run
from trainer.runtime.errors import ConfigError
from trainer.storage.checkpoint import load_checkpoint
from trainer.training.accel import TrainStep
from trainer.training.regularization import make_penalty, penalized_parameters


def gradients(model, penalty, x, y) -> dict[str, torch.Tensor]:
    """The parameters' gradients after the real training step's body (no update)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    step = TrainStep(model, opt, F.cross_entropy, torch.device("cpu"), penalty=penalty)
    loss, _ = step.gradient(x, y)
    return {n: p.grad.clone() for n, p in model.named_parameters()}, loss


@pytest.mark.parametrize("biases", [False, True])
def test_penalty_gradient_is_alpha_sign_w_and_2_alpha_w(biases):
    torch.manual_seed(0)
    model = MLP(3, 2, [4], norm="layer")
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 1, 0, 1])
    plain, loss = gradients(model, None, x, y)
    l1, l2 = 0.03, 0.2
    for pen, expect in ((make_penalty(model, l1=l1, biases=biases), lambda w: l1 * torch.sign(w)),
                        (make_penalty(model, l2=l2, biases=biases), lambda w: 2 * l2 * w)):
        grads, loss_pen = gradients(model, pen, x, y)
        assert loss_pen.item() == loss.item()  # the step returns the data loss, not the penalized one
        for name, p in model.named_parameters():
            is_weight = p.dim() >= 2  # net.0.weight, net.3.weight; LayerNorm's net.1.weight is 1-D
            want = plain[name] + (expect(p.detach()) if is_weight or biases else 0)
            torch.testing.assert_close(grads[name], want, rtol=0, atol=1e-7, msg=name)


def test_penalty_value_by_hand():
    model = MLP(2, 1, [2])
    with torch.no_grad():
        for p, v in zip(model.parameters(), ([[1.0, -2.0], [0.5, 0.0]], [3.0, -1.0], [[-1.0, 4.0]], [7.0]),
                        strict=True):
            p.copy_(torch.tensor(v))
    assert [tuple(p.shape) for p in penalized_parameters(model)] == [(2, 2), (1, 2)]
    # weights only: sum|w| = 1 + 2 + 0.5 + 0 + 1 + 4 = 8.5; sum w^2 = 1 + 4 + 0.25 + 1 + 16 = 22.25
    assert make_penalty(model, l1=0.1)().item() == pytest.approx(0.85)
    assert make_penalty(model, l2=0.1)().item() == pytest.approx(2.225)
    # with the biases: + |3| + |-1| + |7| = 11 more; + 9 + 1 + 49 = 59 more
    assert make_penalty(model, l1=0.1, l2=0.1, biases=True)().item() == pytest.approx(1.95 + 8.125)
    assert make_penalty(model) is None


def test_lbfgs_line_search_minimizes_the_penalized_loss():
    torch.manual_seed(0)
    x, y = torch.randn(20, 3), torch.randint(0, 2, (20,))
    models = [MLP(3, 2, [4]) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    opts = [torch.optim.LBFGS(m.parameters(), lr=1, line_search_fn="strong_wolfe") for m in models]
    pen = make_penalty(models[0], l2=0.05)
    TrainStep(models[0], opts[0], F.cross_entropy, torch.device("cpu"), penalty=pen)(x, y)
    by_hand = make_penalty(models[1], l2=0.05)

    def closure():
        opts[1].zero_grad()
        total = F.cross_entropy(models[1](x), y) + by_hand()
        total.backward()
        return total

    opts[1].step(closure)
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_l2_with_sgd_is_weight_decay_of_twice_alpha(cfg_factory, tmp_path):
    common = ("optimizer=sgd", "epochs=2", "batch_size=128")
    a = run(cfg_factory(*common, "regularization.l2=0.005", "regularization.biases=true"), tmp_path / "l2")
    b = run(cfg_factory(*common, "optimizer.weight_decay=0.01"), tmp_path / "wd")
    wa, wb = (load_checkpoint(tmp_path / n / "checkpoints" / "last.pt")["model"] for n in ("l2", "wd"))
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6)
    assert a["train/loss"] == pytest.approx(b["train/loss"], rel=1e-5)  # both: the data loss
    assert "train/penalty" in a and "train/penalty" not in b


def test_logged_penalty_is_alpha_sum_abs_w_of_the_weights(cfg_factory, tmp_path):
    metrics = run(cfg_factory("epochs=2", "regularization.l1=0.001", "model.width=16"), tmp_path)
    weights = load_checkpoint(tmp_path / "checkpoints" / "last.pt")["model"]
    by_hand = 0.001 * sum(w.abs().sum().item() for k, w in weights.items() if k.endswith("weight"))
    logged = read_scalars(tmp_path)["train/penalty"]
    assert [s for s, _ in logged] == [1, 2]
    assert logged[-1][1] == pytest.approx(by_hand, rel=1e-5)
    assert read_metrics(tmp_path)["train/penalty"] == metrics["train/penalty"] == logged[-1][1]
    assert logged[0][1] != logged[1][1]  # the weights moved


def test_l1_shrinks_the_weights(cfg_factory, tmp_path):
    def weight_l1(name: str) -> float:
        weights = load_checkpoint(tmp_path / name / "checkpoints" / "last.pt")["model"]
        return sum(w.abs().sum().item() for k, w in weights.items() if k.endswith("weight"))

    run(cfg_factory("epochs=3"), tmp_path / "none")
    run(cfg_factory("epochs=3", "regularization.l1=0.001"), tmp_path / "l1")
    assert weight_l1("l1") < 0.8 * weight_l1("none")


@pytest.mark.parametrize("override, message", [
    ("regularization.l1=-0.1", "regularization.l1=-0.1 must be a number >= 0"),
    ("regularization.l2=big", "regularization.l2='big' must be a number"),
    ("regularization.biases=maybe", "regularization.biases='maybe' must be true or false"),
])
def test_bad_regularization_values_are_refused(cfg_factory, tmp_path, override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        run(cfg_factory(override), tmp_path)
    assert not (tmp_path / "metrics.json").exists()
