"""MemberwiseOptimizer (trainer/training/stacked.py): each member moves as its own torch optimizer
moves it, whether the members' learning rates are equal (the update in place) or not (the scratch
update scaled per member), and when a group switches between the two from step to step."""

from __future__ import annotations

import copy

import pytest
import torch

from models import MLP
from trainer.training.stacked import MemberwiseOptimizer, StackedParams

OPTIMIZERS = {
    "adam_fused": lambda p, **kw: torch.optim.Adam(p, fused=True, **kw),
    "sgd_momentum": lambda p, **kw: torch.optim.SGD(p, momentum=0.9, **kw),
    "adamw": lambda p, **kw: torch.optim.AdamW(p, **kw),
}
# Per step, each member's learning rate: equal, then different, then equal again (the state goes on).
RATES = [[0.01, 0.01, 0.01], [0.01, 0.03, 0.002], [0.02, 0.02, 0.02], [0.005, 0.01, 0.02]]


@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_members_move_as_their_own_optimizers(name: str, weight_decay: float) -> None:
    build = OPTIMIZERS[name]
    torch.manual_seed(0)
    models = [MLP(5, 3, [4]) for _ in range(3)]
    alone = [copy.deepcopy(m) for m in models]
    own = [build(m.parameters(), lr=0.01, weight_decay=weight_decay) for m in alone]
    stacked = StackedParams(models)
    optimizer = MemberwiseOptimizer(lambda p: build(p, lr=1.0, weight_decay=0.0), stacked)
    x, y = torch.randn(3, 8, 5), torch.randint(0, 3, (3, 8))
    for lrs in RATES:
        out = stacked(x)
        torch.nn.functional.cross_entropy(out.transpose(1, 2), y, reduction="none").mean(1).sum().backward()
        optimizer.step(lrs, [weight_decay] * 3)
        optimizer.zero_grad()
        for k, (m, o) in enumerate(zip(alone, own, strict=True)):
            o.param_groups[0]["lr"] = lrs[k]
            torch.nn.functional.cross_entropy(m(x[k]), y[k]).backward()
            o.step()
            o.zero_grad()
    for k, m in enumerate(alone):
        for name_, p in m.named_parameters():
            assert torch.allclose(stacked.params[name_][k], p, rtol=1e-5, atol=1e-6), (k, name_)
    member = build(models[1].parameters(), lr=0.01)
    optimizer.member_state(1, member)
    for p, q in zip(models[1].parameters(), alone[1].parameters(), strict=True):
        for key, v in own[1].state[q].items():
            assert torch.allclose(member.state[p][key], v, rtol=1e-5, atol=1e-7), key
