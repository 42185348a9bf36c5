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

from trainer.data import Splits
from trainer.data.targets import original_units
from trainer.runtime.device import num_threads
from trainer.runtime.distributed import all_mean
from trainer.training.accel import Step
from trainer.training.averaging import WeightAverage
from trainer.training.curves import LR_TAG, SPEED_TAG, CurveLogger
from trainer.training.loop import EpochCursor, evaluate, num_batches, train_epoch
from trainer.training.regularization import Penalty
from trainer.training.schedules import Schedule
from trainer.training.stopping import EarlyStopping, improved, mode_for

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
    status: str = "running"  # running | completed | interrupted | diverged | pruned
    reason: str = ""  # why it stopped, for the user
    stopped_by: str = "epochs"  # what ended a completed fit: epochs | early_stopping | max_steps
    initial_loss: float | None = None  # the untrained model's validation loss: divergence's yardstick
    first_train_loss: float | None = None  # the first epoch's training loss: did training go backwards?

    def end_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        """A validated epoch is done: it becomes the last one."""
        self.epoch, self.last_metrics, self.cursor = epoch, metrics, None
        if self.first_train_loss is None:
            self.first_train_loss = metrics.get("train/loss")

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


@dataclass
class Training:
    """What trains: the model and the objects that update it, as run() built them."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    step: Step  # one update on one batch (trainer.training.accel.make_step)
    generator: torch.Generator  # the batch order
    averaging: WeightAverage | None = None
    stopping: EarlyStopping | None = None
    penalty: Penalty | None = None  # regularization, added in `step`; logged as train/penalty
    # Trains and validates one epoch in place of `_train_and_validate` (an ensemble's stacked
    # members: trainer.ensemble.fit), with the same arguments and result.
    epoch: Callable[..., dict[str, float] | None] | None = None

    def stateful(self) -> dict[str, Any]:
        """The objects a checkpoint saves and restores, by checkpoint key (None: not configured)."""
        return {"model": self.model, "optimizer": self.optimizer, "scheduler": self.schedule,
                "averaging": self.averaging, "early_stopping": self.stopping}


@dataclass(frozen=True)
class FitOptions:
    """How long to train, in which batches, what picks the best epoch, and what is logged."""

    epochs: int
    batch_size: int
    monitor: str  # val/loss or val/acc: picks the best epoch, feeds early stopping and pruning
    drop_last: bool = False
    max_steps: int | None = None  # stop after this many updates, also mid-epoch
    # diverged: an epoch's training loss above this many times the untrained model's, and rising
    divergence_factor: float | None = None
    log_every_n_steps: int = 10
    nan_check_every_n_steps: int = 50
    progress: bool = False
    shard: tuple[int, int] = (0, 1)  # (rank, world): this rank's share of every batch (DDP)
    eval_threads: int | None = None  # validation's CPU threads where not the step's (device.eval_threads)


@dataclass
class FitHooks:
    """What fit() calls out to: logs, checkpoints, a stop request, a search's pruner."""

    logger: CurveLogger
    save: Callable[[FitState], None] = lambda state: None  # after every epoch and on a stop
    stop_requested: Callable[[], bool] = lambda: False
    prune: Callable[[int, float], str] | None = None  # (epoch, monitor) -> why to stop, or ""
    layer_stats: Callable[[int], None] | None = None  # (epoch) -> logs the gradient diagnostics


def validation_metrics(model: nn.Module, averaging: WeightAverage | None, splits: Splits) -> dict[str, float]:
    """`val/*` of the evaluated weights (the average once it has started) and, when averaging,
    `val_raw/*` of the trained ones."""
    loss_fn, classification = splits.loss, splits.task == "classification"
    raw = evaluate(model, loss_fn, splits.x_val, splits.y_val, classification=classification)
    if averaging is None:
        return {f"val/{k}": v for k, v in raw.items()}
    avg = raw
    if averaging.count:
        averaging.update_bn(splits.x_train)  # BatchNorm statistics of the averaged weights
        avg = evaluate(averaging.module, loss_fn, splits.x_val, splits.y_val, classification=classification)
    return {**{f"val/{k}": v for k, v in avg.items()}, **{f"val_raw/{k}": v for k, v in raw.items()}}


