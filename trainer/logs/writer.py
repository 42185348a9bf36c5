"""TensorBoard logging with TensorBoard's own summary writer: scalars and the HParams dashboard."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary

from trainer.config.flat import HParamValue

OLD_LR_TAG = "lr"  # the learning rate's tag in runs written before it moved under ~per_update/


class RunLogger:
    """Writes one run's event files into `log_dir` (the run's own directory)."""

    def __init__(self, log_dir: str | Path) -> None:
        # A queue that holds an epoch's learning rates (1,000 points at 10,000 batch-1 steps): with
        # torch's default of 10, each add_scalar past the tenth waits for the writer thread, about
        # 39 ms per 1,000 points against 25 with this queue, flushes included. flush() still drains
        # it (before every checkpoint), so what is on disk is the same.
        self.writer = SummaryWriter(log_dir=str(log_dir), max_queue=4096)

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def histogram(self, tag: str, values: Any, step: int) -> None:
        self.writer.add_histogram(tag, values.detach().float().cpu(), step)

    def text(self, tag: str, text: str, step: int) -> None:
        self.writer.add_text(tag, text, step)

    def hparams(self, hparams: Mapping[str, HParamValue]) -> None:
        """Declare the run's hyperparameters for the HParams dashboard (its session start info).

        Only the run's own values: TensorBoard takes the first experiment summary it finds as the
        whole experiment, so a sweep writes one for all its jobs (trainer.logs.dashboard), and a lone run
        lets TensorBoard compute it from the runs. Written into this run's own directory (unlike
        `SummaryWriter.add_hparams`, which makes a sub-run), so the dashboard lists one row per run.
        """
        _experiment, session_start, _session_end = hparams_summary(dict(hparams), {})
        self.writer.file_writer.add_summary(session_start)

    def describe(self, config_yaml: str, command: str, layer_stats: bool = False) -> None:
        """The chart layout of the Custom Scalars tab (the per-layer charts only when the run logs
        them), and the config and command in the Text tab."""
        from trainer.logs.dashboard import LAYER_LAYOUT, LAYOUT

        extra = LAYER_LAYOUT if layer_stats else {}
        layout = {name: {**charts, **extra} for name, charts in LAYOUT.items()}
        self.writer.add_custom_scalars(layout)
        self.writer.add_text("config", config_yaml, 0)
        self.writer.add_text("command", command, 0)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class NullLogger:
    """Writes nothing: the logger of DDP ranks other than 0, which share rank 0's directory."""

    def __getattr__(self, name: str) -> Any:
        if callable(getattr(RunLogger, name, None)):
            return lambda *args, **kwargs: None
        raise AttributeError(name)
