"""The stacked group's gradient by hand (trainer/training/stacked_backprop.py) equals autograd's."""

from __future__ import annotations

import copy

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


@pytest.mark.parametrize("by_hand", [True, False])
def test_shared_batch_equals_each_members_copy(by_hand: bool) -> None:
    """Members that draw the same rows: one (b, D) batch broadcast to every member's first layer gives
    the losses, outputs and gradients of M gathered copies (M, b, D), bit for bit."""
    torch.manual_seed(0)
    stacked = StackedParams([MLP(5, 4, [7, 6]) for _ in range(3)])
    assert stacked.shares_input
    x, y = torch.randn(8, 5), torch.randint(0, 4, (3, 8))
    loss_fn = Loss("auto", "classification")
    results = []
    for xb in (x.expand(3, 8, 5).contiguous(), x):
        for p in stacked.tensors:
            p.grad = None
        if by_hand:
            losses, out = StackedBackprop(stacked, loss_fn)(xb, y)
        else:
            out = stacked(xb)
            losses = loss_fn.member_means(out, y)
            losses.sum().backward()
        results.append((losses.detach(), out.detach(), [p.grad.clone() for p in stacked.tensors]))
    (copies, out_copies, grads_copies), (shared, out_shared, grads_shared) = results
    assert out_shared.shape == (3, 8, 4)
    assert torch.equal(shared, copies) and torch.equal(out_shared, out_copies)
    for a, b in zip(grads_shared, grads_copies, strict=True):
        assert torch.equal(a, b)


def test_input_dropout_gets_each_members_copy() -> None:
    """A net whose first layer is not a Linear (an input dropout draws a mask per member) never
    shares: a (b, D) batch is expanded to every member before it."""
    class InputDropout(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(5, 3))

    twin = InputDropout()
    stacked = StackedParams([twin, copy.deepcopy(twin)])  # the same weights: only the masks differ
    assert stacked.layers is not None and not stacked.shares_input
    out = stacked(torch.ones(400, 5))
    assert out.shape == (2, 400, 3)
    assert not torch.equal(out[0], out[1])  # each member drew its own mask
