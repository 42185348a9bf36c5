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
    # In the order they were written: TensorBoard reads a folder's files by name, and two files made
    # in the same second (a run and its resume, in a test) are named in the order of their pids.
    return {tag: sorted(acc.Scalars(tag), key=lambda e: e.wall_time) for tag in acc.Tags()["scalars"]}


def read_scalars(run_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series of a run directory as `{tag: [(step, value), ...]}`."""
    return {tag: [(e.step, e.value) for e in events] for tag, events in scalar_events(run_dir).items()}


def read_histograms(run_dir: str | Path) -> dict[str, list[tuple[int, Any]]]:
    """Every histogram series of a run directory as `{tag: [(step, HistogramValue), ...]}`
    (`.num`, `.sum`, `.min`, `.max`, `.bucket_limit`, `.bucket`)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"histograms": 0})
    acc.Reload()
    tags = acc.Tags()["histograms"]
    return {tag: [(e.step, e.histogram_value) for e in acc.Histograms(tag)] for tag in tags}


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



def elapsed_seconds(run_dir: str | Path, tag: str) -> dict[int, float]:
    """Seconds from the run's start to each event of `tag`, by step (epoch), from the events' wall
    times; the run starts at its event file's first event (the logger opens after the data is read).

    A run stopped and resumed writes one event file per process: each file's time counts from its
    own first event and adds to the previous file's last `tag` event, so the pause is left out.
    """
    files = []
    for path in Path(run_dir).glob("events.out.tfevents.*"):
        acc = _accumulator(path)
        try:
            files.append((acc.FirstEventTimestamp(), acc))
        except ValueError:  # an empty file: its process was killed as it opened it
            continue
    out: dict[int, float] = {}
    offset = 0.0
    for start, acc in sorted(files, key=lambda sa: sa[0]):
        events = acc.Scalars(tag) if tag in acc.Tags()["scalars"] else []
        for event in events:
            out[event.step] = offset + event.wall_time - start
        if events:
            offset += events[-1].wall_time - start
    return out

# Logged against the optimizer update; every other scalar against the epoch.
STEP_AXIS = ("~per_update/lr", "lr")  # trainer.logs.writer.LR_TAG, and its name in older runs
# Written once when a run ends (or stops); a resumed run writes its own. (`best/` and `test/`: the
# final values' tags before they moved under trainer.logs.dashboard.FINAL.)
FINAL = ("status/text_summary", "~final/", "best/", "test/")


def _after(event: Any, epoch: int, step: int) -> bool:
    """Whether `event` was logged after a checkpoint at (epoch, step), on its tag's own axis."""
    if not event.HasField("summary") or not event.summary.value:
        return False
    tag = event.summary.value[0].tag
    if tag.startswith(FINAL):
        return True
    return event.step > (step if tag in STEP_AXIS else epoch)


def remove_events(run_dir: str | Path) -> int:
    """Remove a run folder's event files (a run killed before its first checkpoint, started afresh
    in its folder, logs every epoch again); return the count."""
    files = list(Path(run_dir).glob("events.out.tfevents.*"))
    for path in files:
        path.unlink()
    return len(files)


def truncate_events(run_dir: str | Path, epoch: int, step: int) -> int:
    """Drop what a stopped run logged after its checkpoint at (epoch, step); return the count.

    A resumed run logs those epochs and updates again. TensorBoard's own purge (`purge_step`)
    compares one step number across all tags, but epoch curves and the per-update `lr` count
    different things, so the event files are rewritten instead (atomically, file by file).
    """
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto import event_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter

    from trainer.runtime.files import atomic_write

    dropped = 0
    for path in sorted(Path(run_dir).glob("events.out.tfevents.*")):
        records = list(RawEventFileLoader(str(path)).Load())
        keep = [r for r in records if not _after(event_pb2.Event.FromString(r), epoch, step)]
        if len(keep) < len(records):
            dropped += len(records) - len(keep)

            def write(f: Any, keep: list[bytes] = keep) -> None:
                writer = RecordWriter(f)
                for record in keep:
                    writer.write(record)

            atomic_write(path, write)
    return dropped
