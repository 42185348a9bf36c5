"""Learning-rate schedules: the notes' decays torch has no class for, and the run's `Schedule`.

Every schedule here is multiplicative ("chainable", like torch's StepLR or ExponentialLR): a step
multiplies the current rate by a ratio. That is what lets a linear warm-up compose with any of
them by product, lr_k = lr_0 * warmup(k) * schedule(k).
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

import torch
from hydra.utils import get_object
from torch.optim.lr_scheduler import LinearLR, LRScheduler, ReduceLROnPlateau
from torch.optim.swa_utils import SWALR

from trainer.runtime.errors import ConfigError

log = logging.getLogger(__name__)


class InverseTime(LRScheduler):
    """lr_k = lr_0 / (1 + k / tau) ** power, k counting scheduler steps (power 1: the notes' 1/k)."""

    def __init__(self, optimizer: torch.optim.Optimizer, tau: float, power: float = 1.0,
                 last_epoch: int = -1) -> None:
        if not tau > 0:
            raise ConfigError(f"scheduler.tau={tau} must be positive (steps until the rate falls to "
                              f"1/2 for 1/k, to 1/sqrt(2) for 1/sqrt(k))")
        self.tau, self.power = float(tau), float(power)
        super().__init__(optimizer, last_epoch)

    def factor(self, k: int) -> float:
        return (1.0 + k / self.tau) ** -self.power

    def get_lr(self) -> list[float]:
        k = self.last_epoch
        ratio = 1.0 if k == 0 else self.factor(k) / self.factor(k - 1)
        return [group["lr"] * ratio for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[float]:
        return [base * self.factor(self.last_epoch) for base in self.base_lrs]


def inverse_time(optimizer: torch.optim.Optimizer, tau: float) -> InverseTime:
    """The notes' 1/k decay lr_k = lr_0 / (1 + k / tau), k counting scheduler steps."""
    return InverseTime(optimizer, tau, power=1.0)


def inverse_sqrt(optimizer: torch.optim.Optimizer, tau: float) -> InverseTime:
    """The 1/sqrt(k) decay lr_k = lr_0 / sqrt(1 + k / tau) (the notes' rate for merely convex losses)."""
    return InverseTime(optimizer, tau, power=0.5)


class Schedule:
    """The run's learning rate: the configured scheduler at its interval, times a linear warm-up.

    The warm-up multiplies the rate of the k-th update (k = 0, 1, ...) by
    start_factor + (1 - start_factor) * min(k, warmup_steps) / warmup_steps (torch's LinearLR,
    stepped per update). ReduceLROnPlateau steps per epoch on the validation loss. With `swa`
    (an SWALR and its first epoch) SWALR replaces the scheduler from the end of that epoch on.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, scheduler: Any | None, interval: str,
                 warmup_steps: int = 0, warmup_start_factor: float = 0.01,
                 swa: tuple[SWALR, int] | None = None) -> None:
        self.optimizer, self.scheduler = optimizer, scheduler
        self.interval, self.warmup_steps = interval, warmup_steps
        self.warmup = (LinearLR(optimizer, warmup_start_factor, 1.0, total_iters=warmup_steps)
                       if warmup_steps > 0 else None)
        self.swa, self.swa_start = swa if swa is not None else (None, 0)
        self.swa_active = False

    def carried(self) -> Schedule:
        """This schedule, for an optimizer that carries the learning rate but never updates (the
        updates are a stack's: trainer.training.stacked): it steps once without gradients, which
        changes nothing, so torch's schedulers know that it steps and do not warn that they step
        before it."""
        if any(p.grad is not None for group in self.optimizer.param_groups for p in group["params"]):
            raise ValueError("a carrier optimizer's parameters have no gradients")
        self.optimizer.step()
        return self

    @property
    def per_update(self) -> bool:
        """Whether `after_update` does anything: a per-step scheduler or a warm-up (a constant
        rate, or one changed per epoch, needs no call per update)."""
        return (self.scheduler is not None and self.interval == "step") or self.warmup is not None

    def after_update(self) -> None:
        """Call after every optimizer update (when `per_update`)."""
        if self.scheduler is not None and self.interval == "step" and not self.swa_active:
            self.scheduler.step()
        if self.warmup is not None and self.warmup.last_epoch < self.warmup_steps:
            self.warmup.step()

    def after_epoch(self, epoch: int, val_loss: float) -> None:
        """Call after every epoch's validation (epochs count from 1)."""
        if self.swa is not None and epoch >= self.swa_start:
            self.swa_active = True
            self.swa.step()
        elif isinstance(self.scheduler, ReduceLROnPlateau):
            self.scheduler.step(val_loss)
        elif self.scheduler is not None and self.interval == "epoch":
            self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        parts = {"scheduler": self.scheduler, "warmup": self.warmup, "swa": self.swa}
        state = {k: v.state_dict() for k, v in parts.items() if v is not None}
        return {**state, "swa_active": self.swa_active}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in ("scheduler", "warmup", "swa"):
            if getattr(self, name) is not None:
                getattr(self, name).load_state_dict(state[name])
        self.swa_active = state["swa_active"]


def arm_options(target: str, per_arm: dict[str, Any] | None, group: str) -> dict[str, Any]:
    """The options of a sweep's arms (`schedule.per_arm`, set by an experiment for a sweep over
    several schedulers) that this arm's `target` takes: `tau` is the 1/k arm's, the step-decay arm
    ignores it (said in the log)."""
    if not per_arm:
        return {}
    try:
        accepted = inspect.signature(get_object(target)).parameters
    except Exception:  # an unknown target: instantiate_checked reports it
        return {}
    unused = [k for k in per_arm if k not in accepted]
    if unused:
        log.info("%s: %s is an option of another arm of the sweep; %s does not take it", group,
                 ", ".join(f"schedule.per_arm.{k}={per_arm[k]}" for k in unused), target)
    return {k: v for k, v in per_arm.items() if k in accepted}
