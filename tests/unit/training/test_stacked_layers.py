"""Members of different widths and activations in one stack (trainer/training/stacked_layers.py):
each member computes what it computes alone, and the padding stays exactly zero."""

from __future__ import annotations

import functools
import io

import pytest
import torch

from models import MLP
from trainer.training.losses import Loss
from trainer.training.stacked import MemberwiseOptimizer, StackedParams
from trainer.training.stacked_backprop import StackedBackprop
from trainer.training.stacked_layers import own

# Mixed widths (one int and per-layer lists) and activations; sigmoid's f(0) = 0.5 is the case
# where padded units would not be zero without the mask. Ordered by activation, as a group is.
SPECS = [([16, 8], "relu"), ([3, 8], "relu"), ([4, 32], "sigmoid"), ([16, 32], "sigmoid"), ([2, 3], "tanh")]


def members(seed: int = 0) -> tuple[list[MLP], list[MLP]]:
    """The stacked members and a copy of each, alone."""
    torch.manual_seed(seed)
    stacked = [MLP(5, 3, w, activation=a) for w, a in SPECS]
    alone = [MLP(5, 3, w, activation=a) for w, a in SPECS]
    for a, m in zip(alone, stacked, strict=True):
        a.load_state_dict(m.state_dict())
    return stacked, alone


def padding(stacked: StackedParams, models: list[MLP]) -> list[torch.Tensor]:
    """Every stacked tensor's entries outside its members' own corners."""
    rest = []
    for name, p in stacked.params.items():
        outside = torch.ones_like(p, dtype=torch.bool)
        for k, m in enumerate(models):
            outside[(k, *own(dict(m.named_parameters())[name].shape))] = False
        rest.append(p.detach()[outside])
        if p.grad is not None:
            rest.append(p.grad[outside])
    return rest


def test_padded_stack_views_and_forward() -> None:
    models, alone = members()
    stacked = StackedParams(models)
    assert stacked.params["net.0.weight"].shape == (5, 16, 5)
    assert stacked.params["net.2.weight"].shape == (5, 32, 16)
    acts = [layer for layer in stacked.layers if not isinstance(layer, tuple)]
    assert [[(a, b) for a, b, _ in layer.segments] for layer in acts] == [[(0, 2), (2, 4), (4, 5)]] * 2
    # A mask where a sigmoid member is padded (layer 1: width 4 of 16), none where none is (layer 2).
    expected = torch.tensor([[1.0] * w + [0.0] * (16 - w) for w in (16, 3, 4, 16, 2)]).unsqueeze(1)
    assert acts[0].mask is not None and torch.equal(acts[0].mask, expected)
    assert acts[1].mask is None
    for m, a in zip(models, alone, strict=True):  # each member's parameters: views of its own corner
        for (name, p), q in zip(m.named_parameters(), a.parameters(), strict=True):
            assert p.shape == q.shape and torch.equal(p, q)
            assert p.untyped_storage().data_ptr() == stacked.params[name].untyped_storage().data_ptr()
    x = torch.randn(7, 5)
    out = stacked(x.expand(len(models), *x.shape), train=False)
    for k, a in enumerate(alone):
        assert torch.allclose(out[k], a(x), rtol=1e-6, atol=1e-6)
        assert torch.allclose(models[k](x), a(x), rtol=1e-6, atol=1e-6)  # its own forward on the views


@pytest.mark.parametrize("by_hand", [False, True])
def test_gradients_are_each_members_own_and_zero_on_the_padding(by_hand: bool) -> None:
    models, alone = members()
    stacked = StackedParams(models)
    loss = Loss("auto", "classification")
    x, y = torch.randn(len(models), 9, 5), torch.randint(0, 3, (len(models), 9))
    if by_hand:
        assert StackedBackprop.supported(stacked, "classification")
        StackedBackprop(stacked, loss)(x, y)
    else:
        loss.member_means(stacked(x), y).sum().backward()
    for k, a in enumerate(alone):
        torch.nn.functional.cross_entropy(a(x[k]), y[k]).backward()
        for name, p in a.named_parameters():
            assert torch.allclose(stacked.params[name].grad[(k, *own(p.shape))], p.grad,
                                  rtol=1e-5, atol=1e-7), (k, name)
    assert all(bool((t == 0).all()) for t in padding(stacked, models))


