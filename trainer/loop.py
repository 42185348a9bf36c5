"""The training and evaluation loops: tensors on the device, index batches, no host sync per step."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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


@dataclass
class EpochCursor:
    """Where an epoch stands: its batch order and running sums, so a stopped epoch can resume."""

    perm: torch.Tensor  # (N,) this epoch's sample order
    loss_sum: torch.Tensor  # () sum of per-sample losses so far, on the device
    correct: torch.Tensor  # () correct predictions so far, on the device
    next_batch: int = 0
    seen: int = 0

    @classmethod
    def start(cls, n: int, device: torch.device, generator: torch.Generator | None) -> EpochCursor:
        perm = torch.randperm(n, device=device, generator=generator)
        zero = torch.zeros((), device=device)
        return cls(perm, zero, torch.zeros((), device=device, dtype=torch.int64))

    def stats(self, classification: bool) -> dict[str, torch.Tensor]:
        """Mean loss (and accuracy) of the epoch so far, as device tensors (not synced)."""
        stats = {"loss": self.loss_sum / max(self.seen, 1)}
        if classification:
            stats["acc"] = self.correct / max(self.seen, 1)
        return stats

    def state_dict(self) -> dict:
        return {k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in vars(self).items()}

    @classmethod
    def from_state_dict(cls, state: dict, device: torch.device) -> EpochCursor:
        return cls(**{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in state.items()})


def update(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    xb: torch.Tensor,
    yb: torch.Tensor,
    grad_clip: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer update on (xb, yb); returns the output and loss before it (detached).

    Gradients are clipped to total norm `grad_clip` when given. LBFGS gets the closure it calls
    several times per step (line search); the others take one gradient.
    """
    first: list[torch.Tensor] = []

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        out = model(xb)
        loss = loss_fn(out, yb)
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)  # no host sync
        if not first:
            first.extend((out.detach(), loss.detach()))
        return loss

    if isinstance(optimizer, torch.optim.LBFGS):
        optimizer.step(closure)
    else:
        closure()
        optimizer.step()
    return first[0], first[1]


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    cursor: EpochCursor,
    *,
    drop_last: bool = False,
    classification: bool = True,
    on_step: Callable[[], bool] | None = None,
    grad_clip: float | None = None,
    max_updates: int | None = None,
) -> bool:
    """Train on (x, y) in the cursor's index batches from where it stands; True when the epoch ends.

    `on_step` runs after each optimizer update (per-step schedulers, logging, progress); when it
    returns True the epoch stops after that update and the cursor keeps its place. With
    `max_updates` the epoch ends (True) after that many updates.
    """
    model.train()
    end = num_batches(len(x), batch_size, drop_last)
    if max_updates is not None:
        end = min(end, cursor.next_batch + max_updates)
    for i in range(cursor.next_batch, end):
        idx = cursor.perm[i * batch_size : (i + 1) * batch_size]
        xb, yb = x[idx], y[idx]
        out, loss = update(model, optimizer, loss_fn, xb, yb, grad_clip)
        b = len(idx)
        cursor.loss_sum.add_(loss, alpha=b)
        if classification:
            cursor.correct.add_((out.argmax(dim=1) == yb).sum())
        cursor.seen += b
        cursor.next_batch = i + 1
        if on_step is not None and on_step():
            return False
    return True


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
