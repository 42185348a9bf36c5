"""Learning-rate schedules of the notes that `torch.optim.lr_scheduler` has no class for."""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import LambdaLR


class _InverseTime:
    """lr_k / lr_0 = 1 / (1 + k / tau); a class, not a lambda, so the scheduler can be pickled."""

    def __init__(self, tau: float) -> None:
        self.tau = tau

    def __call__(self, k: int) -> float:
        return 1.0 / (1.0 + k / self.tau)


def inverse_time(optimizer: torch.optim.Optimizer, tau: float) -> LambdaLR:
    """The 1/k decay lr_k = lr_0 / (1 + k / tau), k counting scheduler steps."""
    if tau <= 0:
        from trainer.errors import ConfigError

        raise ConfigError(f"scheduler.tau={tau} must be positive (updates until the rate halves)")
    return LambdaLR(optimizer, _InverseTime(tau))
