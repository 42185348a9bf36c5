"""TensorBoard logging with TensorBoard's own summary writer: scalars and the HParams dashboard."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary

HParamValue = int | float | str | bool
SKIPPED = ("_partial_", "progress")  # not hyperparameters
NOT_HPARAMS = ("experiment", "hparams_search", "hydra")  # groups that only override other keys


class RunLogger:
    """Writes one run's event files into `log_dir` (the run's own directory)."""

    def __init__(self, log_dir: str | Path) -> None:
        self.writer = SummaryWriter(log_dir=str(log_dir))

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
        whole experiment, so a sweep writes one for all its jobs (trainer.dashboard), and a lone run
        lets TensorBoard compute it from the runs. Written into this run's own directory (unlike
        `SummaryWriter.add_hparams`, which makes a sub-run), so the dashboard lists one row per run.
        """
        _experiment, session_start, _session_end = hparams_summary(dict(hparams), {})
        self.writer.file_writer.add_summary(session_start)

    def describe(self, config_yaml: str, command: str) -> None:
        """The chart layout of the Custom Scalars tab, and the config and command in the Text tab."""
        from trainer.dashboard import LAYOUT

        self.writer.add_custom_scalars(LAYOUT)
        self.writer.add_text("config", config_yaml, 0)
        self.writer.add_text("command", command, 0)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def flatten_hparams(tree: Mapping[str, Any], prefix: str = "") -> dict[str, HParamValue]:
    """Nested config -> flat `{"model.width": 128, ...}` of values the HParams plugin accepts.

    A group's `_target_` becomes the group's own key (`optimizer: "Adam"`); `_partial_` is dropped.
    """
    flat: dict[str, HParamValue] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if key == "_target_" and prefix:
            flat[prefix[:-1]] = str(value).rsplit(".", 1)[-1]
        elif key in SKIPPED:
            continue
        elif isinstance(value, Mapping):
            flat.update(flatten_hparams(value, prefix=f"{name}."))
        elif isinstance(value, bool | int | float | str):
            flat[name] = value
        else:  # lists, None
            flat[name] = "" if value is None else str(value)
    return flat


def _neutral(sample: Any) -> HParamValue:
    """The value a job writes for a key that its own config lacks, of the same type as `sample`."""
    if isinstance(sample, bool):
        return False
    if isinstance(sample, int | float):
        return float("nan")
    return ""


@functools.cache
def known_hparams(config_root: str) -> dict[str, HParamValue]:
    """Every key any option of a config group can set, with a neutral value of its type."""
    known: dict[str, HParamValue] = {}
    for group in sorted(p for p in Path(config_root).iterdir() if p.is_dir()):
        for path in sorted(group.glob("*.yaml")):
            if group.name in NOT_HPARAMS or "@package _global_" in path.read_text():
                continue
            tree = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
            tree = {k: v for k, v in (tree or {}).items() if k != "defaults"}
            for key, value in flatten_hparams(tree, prefix=f"{group.name}.").items():
                # the group's own key names its `_target_`; an option without one is e.g. scheduler=none
                known.setdefault(key, "none" if key == group.name else _neutral(value))
    return known


def run_hparams(resolved: Mapping[str, Any], config_root: str) -> dict[str, HParamValue]:
    """A job's hyperparameters with the same keys in every job of a sweep.

    Its own flattened config, plus every key that any option of its config groups (optimizer,
    scheduler, data, model, ...) can set, with a neutral value where the job's choice lacks it:
    so sgd and adam jobs both have `optimizer.momentum` and `optimizer.betas` columns.
    """
    flat = flatten_hparams(resolved)
    for key, neutral in known_hparams(config_root).items():
        flat.setdefault(key, neutral)
    return dict(sorted(flat.items()))


class NullLogger:
    """Writes nothing: the logger of DDP ranks other than 0, which share rank 0's directory."""

    def __getattr__(self, name: str) -> Any:
        if callable(getattr(RunLogger, name, None)):
            return lambda *args, **kwargs: None
        raise AttributeError(name)
