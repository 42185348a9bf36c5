"""What a fit works on: `Training` (the model, what updates it, the loss), `FitState` (where it
stands), `FitOptions` (how it trains) and `FitHooks` (what it calls out to)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from trainer.data import Splits
from trainer.training.accel import Step
from trainer.training.averaging import WeightAverage
from trainer.training.curves import CurveLogger
from trainer.training.loop import EpochCursor, num_batches, train_epoch
from trainer.training.losses import Loss
from trainer.training.regularization import Penalty
from trainer.training.schedules import Schedule
from trainer.training.stopping import EarlyStopping


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
    name: str = ""  # a vectorized group's member: its epoch lines are debug ones (the group sums up)


@dataclass
class FitHooks:
    """What fit() calls out to: logs, checkpoints, a stop request, a search's pruner."""

    logger: CurveLogger
    save: Callable[[FitState], None] = lambda state: None  # after every epoch and on a stop
    stop_requested: Callable[[], bool] = lambda: False
    prune: Callable[[int, float], str] | None = None  # (epoch, monitor) -> why to stop, or ""
    layer_stats: Callable[[int], None] | None = None  # (epoch) -> logs the gradient diagnostics


@dataclass
class Training:
    """What trains: the model, the objects that update it and the loss, as the builders made them.

    Its methods are an epoch's training part, which a subclass may replace (an ensemble's stacked
    members: trainer.ensemble.fit); what ends the epoch is trainer.training.epoch's, for all."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    step: Step | None  # one update on one batch (trainer.training.accel.make_step); None: not by fit()
    generator: torch.Generator  # the batch order
    loss: Loss  # what the steps minimize and the epochs report (trainer.config.build.build_loss)
    averaging: WeightAverage | None = None
    stopping: EarlyStopping | None = None
    penalty: Penalty | None = None  # regularization, added in `step`; logged as train/penalty

    def stateful(self) -> dict[str, Any]:
        """The objects a checkpoint saves and restores, by checkpoint key (None: not configured)."""
        return {"model": self.model, "optimizer": self.optimizer, "scheduler": self.schedule,
                "averaging": self.averaging, "early_stopping": self.stopping}

    def new_cursor(self, splits: Splits) -> EpochCursor:
        """A fresh epoch: its batch order, drawn from `generator`, and zero running sums."""
        return EpochCursor.start(len(splits.x_train), splits.x_train.device, self.generator)

    def epoch_batches(self, splits: Splits, options: FitOptions) -> int:
        """Updates in a whole epoch."""
        return num_batches(len(splits.x_train), options.batch_size, options.drop_last)

    def train_batches(self, splits: Splits, options: FitOptions, cursor: EpochCursor,
                      on_step: Callable[[], bool], epoch: int, max_updates: int | None) -> bool:
        """Train from where `cursor` stands, calling `on_step` after each update (True: stop);
        True when the epoch ended (or `max_updates` did)."""
        return train_epoch(self.model, self.optimizer, self.loss, splits.x_train, splits.y_train,
                           options.batch_size, cursor, drop_last=options.drop_last,
                           classification=splits.task == "classification", on_step=on_step,
                           step=self.step, shard=options.shard, max_updates=max_updates)

    def end_training(self, epoch: int, splits: Splits, logger: CurveLogger) -> None:
        """After an epoch's updates, before its validation (an ensemble's boosting round ends)."""
