"""The stacked group's gradient by hand (trainer/training/stacked_backprop.py) equals autograd's."""

from __future__ import annotations

import pytest
import torch

from models import MLP
from trainer.training.losses import Loss
from trainer.training.stacked import StackedParams
from trainer.training.stacked_backprop import StackedBackprop


@pytest.mark.parametrize(("activation", "task", "loss"), [
    ("relu", "classification", "auto"), ("tanh", "classification", "nll"), ("gelu", "regression", "auto"),
    ("relu", "classification", "mse"), ("relu", "regression", "huber")])
def test_gradient_by_hand_equals_autograds(activation: str, task: str, loss: str) -> None:
    """The run's Loss gives the losses and their gradient (written out for a softmax loss, autograd's
    for the others): the same numbers as autograd's backward through the stacked model."""
    torch.manual_seed(0)
    out_dim = 4 if task == "classification" else 2
    models = [MLP(5, out_dim, [7, 6], activation=activation) for _ in range(3)]
    stacked = StackedParams(models)
    assert StackedBackprop.supported(stacked, task)
    x = torch.randn(3, 8, 5)
    y = torch.randint(0, 4, (3, 8)) if task == "classification" else torch.randn(3, 8, 2)
    loss_fn = Loss(loss, task, scale=1.5 if task == "regression" else 1.0)
    losses = loss_fn.member_means(stacked(x), y)
    losses.sum().backward()
    expected = {n: p.grad.clone() for n, p in stacked.params.items()}
    for p in stacked.tensors:
        p.grad = None
    mine, out = StackedBackprop(stacked, loss_fn)(x, y)
    assert torch.allclose(mine, losses.detach(), rtol=1e-6, atol=1e-7)
    assert out.shape == (3, 8, out_dim)
    for name, grad in expected.items():
        assert torch.allclose(stacked.params[name].grad, grad, rtol=1e-5, atol=1e-7), name


def test_dropout_and_backprop_autograd_keep_autograd() -> None:
    stacked = StackedParams([MLP(5, 3, [4], dropout=0.1) for _ in range(2)])
    assert not StackedBackprop.supported(stacked, "classification")
    plain = StackedParams([MLP(5, 3, [4]) for _ in range(2)])
    assert not StackedBackprop.supported(plain, "classification", backprop="autograd")
    assert not StackedBackprop.supported(plain, "classification", device="cuda")  # measured on the CPU only
