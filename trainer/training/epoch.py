"""What ends an epoch, the one set of rules for every loop that trains: fit() (a run, and an
ensemble's stacked members through it) and a vectorized group's members (trainer.vectorized).

Per update (`Updates`): the step count, the per-update schedule, the weight average, the learning
rate kept for the log. At an epoch's end: its metrics in the targets' units and the divergence check
(`close_epoch`), then the epoch's schedule step, the log, the best weights, early stopping,
max_steps and the search's pruner (`record_epoch`), the checkpoint, and the status that a pruner or a
stop request leaves once it is written (`after_save`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch
from torch import nn

from trainer.data import Splits
from trainer.data.targets import original_units
from trainer.runtime.device import num_threads
from trainer.training.averaging import WeightAverage
from trainer.training.curves import LR_TAG, SPEED_TAG, CurveLogger
from trainer.training.loop import evaluate
from trainer.training.losses import Loss
from trainer.training.regularization import Penalty
from trainer.training.state import FitHooks, FitOptions, FitState, Training
from trainer.training.stopping import improved, mode_for

log = logging.getLogger(__name__)


class Updates:
    """Runs after every update (at batch size 1 it costs per sample: keep it cheap): the step count,
    the schedule, the weight average, the learning rate kept for the log."""

    def __init__(self, training: Training, state: FitState, log_every: int) -> None:
        self.training, self.state, self.log_every = training, state, log_every
        self.epoch = 0  # the epoch in progress
        # Per-update work only for the features that ask for it.
        self.schedule_update = training.schedule.after_update if training.schedule.per_update else None
        # (step, lr) pairs, written once per epoch: a TensorBoard write per log step wakes the writer
        # thread each time, which at batch size 1 costs more than the step. A tensor lr is copied on
        # the device (no host sync) and read at the end of the epoch.
        self.lrs: list[tuple[int, float | torch.Tensor]] = []

    def count(self) -> bool:
        """One more update; True on a step whose learning rate is logged."""
        state, t = self.state, self.training
        state.step += 1
        if self.schedule_update is not None:
            self.schedule_update()
        if t.averaging is not None:
            t.averaging.update(t.model, self.epoch)
        if state.step % self.log_every:
            return False
        lr = t.optimizer.param_groups[0]["lr"]
        self.lrs.append((state.step, lr.clone() if isinstance(lr, torch.Tensor) else lr))
        return True

    def write_lrs(self, logger: CurveLogger) -> None:
        for at, lr in self.lrs:
            logger.scalars({LR_TAG: float(lr)}, at)
        self.lrs.clear()


def validation_metrics(model: nn.Module, averaging: WeightAverage | None, splits: Splits,
                       loss: Loss) -> dict[str, float]:
    """`val/*` of the evaluated weights (the average once it has started) and, when averaging,
    `val_raw/*` of the trained ones."""
    classification = splits.task == "classification"
    raw = evaluate(model, loss, splits.x_val, splits.y_val, classification=classification)
    if averaging is None:
        return {f"val/{k}": v for k, v in raw.items()}
    avg = raw
    if averaging.count:
        averaging.update_bn(splits.x_train)  # BatchNorm statistics of the averaged weights
        avg = evaluate(averaging.module, loss, splits.x_val, splits.y_val, classification=classification)
    return {**{f"val/{k}": v for k, v in avg.items()}, **{f"val_raw/{k}": v for k, v in raw.items()}}


def initial_loss(training: Training, splits: Splits, options: FitOptions, state: FitState,
                 val: dict[str, float] | None = None) -> None:
    """Divergence's yardstick, once: the untrained model's validation loss, in the units of the
    epochs' losses (regression: the targets' own); `val`: its validation metrics, computed already."""
    if state.initial_loss is not None or options.divergence_factor is None:
        return
    if val is None:
        with num_threads(options.eval_threads):
            val = validation_metrics(training.model, None, splits, training.loss)
    state.initial_loss = original_units(val, training.loss.factor)["val/loss"]


def close_epoch(training: Training, splits: Splits, options: FitOptions, state: FitState, epoch: int,
                stats: dict[str, torch.Tensor], seconds: float, samples: int,
                val: dict[str, float] | None = None) -> dict[str, float] | None:
    """An epoch's metrics: its training means `stats` (device tensors) and its validation (unless
    `val` gives it), in the targets' units, the learning rate and the speed over `seconds` of
    training; None, with the state diverged, when the losses say so."""
    factor = training.loss.factor  # losses on standardized regression targets -> the targets' units
    train = original_units({f"train/{k}": v.item() for k, v in stats.items()}, factor)
    train.update(penalty_metrics(training.penalty))
    if val is None:
        with num_threads(options.eval_threads):
            val = validation_metrics(training.model, training.averaging, splits, training.loss)
    val = original_units(val, factor)
    state.reason = diverged(train["train/loss"], val["val/loss"], state, options.divergence_factor, epoch)
    if state.reason:
        state.status = "diverged"
        return None
    return {**train, **val, "lr": float(training.optimizer.param_groups[0]["lr"]),
            SPEED_TAG: samples / max(seconds, 1e-9)}


def record_epoch(training: Training, options: FitOptions, hooks: FitHooks, state: FitState,
                 metrics: dict[str, float], epoch: int) -> str:
    """After a validated epoch: the schedule, the log, the best weights, and whether the fit ends
    here (completed: state.status no longer running). Returns why the search prunes it ("": it does
    not), which `after_save` applies once the epoch's checkpoint is written."""
    training.schedule.after_epoch(epoch, metrics.get("val_raw/loss", metrics["val/loss"]))
    hooks.logger.scalars({k: v for k, v in metrics.items() if k != "lr"}, epoch)  # lr: per step
    if hooks.layer_stats is not None:
        hooks.layer_stats(epoch)
    state.end_epoch(epoch, metrics)
    value = metrics[options.monitor]
    keep_if_best(state, metrics, options.monitor, training.model, training.averaging)
    if options.name:
        log.debug("%s %s", options.name, epoch_line(epoch, options.epochs, metrics))
    else:
        log.info("%s", epoch_line(epoch, options.epochs, metrics))
    pruned = hooks.prune(epoch, value) if hooks.prune is not None else ""  # every epoch, the last too
    if training.stopping is not None and training.stopping.update(value):
        state.stopped_by = "early_stopping"
    elif options.max_steps is not None and state.step >= options.max_steps:
        state.stopped_by = "max_steps"
    if state.stopped_by != "epochs" or epoch == options.epochs:
        state.status = "completed"  # recorded in the last checkpoint: the run is finished
    return pruned


