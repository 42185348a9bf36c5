"""Regression targets standardized with train statistics; losses reported in the original units.

`y <- (y - mean_k) / s`, with `mean_k` the train mean of output k and one scale `s` for all outputs:
`s^2` is the mean over outputs of their (1/N) train variances, so for one target `s` is its
standard deviation. One common scale keeps the trained loss proportional to the mean squared error
in the original units (`MSE_original = s^2 * MSE_standardized`, exactly, for every split), so the
loss that training minimizes and the loss reported rank models the same way.
"""

from __future__ import annotations

from typing import Any

import torch


class TargetScaler:
    """`(y - mean) / scale` on regression targets; `identity()` for classification or old checkpoints."""

    def __init__(self, mean: torch.Tensor | None = None, scale: float = 1.0) -> None:
        self.mean = mean
        self.scale = float(scale)

    @classmethod
    def identity(cls) -> TargetScaler:
        return cls()

    @classmethod
    def fit(cls, y: torch.Tensor) -> TargetScaler:
        """Statistics of the train targets y (N,) or (N, K)."""
        y = y.double()
        var = y.var(dim=0, correction=0).mean()
        scale = float(var.sqrt()) if var > 0 else 1.0  # a constant target is only centred
        return cls(y.mean(dim=0).float(), scale)

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        if self.mean is None:
            return y
        return (y - self.mean.to(y.device)) / self.scale

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """Standardized targets (or predictions) back in the original units."""
        if self.mean is None:
            return y
        return y * self.scale + self.mean.to(y.device)

    def state_dict(self) -> dict[str, Any]:
        if self.mean is None:
            return {"kind": "none"}
        return {"kind": "standardize", "mean": self.mean.cpu(), "scale": self.scale}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any] | None) -> TargetScaler:
        if not state or state.get("kind") == "none":
            return cls.identity()
        return cls(state["mean"], state["scale"])


def original_units(metrics: dict[str, float], loss_factor: float) -> dict[str, float]:
    """Metrics with every `.../loss` (a loss on standardized targets) in original units (`loss_factor`:
    trainer.training.losses.Loss.factor)."""
    if loss_factor == 1.0:
        return metrics
    return {k: v * loss_factor if k.rsplit("/", 1)[-1] == "loss" else v for k, v in metrics.items()}
