"""Read a run's TensorBoard event files back with TensorBoard's own reader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

HParamValue = int | float | str | bool


def _accumulator(run_dir: str | Path) -> Any:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def scalar_events(run_dir: str | Path) -> dict[str, list[Any]]:
    """Every scalar series of a run directory: `{tag: [ScalarEvent(wall_time, step, value), ...]}`."""
    acc = _accumulator(run_dir)
    return {tag: list(acc.Scalars(tag)) for tag in acc.Tags()["scalars"]}


def read_scalars(run_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series of a run directory as `{tag: [(step, value), ...]}`."""
    return {tag: [(e.step, e.value) for e in events] for tag, events in scalar_events(run_dir).items()}


def read_hparams(run_dir: str | Path) -> dict[str, HParamValue]:
    """The hyperparameters a run declared for the HParams dashboard (its session start info)."""
    from tensorboard.plugins.hparams import metadata

    acc = _accumulator(run_dir)
    content = acc.PluginTagToContent(metadata.PLUGIN_NAME).get(metadata.SESSION_START_INFO_TAG)
    if content is None:
        return {}
    info = metadata.parse_session_start_info_plugin_data(content)
    out: dict[str, HParamValue] = {}
    for name, value in info.hparams.items():
        kind = value.WhichOneof("kind")
        out[name] = getattr(value, kind) if kind else ""
    return out


def declared_metrics(run_dir: str | Path) -> list[str]:
    """The metric tags of the HParams experiment in a folder (a sweep's), the dashboard's columns."""
    from tensorboard.plugins.hparams import metadata

    acc = _accumulator(run_dir)
    content = acc.PluginTagToContent(metadata.PLUGIN_NAME).get(metadata.EXPERIMENT_TAG)
    if content is None:
        return []
    return [m.name.tag for m in metadata.parse_experiment_plugin_data(content).metric_infos]
