"""The notes' regularization: a penalty alpha * sum|w| (L1) or alpha * sum w^2 (L2) added to the
training loss. The data loss is what `train/loss` logs; the penalty is logged apart as `train/penalty`."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

Penalty = Callable[[], torch.Tensor]


def penalized_parameters(model: nn.Module, biases: bool = False) -> list[nn.Parameter]:
    """The weights the penalty applies to: the weight matrices (parameters of 2 or more dimensions).
    With `biases`, every parameter: the biases and the normalization layers' scale and shift too."""
    return [p for p in model.parameters() if p.requires_grad and (biases or p.dim() >= 2)]


def make_penalty(model: nn.Module, l1: float = 0.0, l2: float = 0.0, biases: bool = False) -> Penalty | None:
    """`penalty()`: l1 * sum|w| + l2 * sum w^2 over the penalized parameters, a device scalar with
    its graph (its gradient is l1 * sign(w) + 2 * l2 * w); None when both weights are 0."""
    if not (l1 or l2):
        return None
    params = penalized_parameters(model, biases)
    if not params:
        return None

    def penalty() -> torch.Tensor:
        total = torch.zeros((), device=params[0].device)
        for p in params:  # w.square().sum(), not norm(w)**2: its gradient is finite at w = 0 too
            if l1:
                total = total + l1 * p.abs().sum()
            if l2:
                total = total + l2 * p.square().sum()
        return total

    return penalty
