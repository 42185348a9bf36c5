"""What TensorBoard shows beyond the curves: the sweep's HParams experiment, chart layout, config text.

Written with TensorBoard's own summary protos (`tensorboard.plugins.hparams.summary`) and writers.
"""

from __future__ import annotations

import copy
import shlex
import struct
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from trainer.runtime.job import JobContext

# Single-point values written at the end of a run. `~` sorts after every letter, so TensorBoard's
# time-series view lists these cards after the curves (`lr`, `train/*`, `val/*`), not above them.
FINAL = "~final/"
FINAL_METRICS = ("best/val_loss", "best/val_acc", "test/loss", "test/acc")
# One chart per question in TensorBoard's Custom Scalars tab (regexes of tags, one line each per run).
LAYOUT = {"trainer": {
    "loss (train and val)": ["Multiline", [r"^train/loss$", r"^val/loss$", r"^val_raw/loss$"]],
    "accuracy (train and val)": ["Multiline", [r"^train/acc$", r"^val/acc$", r"^val_raw/acc$"]],
    "learning rate (per update)": ["Multiline", [r"^~per_update/lr$"]],
}}
# log_layer_stats=true: every layer on one chart, so vanishing gradients show as a fan
LAYER_LAYOUT = {
    "gradient norm per layer": ["Multiline", [r"^grad_norm/"]],
    "activation std per layer": ["Multiline", [r"^activation_std/"]],
}
# Pseudo-runs in a sweep folder, named to say what they hold (the sweep's HParams experiment, the
# report's figures) and to sort after the jobs, whose names start with their number: TensorBoard's
# run list sorts digits before letters (and punctuation such as `~` before digits).
HPARAMS_RUN = "sweep_hparams"
IMAGES_RUN = "sweep_report"
REPORT_IMAGES = "~report/"  # the report's figures: after the curves in the time-series view too


def final_scalars(best: Mapping[str, float], test: Mapping[str, float]) -> dict[str, float]:
    """`{"~final/best/val_loss": ..., "~final/test/acc": ...}` from the best-epoch and test metrics."""
    out = {f"{FINAL}best/{k.replace('/', '_')}": v for k, v in best.items()}
    out.update({f"{FINAL}test/{k}": v for k, v in test.items()})
    return out


def command_line(job: JobContext) -> str:
    """The command that started this run (and, in a sweep, the job's own overrides)."""
    if not job.hydra:
        return f"run(cfg) called from Python: {shlex.join(job.argv)}"
    text = "python -m trainer " + shlex.join(job.argv[1:])
    if job.multirun:
        text += f"\n\njob {job.num} of the sweep: " + shlex.join(job.overrides)
    return text


def config_text(resolved: Mapping[str, Any]) -> str:
    """The resolved config as a YAML block of Markdown (TensorBoard's Text tab renders Markdown).

    The text `OmegaConf.to_yaml` gives, dumped by PyYAML's C dumper from the plain container: 10 times
    faster (a vectorized group writes one per member)."""
    import yaml

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    text = yaml.dump(dict(resolved), Dumper=dumper, default_flow_style=False, allow_unicode=True,
                     sort_keys=False)
    return "```yaml\n" + text + "```"


def _hparam_info(name: str, value: Any, differs: bool) -> Any:
    from tensorboard.plugins.hparams import api_pb2

    kind = (api_pb2.DATA_TYPE_BOOL if isinstance(value, bool) else api_pb2.DATA_TYPE_FLOAT64
            if isinstance(value, int | float) else api_pb2.DATA_TYPE_STRING)
    return api_pb2.HParamInfo(name=name, type=kind, differs=differs)


def hparam_names(keys: list[str], hparams: Mapping[str, Any]) -> list[str]:
    """The HParams columns of swept override keys, in their order: a key's own column, or for a
    data set its `name` key."""
    names: list[str] = []
    for key in keys:
        match = [n for n in (key, f"{key}.name") if n in hparams and n not in names]
        names.extend(match[:1])
    return names


def write_sweep_experiment(sweep_dir: Path, config: DictConfig, swept: list[str]) -> Path:
    """One HParams experiment for the whole sweep, in the sweep folder's run `sweep_hparams`: the swept
    keys' columns in the command line's order, then the final metrics. Keys that hold one value in
    the whole sweep are left out (every job's Text tab has its whole config), so TensorBoard's
    parallel coordinates, which draw the first five columns, draw the swept keys and no empty axis.

    TensorBoard takes the first experiment summary it finds as the whole experiment; the jobs write
    only their own hyperparameters (session start info), so this one is the only one.
    """
    from hydra.core.hydra_config import HydraConfig
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
    from torch.utils.tensorboard.writer import FileWriter

    from trainer.logs.hparams import run_hparams

    task = OmegaConf.masked_copy(config, [k for k in config if k != "hydra"])
    # Hydra sets its config for each job only: an experiment's `${hydra:runtime.choices...}` (its
    # per-arm rates) resolves here to the primary config's choice. On a copy (set_config makes the
    # hydra node read-only, and the sweeper still writes it), and only while resolving.
    hydra_config = HydraConfig.instance()
    before = hydra_config.cfg
    hydra_config.set_config(copy.deepcopy(config))
    try:
        hparams = run_hparams(OmegaConf.to_container(task, resolve=True, throw_on_missing=False))
    finally:
        hydra_config.cfg = before
    infos = [_hparam_info(name, hparams[name], True) for name in hparam_names(swept, hparams)]
    metrics = [api_pb2.MetricInfo(name=api_pb2.MetricName(tag=FINAL + m), display_name=m)
               for m in FINAL_METRICS]
    run_dir = sweep_dir / HPARAMS_RUN
    run_dir.mkdir(parents=True, exist_ok=True)
    # a relaunched sweep: one experiment only (also none left at the top, where it was once written)
    for old in [*sweep_dir.glob("events.out.tfevents.*"), *run_dir.glob("events.out.tfevents.*")]:
        old.unlink()
    writer = FileWriter(str(run_dir))
    experiment = plugin_data_pb2.HParamsPluginData(
        experiment=api_pb2.Experiment(hparam_infos=infos, metric_infos=metrics,
                                      time_created_secs=time.time()))
    summary_metadata = metadata.create_summary_metadata(experiment)
    writer.add_summary(Summary(value=[Summary.Value(tag=metadata.EXPERIMENT_TAG, metadata=summary_metadata)]))
    writer.close()
    return run_dir


def add_images(sweep_dir: Path, pngs: Mapping[str, Path]) -> Path:
    """The report's PNG files as images of the run `images` in the sweep folder (replacing older)."""
    from tensorboard.compat.proto.summary_pb2 import Summary
    from torch.utils.tensorboard.writer import FileWriter

    run_dir = sweep_dir / IMAGES_RUN
    run_dir.mkdir(parents=True, exist_ok=True)
    for old in run_dir.glob("events.out.tfevents.*"):
        old.unlink()
    writer = FileWriter(str(run_dir))
    for tag, path in pngs.items():
        png = path.read_bytes()
        width, height = struct.unpack(">II", png[16:24])  # the PNG header's IHDR chunk
        image = Summary.Image(height=height, width=width, colorspace=4, encoded_image_string=png)
        writer.add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), 0, time.time())
    writer.close()
    return run_dir
