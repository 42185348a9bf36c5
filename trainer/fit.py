"""The epoch loop: train, validate, keep the best, checkpoint, log; stop cleanly when asked."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from trainer.accel import Step
from trainer.averaging import WeightAverage
from trainer.data import Splits
from trainer.data.targets import original_units
from trainer.distributed import all_mean
from trainer.logger import RunLogger
from trainer.loop import EpochCursor, evaluate, loss_function, num_batches, train_epoch
from trainer.regularization import Penalty
from trainer.schedules import Schedule
from trainer.stopping import EarlyStopping, improved, mode_for

log = logging.getLogger(__name__)

@dataclass
class FitState:
    """Where training stands: enough to report, pick the best model and resume."""

    epoch: int = 0  # completed epochs
    step: int = 0  # optimizer updates
    best_value: float = float("nan")
    best_epoch: int = 0
    best_metrics: dict[str, float] = field(default_factory=dict)
    best_weights: dict[str, torch.Tensor] | None = None
    last_metrics: dict[str, float] = field(default_factory=dict)
    cursor: EpochCursor | None = None  # the epoch in progress, when stopped mid-epoch
    status: str = "running"
    reason: str = ""  # why it stopped, for the user
    stopped_by: str = "epochs"  # what ended a completed fit: epochs | early_stopping | max_steps
    initial_loss: float | None = None  # the untrained model's validation loss: divergence's yardstick

    def state_dict(self) -> dict[str, Any]:
        """Everything but the best weights (checkpointed on their own, in best.pt)."""
        state = {k: v for k, v in vars(self).items() if k not in ("best_weights", "cursor")}
        state["cursor"] = self.cursor.state_dict() if self.cursor is not None else None
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], device: torch.device) -> FitState:
        cursor = state.get("cursor")
        fields = {k: v for k, v in state.items() if k != "cursor"}
        return cls(**fields, cursor=EpochCursor.from_state_dict(cursor, device) if cursor else None)


def validation_metrics(model: nn.Module, averaging: WeightAverage | None, splits: Splits) -> dict[str, float]:
    """`val/*` of the evaluated weights (the average once it has started) and, when averaging,
    `val_raw/*` of the trained ones."""
    loss_fn, classification = loss_function(splits.task), splits.task == "classification"
    kw = {"classification": classification, "transform": splits.transform}
    raw = evaluate(model, loss_fn, splits.x_val, splits.y_val, **kw)
    if averaging is None:
        return {f"val/{k}": v for k, v in raw.items()}
    avg = raw
    if averaging.count:
        averaging.update_bn(splits.x_train, splits.transform)  # BatchNorm statistics of the average
        avg = evaluate(averaging.module, loss_fn, splits.x_val, splits.y_val, **kw)
    return {**{f"val/{k}": v for k, v in avg.items()}, **{f"val_raw/{k}": v for k, v in raw.items()}}


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: Schedule,
    splits: Splits,
    *,
    epochs: int,
    batch_size: int,
    drop_last: bool,
    monitor: str,
    generator: torch.Generator,
    logger: RunLogger,
    log_every_n_steps: int,
    nan_check_every_n_steps: int,
    progress: bool,
    save: Callable[[FitState], None],
    state: FitState | None = None,
    stop_requested: Callable[[], bool] = lambda: False,
    max_steps: int | None = None,
    averaging: WeightAverage | None = None,
    stopping: EarlyStopping | None = None,
    step: Step | None = None,
    shard: tuple[int, int] = (0, 1),
    divergence_factor: float | None = None,
    prune: Callable[[int, float], str] | None = None,
    penalty: Penalty | None = None,
    layer_stats: Callable[[int], None] | None = None,
) -> FitState:
    """Train up to `epochs` (and `max_steps` updates) from `state` (None: a fresh start),
    validating each epoch.

    `save(state)` runs after every epoch and when a stop is requested mid-epoch. The returned
    state's `status` says how it ended: completed, interrupted (stop_requested) or diverged.
    `stopping` may end training early; with `averaging`, the averaged weights are the ones
    validated and kept as best. `step` and `shard` go to `train_epoch` (precision, CUDA graphs,
    DDP); inputs pass through `splits.transform` per batch (compact inputs). An epoch whose training
    loss rose above `divergence_factor` times the untrained model's validation loss ends the fit as
    diverged (a loss that explodes without ever becoming infinite). `prune(epoch, value)` gets
    `monitor` after each epoch (an Optuna search job); a reason returned stops the fit as pruned.
    `penalty()` (regularization) is logged as `train/penalty` at the end of each epoch;
    `layer_stats(epoch)` logs the gradient diagnostics after each epoch.
    """
    classification = splits.task == "classification"
    loss_fn = loss_function(splits.task)
    mode = mode_for(monitor)
    state = state if state is not None else FitState()
    if state.status == "completed" and state.stopped_by == "early_stopping":
        return state  # a finished run's checkpoint: early stopping already ended it
    state.status, state.stopped_by, state.reason = "running", "epochs", ""
    if state.initial_loss is None and divergence_factor is not None:
        # in the units of the epochs' losses (regression: the targets' own)
        state.initial_loss = original_units(validation_metrics(model, None, splits),
                                            splits.loss_factor)["val/loss"]
    per_epoch = num_batches(len(splits.x_train), batch_size, drop_last)
    bar = tqdm(total=per_epoch, leave=False, disable=None if progress else True, unit="step")
    # (step, lr) pairs, written once per epoch: a TensorBoard write per log step wakes the writer
    # thread each time, which at batch size 1 costs more than the step. A tensor lr is copied on the
    # device (no host sync) and read at the end of the epoch.
    lrs: list[tuple[int, float | torch.Tensor]] = []

    def on_step() -> bool:  # every update: keep it cheap (at batch size 1 it costs per sample)
        state.step += 1
        schedule.after_update()
        if averaging is not None:
            averaging.update(model, epoch)  # `epoch`: the loop's current one
        if state.step % log_every_n_steps == 0:
            lr = optimizer.param_groups[0]["lr"]
            lrs.append((state.step, lr.clone() if isinstance(lr, torch.Tensor) else lr))
            bar.update(log_every_n_steps)
        # One host sync every nan_check_every_n_steps: a NaN step leaves the running sum NaN.
        if state.step % nan_check_every_n_steps == 0 and not torch.isfinite(state.cursor.loss_sum):
            state.status, state.reason = "diverged", f"the training loss is not finite at step {state.step}"
        elif stop_requested():
            state.status, state.reason = "interrupted", f"stopped at step {state.step}"
        return state.status != "running"

    def write_lrs() -> None:
        for at, lr in lrs:
            logger.scalars({"lr": float(lr)}, at)
        lrs.clear()

    for epoch in range(state.epoch + 1, epochs + 1):
        if max_steps is not None and state.step >= max_steps and state.cursor is None:
            state.stopped_by = "max_steps"  # a resumed run that max_steps had already ended
            break
        if state.cursor is None:
            state.cursor = EpochCursor.start(len(splits.x_train), splits.x_train.device, generator)
        bar.reset(total=per_epoch)
        bar.update(state.cursor.next_batch)
        bar.set_description(f"epoch {epoch}/{epochs}")
        t0, seen0 = time.perf_counter(), state.cursor.seen
        if not train_epoch(model, optimizer, loss_fn, splits.x_train, splits.y_train, batch_size,
                           state.cursor, drop_last=drop_last, classification=classification,
                           on_step=on_step, step=step, transform=splits.transform, shard=shard,
                           max_updates=None if max_steps is None else max_steps - state.step):
            break
        write_lrs()
        bar.update(bar.total - bar.n)  # on_step moves the bar only every log_every_n_steps
        stats = all_mean(state.cursor.stats(classification), state.cursor.seen)
        # Losses in the targets' original units (regression targets are trained standardized).
        train = original_units({f"train/{k}": v.item() for k, v in stats.items()}, splits.loss_factor)
        train.update(penalty_metrics(penalty))
        seconds = time.perf_counter() - t0
        val = original_units(validation_metrics(model, averaging, splits), splits.loss_factor)
        state.reason = diverged(train["train/loss"], val["val/loss"], state, divergence_factor, epoch)
        if state.reason:
            state.status = "diverged"
            break
        metrics = {**train, **val, "lr": float(optimizer.param_groups[0]["lr"]),
                   "throughput/samples_per_s": shard[1] * (state.cursor.seen - seen0) / seconds}
        schedule.after_epoch(epoch, metrics.get("val_raw/loss", metrics["val/loss"]))
        logger.scalars({k: v for k, v in metrics.items() if k != "lr"}, epoch)  # lr: per step
        if layer_stats is not None:
            layer_stats(epoch)
        state.epoch, state.last_metrics, state.cursor = epoch, metrics, None
        if improved(metrics[monitor], state.best_value, mode):
            state.best_value, state.best_epoch, state.best_metrics = metrics[monitor], epoch, val
            evaluated = averaging.module if averaging is not None and averaging.count else model
            state.best_weights = {k: v.detach().clone() for k, v in evaluated.state_dict().items()}
        log.info("epoch %d/%d  %s", epoch, epochs, "  ".join(
            f"{k} {v:.4g}" for k, v in metrics.items() if k != "throughput/samples_per_s")
            + f"  {metrics['throughput/samples_per_s']:,.0f} samples/s")
        pruned = prune(epoch, metrics[monitor]) if prune is not None else ""  # every epoch, the last too
        if stopping is not None and stopping.update(metrics[monitor]):
            state.stopped_by = "early_stopping"
        elif max_steps is not None and state.step >= max_steps:
            state.stopped_by = "max_steps"
        if state.stopped_by != "epochs" or epoch == epochs:
            state.status = "completed"  # recorded in the last checkpoint: the run is finished
        save(state)
        if state.status == "completed":
            if state.stopped_by != "epochs":
                log.info("stopping after epoch %d: %s", epoch, state.stopped_by.replace("_", " "))
            break
        if pruned:
            state.status, state.reason = "pruned", pruned
            break
        if stop_requested():  # a signal during validation or checkpointing
            state.status, state.reason = "interrupted", f"stopped after epoch {epoch}"
            break
    write_lrs()  # those of an epoch that stopped early
    bar.close()
    if state.status == "interrupted" and state.cursor is not None:
        save(state)  # mid-epoch: the cursor records where to go on
    elif state.status == "running":
        state.status = "completed"
    return state


def penalty_metrics(penalty: Penalty | None) -> dict[str, float]:
    """`train/penalty`: the regularization penalty of the weights as they are (an epoch's end)."""
    if penalty is None:
        return {}
    with torch.no_grad():
        return {"train/penalty": penalty().item()}


def diverged(train_loss: float, val_loss: float, state: FitState, factor: float | None, epoch: int) -> str:
    """Why the epoch's losses mean the fit diverged, or "" when they do not."""
    if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
        return f"the loss is not finite in epoch {epoch}"
    initial = state.initial_loss
    if factor is None or not initial or not math.isfinite(initial):
        return ""
    before = state.last_metrics.get("train/loss", initial)
    if train_loss > factor * initial and train_loss > before:
        return (f"the training loss {train_loss:.3g} in epoch {epoch} is over divergence_factor={factor:g} "
                f"times the untrained model's {initial:.3g}, and rising")
    return ""