@pytest.mark.parametrize("optimizer", [
    functools.partial(torch.optim.AdamW, weight_decay=0.0),
    functools.partial(torch.optim.SGD, momentum=0.9, nesterov=True),
    functools.partial(torch.optim.RMSprop, centered=True),
    torch.optim.Adadelta])
def test_padding_stays_zero_and_members_train_as_alone(optimizer) -> None:
    """Steps with weight decay and clipping: the padding stays exactly 0, each member's weights
    follow its own optimizer alone, and leaving members narrows the stack and its state."""
    models, alone = members()
    stacked = StackedParams(models)
    step = MemberwiseOptimizer(lambda params: optimizer(params, lr=1.0), stacked)
    own_opts = [optimizer(a.parameters(), lr=0.01 * (k + 1), weight_decay=0.1) for k, a in enumerate(alone)]
    backprop = StackedBackprop(stacked, Loss("auto", "classification"))
    for _ in range(4):
        x, y = torch.randn(len(models), 9, 5), torch.randint(0, 3, (len(models), 9))
        step.zero_grad()
        backprop(x, y)
        step.clip_([0.5] * len(models))
        step.step([0.01 * (k + 1) for k in range(len(models))], [0.1] * len(models))
        for k, (a, o) in enumerate(zip(alone, own_opts, strict=True)):
            o.zero_grad()
            torch.nn.functional.cross_entropy(a(x[k]), y[k]).backward()
            torch.nn.utils.clip_grad_norm_(a.parameters(), 0.5)
            o.step()
        assert all(bool((t == 0).all()) for t in padding(stacked, models))
    for m, a in zip(models, alone, strict=True):
        for p, q in zip(m.parameters(), a.parameters(), strict=True):
            assert torch.allclose(p, q, rtol=1e-4, atol=1e-6)
    # The widest members (0, 3: width 16 and 32) leave: the stack narrows to the others' widths.
    keep = [1, 2, 4]
    for k in (0, 3):
        StackedParams.release(models[k])
    stacked.adopt([models[k] for k in keep])
    step.keep(keep)
    assert stacked.params["net.0.weight"].shape == (3, 4, 5)
    assert stacked.params["net.2.weight"].shape == (3, 32, 4)
    for u, p in zip(step.handles, stacked.tensors, strict=True):
        for v in step.optimizer.state[u].values():
            assert v.dim() == 0 or v.shape == p.shape


def test_member_state_has_its_own_shapes_and_storage() -> None:
    """A member's optimizer state and weights, as its checkpoint holds them: its own shapes, saved
    without the stack's storage; stacking them back (a resume) pads them again."""
    models, _ = members()
    stacked = StackedParams(models)
    step = MemberwiseOptimizer(lambda params: torch.optim.Adam(params, lr=1.0), stacked)
    x, y = torch.randn(5, 4, 5), torch.randint(0, 3, (5, 4))
    StackedBackprop(stacked, Loss("auto", "classification"))(x, y)
    step.step([0.01] * 5, [0.0] * 5)
    own_opts = [torch.optim.Adam(m.parameters()) for m in models]
    for k, o in enumerate(own_opts):
        step.member_state(k, o)
    k, m = 2, models[2]  # sigmoid [4, 32]
    state = own_opts[k].state_dict()["state"]
    for i, p in enumerate(m.parameters()):
        assert state[i]["exp_avg"].shape == p.shape
    buffer = io.BytesIO()
    weights = {n: v.clone() for n, v in m.state_dict().items()}  # as MemberCheckpointer copies them
    torch.save({"model": weights, "optimizer": own_opts[k].state_dict()}, buffer)
    # Its weights and two moments are 3.4 kB; the file 10.7 kB (zip records); views saved 33 kB.
    assert buffer.tell() < 4 * 3 * sum(p.numel() for p in m.parameters()) + 8_000
    for t in [*weights.values(), *(v for s in state.values() for v in s.values())]:
        assert t.untyped_storage().nbytes() == 4 * t.numel()
    before = {n: p.detach().clone() for n, p in stacked.params.items()}
    moments = [step.optimizer.state[u]["exp_avg_sq"].clone() for u in step.handles]
    assert len(moments) == len(stacked.tensors)
    again = MemberwiseOptimizer(lambda params: torch.optim.Adam(params, lr=1.0), stacked)
    again.load_members(own_opts)
    for u, v in zip(again.handles, moments, strict=True):
        assert torch.equal(again.optimizer.state[u]["exp_avg_sq"], v)
    assert all(torch.equal(before[n], p) for n, p in stacked.params.items())
