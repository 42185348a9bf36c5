"""The training and evaluation loops: tensors on the device, index batches, no host sync per step."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F


def loss_function(task: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Cross-entropy for classification; the notes' quadratic loss (MSE) for regression."""
    if task == "classification":
        return F.cross_entropy

    def mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(out, y.view_as(out))

    return mse


def num_batches(n: int, batch_size: int, drop_last: bool) -> int:
    """Optimizer updates per epoch over n samples."""
    return n // batch_size if drop_last else -(-n // batch_size)


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    *,
    drop_last: bool = False,
    generator: torch.Generator | None = None,
    classification: bool = True,
    on_step: Callable[[], None] | None = None,
) -> dict[str, torch.Tensor]:
    """One pass over (x, y) in random index batches; returns device tensors (summed, not synced).

    `on_step` runs after each optimizer update (per-step schedulers, logging, progress).
    """
    model.train()
    n = len(x)
    perm = torch.randperm(n, device=x.device, generator=generator)
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.int64)
    seen = 0
    for i in range(num_batches(n, batch_size, drop_last)):
        idx = perm[i * batch_size : (i + 1) * batch_size]
        xb, yb = x[idx], y[idx]
        out = model(xb)
        loss = loss_fn(out, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        b = len(idx)
        loss_sum.add_(loss.detach(), alpha=b)
        if classification:
            correct.add_((out.detach().argmax(dim=1) == yb).sum())
        seen += b
        if on_step is not None:
            on_step()
    stats = {"loss": loss_sum / max(seen, 1), "samples": torch.tensor(seen)}
    if classification:
        stats["acc"] = correct / max(seen, 1)
    return stats


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    classification: bool = True,
    batch_size: int = 8192,
) -> dict[str, float]:
    """Mean loss (and accuracy) over (x, y) in large batches; one host sync at the end."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.int64)
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        out = model(xb)
        loss_sum += loss_fn(out, yb).float() * len(xb)
        if classification:
            correct += (out.argmax(dim=1) == yb).sum()
    model.train(was_training)
    n = max(len(x), 1)
    metrics = {"loss": (loss_sum / n).item()}
    if classification:
        metrics["acc"] = (correct / n).item()
    return metrics
