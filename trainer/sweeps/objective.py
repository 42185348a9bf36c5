"""What a sweep job hands back to Hydra's sweeper, and the optimization direction of a metric."""

from __future__ import annotations

import math
from typing import Any

from trainer.runtime.errors import ConfigError
from trainer.training.stopping import mode_for


def direction_of(monitor: str) -> str:
    """`${trainer_direction:${monitor}}` in configs/hparams_search/ (the search follows `monitor`):
    `maximize` for accuracies, `minimize` for losses (the rule fit() uses to pick the best epoch)."""
    return "maximize" if mode_for(str(monitor)) == "max" else "minimize"


def worst(monitor: str) -> float:
    """The value of a failed job: worse than any real one, and not NaN, which Optuna cannot store."""
    return -math.inf if direction_of(monitor) == "maximize" else math.inf


def objective(metrics: dict[str, Any], monitor: str) -> float:
    """The run's `monitor` value, or `worst(monitor)` when it diverged to NaN or infinity."""
    value = metrics.get(monitor)
    if value is None or not math.isfinite(float(value)):
        return worst(monitor)
    return float(value)


def check_direction(sweeper_direction: Any, monitor: str) -> None:
    """A sweeper told to minimize an accuracy (or maximize a loss) would search for the worst model."""
    if sweeper_direction is None:
        return
    direction = getattr(sweeper_direction, "name", str(sweeper_direction))
    if direction in ("minimize", "maximize") and direction != direction_of(monitor):
        raise ConfigError(
            f"hydra.sweeper.direction={direction} does not fit monitor={monitor}, which is best when "
            f"it is {'high' if direction_of(monitor) == 'maximize' else 'low'}; set "
            f"hydra.sweeper.direction={direction_of(monitor)} or leave it out (it follows monitor)"
        )
