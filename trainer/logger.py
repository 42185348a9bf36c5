"""TensorBoard logging with TensorBoard's own summary writer: scalars and the HParams dashboard."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary

HParamValue = int | float | str | bool


class RunLogger:
    """Writes one run's event files into `log_dir` (the run's own directory)."""

    def __init__(self, log_dir: str | Path, purge_step: int | None = None) -> None:
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def text(self, tag: str, text: str, step: int) -> None:
        self.writer.add_text(tag, text, step)

    def hparams(self, hparams: Mapping[str, HParamValue], metric_tags: list[str]) -> None:
        """Declare the run's hyperparameters, and the scalar tags the HParams dashboard shows.

        Written into this run's own directory (unlike `SummaryWriter.add_hparams`, which makes a
        sub-run), so the dashboard lists one row per run and reads the metrics from its scalars.
        """
        metric_dict = dict.fromkeys(metric_tags, 0.0)
        for summary in hparams_summary(dict(hparams), metric_dict):
            self.writer.file_writer.add_summary(summary)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def flatten_hparams(tree: Mapping[str, Any], prefix: str = "") -> dict[str, HParamValue]:
    """Nested config -> flat `{"model.width": 128, ...}` of values the HParams plugin accepts."""
    flat: dict[str, HParamValue] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_hparams(value, prefix=f"{name}."))
        elif isinstance(value, bool | int | float | str):
            flat[name] = value
        else:  # lists, None
            flat[name] = str(value)
    return flat
