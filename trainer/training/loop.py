"""The training and evaluation loops: tensors on the device, index batches, no host sync per step."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from trainer.runtime.device import EVAL_BATCH
from trainer.training.accel import Step, TrainStep


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
    step: Step | None = None,
    shard: tuple[int, int] = (0, 1),
    max_updates: int | None = None,
) -> bool:
    """Train on (x, y) in the cursor's index batches from where it stands; True when the epoch ends.

    `step(xb, yb) -> (loss, outputs)` trains on one batch (default: the plain fp32 step);
    `shard=(rank, world)` trains on this rank's share of every global batch (DDP).
    `on_step` runs after each optimizer update (per-step schedulers, logging, progress); when it
    returns True the epoch stops after that update and the cursor keeps its place. With
    `max_updates` the epoch ends (True) after that many updates.
    """
    model.train()
    step = step or TrainStep(model, optimizer, loss_fn, x.device)
    perm = cursor.perm[: num_batches(len(x), batch_size, drop_last) * batch_size]
    batches = shard_batches(perm.split(batch_size), *shard)
    end = len(batches) if max_updates is None else min(len(batches), cursor.next_batch + max_updates)
    # Each batch's predicted classes go into its slice of one buffer, counted against the targets
    # when this call ends: one op per step, not four (which cost ~10% of a step at batch size 1),
    # and no tensor of a step kept alive beyond it (a kept output or target, a few bytes of C heap
    # between the backward pass's large buffers, made glibc give those back and fault them in again
    # every few steps: a third slower at batch size 1).
    preds = shard_batches(torch.empty_like(perm).split(batch_size), *shard) if classification else ()
    first, stopped = cursor.next_batch, False
    for i in range(first, end):
        idx = batches[i]
        n = idx.shape[0]  # (len() of a tensor is a Python-level call: per step at batch size 1)
        # row gathers: about 1.5x faster than x[idx] on the CPU
        loss, out = step(x.index_select(0, idx), y.index_select(0, idx))
        cursor.loss_sum.add_(loss, alpha=n)
        if classification:
            torch.argmax(out, dim=1, out=preds[i])
        cursor.seen += n
        cursor.next_batch = i + 1
        if on_step is not None and on_step():
            stopped = True
            break
    if classification and cursor.next_batch > first:
        done = slice(first, cursor.next_batch)
        targets = y.index_select(0, torch.cat(batches[done]))
        cursor.correct += (torch.cat(preds[done]) == targets).sum()
    return not stopped


def shard_batches(batches: Sequence[torch.Tensor], rank: int, world: int) -> Sequence[torch.Tensor]:
    """This rank's share of each global index batch: the rank-th of `world` equal parts.

    Equal parts make DDP's average of the ranks' gradients the gradient of the global batch's mean
    loss; so an epoch's last partial batch loses its remainder (at most world - 1 samples).
    """
    if world == 1:
        return batches
    return [b[: len(b) - len(b) % world].view(world, -1)[rank] for b in batches if len(b) >= world]


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    classification: bool = True,
    batch_size: int = EVAL_BATCH,
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
