"""The curves training writes: the tags only training knows, and the logger it writes them to (a
Protocol: trainer.logs.writer.RunLogger, TensorBoard's, is the one a run passes in)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

# Tags. TensorBoard lists a run's groups (the part before the first `/`) in sorted order and opens
# the first ones; `~` sorts after every letter, so the epoch curves (train/, val/, val_raw/) come
# first and these after them. Every epoch curve is logged against the epoch; the learning rate,
# which changes within an epoch, against the optimizer update count, in a group of its own that
# says so.
LR_TAG = "~per_update/lr"
SPEED_TAG = "~speed/samples_per_s"  # training samples per second, per epoch


class CurveLogger(Protocol):
    """Writes a run's curves: scalars by tag at a step (an epoch, or an update for LR_TAG)."""

    def scalars(self, values: Mapping[str, float], step: int) -> None: ...

    def histogram(self, tag: str, values: Any, step: int) -> None: ...