class _StepHook:
    """Runs after every update (at batch size 1 it costs per sample: keep it cheap): the schedule,
    the weight average, the learning rate kept for the log, the progress bar, the NaN and stop checks."""

    def __init__(self, training: Training, state: FitState, options: FitOptions, hooks: FitHooks,
                 bar: tqdm) -> None:
        self.training, self.state, self.options, self.hooks, self.bar = training, state, options, hooks, bar
        self.epoch = 0  # the epoch in progress
        # Per-update work only for the features that ask for it.
        self.schedule_update = training.schedule.after_update if training.schedule.per_update else None
        # (step, lr) pairs, written once per epoch: a TensorBoard write per log step wakes the writer
        # thread each time, which at batch size 1 costs more than the step. A tensor lr is copied on
        # the device (no host sync) and read at the end of the epoch.
        self.lrs: list[tuple[int, float | torch.Tensor]] = []

    def __call__(self) -> bool:
        state, options, t = self.state, self.options, self.training
        state.step += 1
        if self.schedule_update is not None:
            self.schedule_update()
        if t.averaging is not None:
            t.averaging.update(t.model, self.epoch)
        if state.step % options.log_every_n_steps == 0:
            lr = t.optimizer.param_groups[0]["lr"]
            self.lrs.append((state.step, lr.clone() if isinstance(lr, torch.Tensor) else lr))
            self.bar.update(options.log_every_n_steps)
        # One host sync every nan_check_every_n_steps: a NaN step leaves the running sum NaN.
        if state.step % options.nan_check_every_n_steps == 0 and not torch.isfinite(state.cursor.loss_sum):
            state.status, state.reason = "diverged", f"the training loss is not finite at step {state.step}"
        elif self.hooks.stop_requested():
            state.status, state.reason = "interrupted", f"stopped at step {state.step}"
        return state.status != "running"

    def write_lrs(self) -> None:
        for at, lr in self.lrs:
            self.hooks.logger.scalars({LR_TAG: float(lr)}, at)
        self.lrs.clear()


def fit(training: Training, splits: Splits, options: FitOptions, hooks: FitHooks,
        state: FitState | None = None) -> FitState:
    """Train up to `options.epochs` (and `max_steps` updates) from `state` (None: a fresh start),
    validating each epoch.

    `hooks.save(state)` runs after every epoch and when a stop is requested mid-epoch. The returned
    state's `status` says how it ended: completed, interrupted (a stop request), diverged or pruned.
    Early stopping may end training early; with averaging, the averaged weights are the ones
    validated and kept as best.
    """
    state = state if state is not None else FitState()
    if state.status == "completed" and state.stopped_by == "early_stopping":
        return state  # a finished run's checkpoint: early stopping already ended it
    state.status, state.stopped_by, state.reason = "running", "epochs", ""
    if state.initial_loss is None and options.divergence_factor is not None:
        # in the units of the epochs' losses (regression: the targets' own)
        with num_threads(options.eval_threads):
            untrained = validation_metrics(training.model, None, splits)
        state.initial_loss = original_units(untrained, splits.loss_factor)["val/loss"]
    per_epoch = num_batches(len(splits.x_train), options.batch_size, options.drop_last)
    bar = tqdm(total=per_epoch, leave=False, disable=None if options.progress else True, unit="step")
    on_step = _StepHook(training, state, options, hooks, bar)
    for epoch in range(state.epoch + 1, options.epochs + 1):
        if options.max_steps is not None and state.step >= options.max_steps and state.cursor is None:
            state.stopped_by = "max_steps"  # a resumed run that max_steps had already ended
            break
        on_step.epoch = epoch
        metrics = (training.epoch or _train_and_validate)(training, splits, options, state, on_step, epoch)
        on_step.write_lrs()
        if metrics is None or state.status != "running":
            break
        _record_epoch(training, options, hooks, state, metrics, epoch)
        if state.status != "running":
            break
    on_step.write_lrs()  # those of an epoch that stopped early
    bar.close()
    if state.status == "interrupted" and state.cursor is not None:
        hooks.save(state)  # mid-epoch: the cursor records where to go on
    elif state.status == "running":
        state.status = "completed"
    return state