def after_save(state: FitState, options: FitOptions, pruned: str, stop_requested: Callable[[], bool],
               epoch: int) -> None:
    """Once the epoch's checkpoint is written: a completed fit says why it stopped early; a running
    one is pruned by its search, or interrupted by a signal that came during validation or saving."""
    if state.status == "completed":
        if state.stopped_by != "epochs":
            log.log(logging.DEBUG if options.name else logging.INFO, "%sstopping after epoch %d: %s",
                    f"{options.name}: " if options.name else "", epoch, state.stopped_by.replace("_", " "))
    elif pruned:
        state.status, state.reason = "pruned", pruned
    elif stop_requested():
        state.status, state.reason = "interrupted", f"stopped after epoch {epoch}"


def epoch_line(epoch: int, epochs: int, metrics: dict[str, float]) -> str:
    """The console's line for an epoch (about 100 characters), with fixed decimals
    so that successive lines align: `epoch 3/30  train loss 0.1498 acc 0.9610  val loss ...`."""
    groups: dict[str, list[str]] = {}
    for key, value in metrics.items():
        prefix, _, name = key.rpartition("/")
        if prefix in ("train", "val", "val_raw"):
            groups.setdefault(prefix, []).append(f"{name} {value:.4f}")
    parts = [f"epoch {epoch:>{len(str(epochs))}}/{epochs}"]
    parts += [f"{group} {' '.join(values)}" for group, values in groups.items()]
    if "lr" in metrics:
        parts.append(f"lr {metrics['lr']:.3g}")
    if SPEED_TAG in metrics:
        parts.append(f"{metrics[SPEED_TAG]:,.0f} samples/s")
    return "  ".join(parts)


def keep_if_best(state: FitState, metrics: dict[str, float], monitor: str, model: nn.Module,
                 averaging: WeightAverage | None) -> None:
    """Keep this epoch's evaluated weights as the best when its `monitor` improved. With weight
    averaging the average is the result: the first epoch that has one replaces a best from before
    averaging began (SWA's `start_epoch`), whatever its value, so the weights chosen and tested are
    always averaged ones once averaging has started."""
    averaged = averaging is not None and averaging.count > 0
    first_average = averaged and state.best_epoch < averaging.start_epoch
    if not (first_average or improved(metrics[monitor], state.best_value, mode_for(monitor))):
        return
    evaluated = averaging.module if averaged else model
    state.best_value, state.best_epoch = metrics[monitor], state.epoch
    state.best_metrics = {k: v for k, v in metrics.items() if k.startswith(("val/", "val_raw/"))}
    state.best_weights = {k: v.detach().clone() for k, v in evaluated.state_dict().items()}


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
