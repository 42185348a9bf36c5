"""When to stop: early stopping on a validation metric with patience, as a small pure helper."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


def mode_for(monitor: str) -> str:
    """`max` for an accuracy, `min` for a loss."""
    return "max" if monitor.endswith("acc") else "min"


def resolve_monitor(monitor: str, task: str) -> str:
    """`monitor: auto` is the notes' rule: the best validation accuracy for classification, the
    lowest validation loss for regression; any other value is kept."""
    if monitor != "auto":
        return monitor
    return "val/acc" if task == "classification" else "val/loss"


def improved(value: float, best: float, mode: str, min_delta: float = 0.0) -> bool:
    """Whether `value` beats `best` (NaN: nothing yet) by more than `min_delta`, for mode min or max."""
    if best != best:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


@dataclass
class EarlyStopping:
    """Stop once `patience` epochs in a row fail to improve the best value by more than `min_delta`.

    `patience=None` never stops. Feed it one value per epoch with `update`.
    """

    patience: int | None = None
    min_delta: float = 0.0
    mode: str = "min"
    best: float = float("nan")
    best_epoch: int = 0
    bad_epochs: int = 0
    epoch: int = 0

    def update(self, value: float) -> bool:
        """Record the next epoch's value; True when training should stop after this epoch."""
        self.epoch += 1
        if improved(value, self.best, self.mode, self.min_delta):
            self.best, self.best_epoch, self.bad_epochs = value, self.epoch, 0
        else:
            self.bad_epochs += 1
        return self.patience is not None and self.bad_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)
