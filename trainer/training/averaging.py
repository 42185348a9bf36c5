"""Weight averaging on `torch.optim.swa_utils`: the notes' polynomial-decay average, EMA and SWA."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import (
    SWALR,
    AveragedModel,
    get_ema_multi_avg_fn,
    get_swa_multi_avg_fn,
    update_bn,
)

AVERAGING = ("none", "poly", "ema", "swa")

ParamList = list[torch.Tensor]


def poly_multi_avg_fn(gamma: float) -> Callable[[ParamList, ParamList, int], None]:
    """The notes' polynomial-decay averaging, in place over lists of tensors.

    w̄_t = (1 - a_t) w̄_{t-1} + a_t w_t with a_t = (gamma + 1) / (t + gamma); `n` = t - 1 weights
    were averaged before this one. gamma = 0 is the plain running mean (SWA).
    """

    @torch.no_grad()
    def update(averaged: ParamList, current: ParamList, n: int) -> None:
        torch._foreach_lerp_(averaged, current, (gamma + 1.0) / (n + 1.0 + gamma))

    return update


class _Averaged(AveragedModel):
    """AveragedModel counting on the host: its own `update_parameters` tests a device tensor
    (`n_averaged == 0`) on every call, a host sync per step on CUDA; here the count is a Python int."""

    def __init__(self, model: nn.Module, multi_avg_fn: Callable[[ParamList, ParamList, int], None]) -> None:
        super().__init__(model, multi_avg_fn=multi_avg_fn)
        self.n_averaged = self.n_averaged.to(next(model.parameters()).device)
        self.count = 0

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        averaged = [p.detach() for p in self.module.parameters()]
        current = [p.detach() for p in model.parameters()]
        if self.count == 0:
            torch._foreach_copy_(averaged, current)
        else:
            self.multi_avg_fn(averaged, current, self.count)
        for b_avg, b_model in zip(self.module.buffers(), model.buffers(), strict=True):
            b_avg.copy_(b_model)  # buffers (none in an MLP) follow the model, as use_buffers=False does
        self.count += 1
        self.n_averaged += 1  # kept for swa_utils compatibility; a device op, no sync


class WeightAverage:
    """An averaged copy of a model, updated after every optimizer step from epoch `start_epoch` on.

    kind: `poly` (the notes' polynomial decay, `gamma`), `ema` (w̄ <- decay w̄ + (1 - decay) w)
    or `swa` (the plain mean of all weights since `start_epoch`).
    """

    def __init__(self, model: nn.Module, kind: str, *, gamma: float = 3.0, decay: float = 0.999,
                 start_epoch: int = 1) -> None:
        if kind not in AVERAGING[1:]:
            raise ValueError(f"unknown averaging {kind!r}; choose one of {list(AVERAGING[1:])}")
        fns = {"poly": lambda: poly_multi_avg_fn(gamma), "ema": lambda: get_ema_multi_avg_fn(decay),
               "swa": get_swa_multi_avg_fn}
        self.kind, self.start_epoch = kind, start_epoch
        self.averaged = _Averaged(model, fns[kind]())
        self.swa_schedule: dict[str, Any] | None = None  # SWALR's options, for averaging=swa with swa_lr

    def swalr(self, optimizer: torch.optim.Optimizer) -> SWALR | None:
        """SWA's own learning rate (annealed to `swa_lr` from `start_epoch` on), or None."""
        if self.swa_schedule is None:
            return None
        return SWALR(optimizer, **self.swa_schedule)

    @property
    def count(self) -> int:
        """How many weight vectors have been averaged so far."""
        return self.averaged.count

    @property
    def module(self) -> nn.Module:
        """The averaged network (same architecture and state-dict keys as the trained one)."""
        return self.averaged.module

    def update(self, model: nn.Module, epoch: int) -> None:
        """Average in `model`'s current weights (after an optimizer step in `epoch`)."""
        if epoch >= self.start_epoch:
            self.averaged.update_parameters(model)

    def update_bn(self, x: torch.Tensor, chunk: int = 8192) -> None:
        """Recompute the averaged network's BatchNorm statistics on the training inputs `x`.

        The running statistics copied from the trained network belong to its weights, not to the
        average; `torch.optim.swa_utils.update_bn` re-estimates them with the averaged weights (the
        plain mean over `x`, in near-equal chunks so none has a single sample). No BatchNorm: nothing
        runs. The random state is restored after, so dropout in this pass leaves training unchanged.
        """
        if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.module.modules()):
            return
        parts = x.tensor_split(max(1, -(-len(x) // chunk)))
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            update_bn(parts, self.module)

    def weights(self) -> dict[str, torch.Tensor]:
        """A copy of the averaged weights, loadable into the trained model."""
        return copy.deepcopy(self.module.state_dict())

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "count": self.count, "averaged": self.averaged.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.averaged.load_state_dict(state["averaged"])
        self.averaged.count = int(state["count"])


# The `_target_`s of configs/averaging/*.yaml (built with the model: `_partial_: true`).
def poly(model: nn.Module, start_epoch: int = 1, gamma: float = 3.0) -> WeightAverage:
    """The notes' polynomial-decay average: w̄_t = (1 - a_t) w̄_{t-1} + a_t w_t, a_t = (gamma+1)/(t+gamma)."""
    return WeightAverage(model, "poly", gamma=gamma, start_epoch=start_epoch)


def ema(model: nn.Module, start_epoch: int = 1, decay: float = 0.999) -> WeightAverage:
    """Exponential moving average: w̄ <- decay w̄ + (1 - decay) w."""
    return WeightAverage(model, "ema", decay=decay, start_epoch=start_epoch)


def swa(model: nn.Module, start_epoch: int = 1, swa_lr: float | None = None, anneal_epochs: int = 1,
        anneal_strategy: str = "cos") -> WeightAverage:
    """Stochastic weight averaging: the plain mean of the weights since `start_epoch`; with `swa_lr`
    the rate is annealed to it over `anneal_epochs` from then on (torch's SWALR)."""
    average = WeightAverage(model, "swa", start_epoch=start_epoch)
    if swa_lr is not None:
        average.swa_schedule = {"swa_lr": swa_lr, "anneal_epochs": anneal_epochs,
                                "anneal_strategy": anneal_strategy}
    return average