def _train_and_validate(training: Training, splits: Splits, options: FitOptions, state: FitState,
                        on_step: _StepHook, epoch: int) -> dict[str, float] | None:
    """One epoch's training from where the cursor stands, then its metrics; None when the epoch
    stopped before its end (a stop request or a NaN), or the fit diverged."""
    if state.cursor is None:
        state.cursor = EpochCursor.start(len(splits.x_train), splits.x_train.device, training.generator)
    bar = on_step.bar
    bar.reset(total=num_batches(len(splits.x_train), options.batch_size, options.drop_last))
    bar.update(state.cursor.next_batch)
    bar.set_description(f"epoch {epoch}/{options.epochs}")
    t0, seen0 = time.perf_counter(), state.cursor.seen
    classification = splits.task == "classification"
    max_updates = None if options.max_steps is None else options.max_steps - state.step
    if not train_epoch(training.model, training.optimizer, splits.loss, splits.x_train,
                       splits.y_train, options.batch_size, state.cursor, drop_last=options.drop_last,
                       classification=classification, on_step=on_step, step=training.step,
                       shard=options.shard, max_updates=max_updates):
        return None
    bar.update(bar.total - bar.n)  # on_step moves the bar only every log_every_n_steps
    stats = all_mean(state.cursor.stats(classification), state.cursor.seen)
    # Losses in the targets' original units (regression targets are trained standardized).
    train = original_units({f"train/{k}": v.item() for k, v in stats.items()}, splits.loss_factor)
    train.update(penalty_metrics(training.penalty))
    seconds = time.perf_counter() - t0
    with num_threads(options.eval_threads):
        val = validation_metrics(training.model, training.averaging, splits)
    val = original_units(val, splits.loss_factor)
    state.reason = diverged(train["train/loss"], val["val/loss"], state, options.divergence_factor, epoch)
    if state.reason:
        state.status = "diverged"
        return None
    samples = options.shard[1] * (state.cursor.seen - seen0)
    return {**train, **val, "lr": float(training.optimizer.param_groups[0]["lr"]),
            SPEED_TAG: samples / seconds}


def _record_epoch(training: Training, options: FitOptions, hooks: FitHooks, state: FitState,
                  metrics: dict[str, float], epoch: int) -> None:
    """After a validated epoch: the schedule, the log, the best weights, the checkpoint, and whether
    the fit ends here (state.status no longer running)."""
    training.schedule.after_epoch(epoch, metrics.get("val_raw/loss", metrics["val/loss"]))
    hooks.logger.scalars({k: v for k, v in metrics.items() if k != "lr"}, epoch)  # lr: per step
    if hooks.layer_stats is not None:
        hooks.layer_stats(epoch)
    state.end_epoch(epoch, metrics)
    value = metrics[options.monitor]
    keep_if_best(state, metrics, options.monitor, training.model, training.averaging)
    log.info("%s", epoch_line(epoch, options.epochs, metrics))
    pruned = hooks.prune(epoch, value) if hooks.prune is not None else ""  # every epoch, the last too
    if training.stopping is not None and training.stopping.update(value):
        state.stopped_by = "early_stopping"
    elif options.max_steps is not None and state.step >= options.max_steps:
        state.stopped_by = "max_steps"
    if state.stopped_by != "epochs" or epoch == options.epochs:
        state.status = "completed"  # recorded in the last checkpoint: the run is finished
    hooks.save(state)
    if state.status == "completed":
        if state.stopped_by != "epochs":
            log.info("stopping after epoch %d: %s", epoch, state.stopped_by.replace("_", " "))
    elif pruned:
        state.status, state.reason = "pruned", pruned
    elif hooks.stop_requested():  # a signal during validation or checkpointing
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
