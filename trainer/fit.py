"""The epoch loop: train, validate, keep the best, checkpoint, log."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from trainer.data import Splits
from trainer.logger import RunLogger
from trainer.loop import evaluate, loss_function, num_batches, train_epoch

log = logging.getLogger(__name__)


@dataclass
class FitState:
    """Where training stands: enough to report, pick the best model and resume."""

    epoch: int = 0
    step: int = 0
    best_value: float = float("nan")
    best_epoch: int = 0
    best_metrics: dict[str, float] = field(default_factory=dict)
    best_weights: dict[str, torch.Tensor] | None = None
    last_metrics: dict[str, float] = field(default_factory=dict)


def improved(value: float, best: float, mode: str) -> bool:
    """Whether `value` beats `best` (NaN: nothing yet) for mode `min` or `max`."""
    if best != best:
        return True
    return value < best if mode == "min" else value > best


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any | None,
    scheduler_interval: str,
    splits: Splits,
    *,
    epochs: int,
    batch_size: int,
    drop_last: bool,
    monitor: str,
    generator: torch.Generator,
    logger: RunLogger,
    log_every_n_steps: int,
    progress: bool,
    save: Callable[[FitState], None],
) -> FitState:
    """Train for `epochs`, validating each epoch; `save(state)` runs after every epoch."""
    classification = splits.task == "classification"
    loss_fn = loss_function(splits.task)
    mode = "max" if monitor.endswith("acc") else "min"
    state = FitState()
    per_epoch = num_batches(len(splits.x_train), batch_size, drop_last)

    bar = tqdm(total=per_epoch, leave=False, disable=None if progress else True, unit="step")

    def on_step() -> None:
        state.step += 1
        if scheduler is not None and scheduler_interval == "step":
            scheduler.step()
        if state.step % log_every_n_steps == 0:
            logger.scalars({"lr": optimizer.param_groups[0]["lr"]}, state.step)
        bar.update()

    for epoch in range(1, epochs + 1):
        bar.reset(total=per_epoch)
        bar.set_description(f"epoch {epoch}/{epochs}")
        t0 = time.perf_counter()
        stats = train_epoch(model, optimizer, loss_fn, splits.x_train, splits.y_train, batch_size,
                            drop_last=drop_last, generator=generator,
                            classification=classification, on_step=on_step)
        train = {f"train/{k}": v.item() for k, v in stats.items() if k != "samples"}
        seconds = time.perf_counter() - t0
        val = evaluate(model, loss_fn, splits.x_val, splits.y_val, classification=classification)
        val = {f"val/{k}": v for k, v in val.items()}
        metrics = {**train, **val, "lr": optimizer.param_groups[0]["lr"],
                   "throughput/samples_per_s": int(stats["samples"]) / seconds}
        if scheduler is not None and scheduler_interval == "epoch":
            scheduler.step()
        logger.scalars({k: v for k, v in metrics.items() if k != "lr"}, epoch)  # lr: per step
        state.epoch, state.last_metrics = epoch, metrics
        if improved(metrics[monitor], state.best_value, mode):
            state.best_value, state.best_epoch, state.best_metrics = metrics[monitor], epoch, val
            state.best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        log.info("epoch %d/%d  %s", epoch, epochs, "  ".join(
            f"{k} {v:.4g}" for k, v in metrics.items() if k != "throughput/samples_per_s")
            + f"  {metrics['throughput/samples_per_s']:,.0f} samples/s")
        save(state)
    bar.close()
    return state
