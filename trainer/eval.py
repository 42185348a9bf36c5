"""`python -m trainer.eval ckpt=PATH`: evaluate a saved model on its test split, or on other data.

The checkpoint holds the model weights, the run's resolved config and the preprocessing fitted on
its train split; the data is rebuilt from that config (the same split) and `data.KEY=VALUE`
arguments change it, e.g. another data set or file of the same features.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from trainer.cli import fail, parse_options
from trainer.errors import ConfigError, DataError, UserError

USAGE = ("python -m trainer.eval ckpt=PATH [split=test|val|train|all] [data.KEY=VALUE ...] "
         "[data=FILE] [device=auto|cpu|cuda] [json=PATH]")
SPLITS = ("test", "val", "train", "all")
NEEDED = ("model", "config", "preprocess")


def load(path: str | Path) -> dict[str, Any]:
    """A checkpoint written by `trainer.run`, or a DataError that says what is wrong with the file."""
    from trainer.checkpoint import load_checkpoint

    path = Path(path)
    if path.is_dir():  # a run folder: its best checkpoint, the one its test metrics come from
        found = [f for f in (path / "checkpoints" / n for n in ("best.pt", "last.pt")) if f.is_file()]
        if not found:
            raise DataError(f"ckpt={path} is a folder without checkpoints/best.pt or checkpoints/last.pt; "
                            "pass a run's output folder (e.g. outputs/DATE/TIME) or one of its checkpoint "
                            "files")
        path = found[0]
        print(f"ckpt={path.parent.parent} is a run folder: evaluating {path}")
    if not path.is_file():
        raise DataError(f"checkpoint {path} does not exist; a run writes checkpoints/best.pt and "
                        "checkpoints/last.pt into its output folder, e.g. "
                        "ckpt=outputs/DATE/TIME/checkpoints/best.pt")
    try:
        ckpt = load_checkpoint(path)
    except Exception as exc:  # torch.load raises many kinds for a truncated or foreign file
        raise DataError(f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc}); the file is "
                        "damaged or not a PyTorch file: pass a best.pt or last.pt that a run wrote") from exc
    missing = [k for k in NEEDED if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise DataError(f"{path} is not a trainer checkpoint: it lacks {missing}; pass a "
                        "checkpoints/best.pt or last.pt written by `python -m trainer`")
    return ckpt


def model_dims(state: dict[str, Any]) -> tuple[int, int]:
    """(inputs, outputs) of the MLP whose weights are `state`: its first and last weight matrices."""
    weights = [v for v in state.values() if getattr(v, "ndim", 0) == 2]
    return weights[0].shape[1], weights[-1].shape[0]


def evaluate_checkpoint(ckpt: dict[str, Any], split: str = "test", data_overrides: list[str] | None = None,
                        device: str = "auto") -> dict[str, Any]:
    """Metrics of the checkpoint's model on a split of its data (rebuilt with the saved preprocessing)."""
    import torch

    from trainer.build import build_data
    from trainer.data import prepare_data
    from trainer.data.targets import original_units
    from trainer.device import resolve_device
    from trainer.ensemble import build_predictor
    from trainer.loop import evaluate

    if split not in SPLITS:
        raise ConfigError(f"split={split!r} is not allowed; choose one of {list(SPLITS)}")
    cfg = with_targets(OmegaConf.create(ckpt["config"]))
    if data_overrides:
        try:
            cfg.data = OmegaConf.merge(cfg.data, OmegaConf.from_dotlist(data_overrides).data)
        except Exception as exc:
            raise ConfigError(f"cannot apply {data_overrides} to the checkpoint's data config "
                              f"({exc}); write them as data.KEY=VALUE") from exc
    dev = resolve_device(device)
    # A checkpoint from before targets were standardized has no "target": its targets were raw.
    splits, _ = prepare_data(build_data(cfg.data), prep_state=ckpt["preprocess"],
                             target_state=ckpt.get("target", {"kind": "none"}))
    splits.loss_name, splits.huber_delta = cfg.get("loss", "auto"), float(cfg.get("huber_delta", 1.0))
    if split == "all":
        x = torch.cat([splits.x_train, splits.x_val, splits.x_test])
        y = torch.cat([splits.y_train, splits.y_val, splits.y_test])
    else:
        x, y = getattr(splits, f"x_{split}"), getattr(splits, f"y_{split}")
    in_dim, out_dim = model_dims(ckpt["model"])
    if (splits.in_dim, splits.out_dim) != (in_dim, out_dim):
        raise DataError(f"the data has {splits.in_dim} features and {splits.out_dim} outputs (classes) "
                        f"but the checkpoint's model maps {in_dim} to {out_dim}; evaluate it on data like "
                        "the data it was trained on")
    # an ensemble's checkpoint holds all its members and their alphas: it is evaluated as one model
    model = build_predictor(cfg, splits.in_dim, splits.out_dim, splits.task == "classification")
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise DataError(f"the checkpoint's weights do not fit the model its config describes ({exc})"
                        ) from exc
    model.to(dev)
    metrics = original_units(evaluate(model, splits.loss, x.to(dev), y.to(dev),
                                      classification=splits.task == "classification"), splits.loss_factor)
    return {**{f"{split}/{k}": v for k, v in metrics.items()}, "samples": len(x), "split": split,
            "epoch": (ckpt.get("fit") or {}).get("epoch", ckpt.get("epoch")), "data": cfg.data.name}


def with_targets(cfg: DictConfig) -> DictConfig:
    """A checkpoint's config with the `_target_`s of its data and model nodes; those written before
    the nodes named them (trainer 0.1 before its schema) get the ones their names mean."""
    from trainer.data.sets import SCHEMAS

    if "_target_" not in cfg.data:
        if cfg.data.get("name") not in SCHEMAS:
            raise ConfigError(f"the checkpoint's data set {cfg.data.get('name')!r} is not one this version "
                              f"knows ({sorted(SCHEMAS)}); evaluate it with the version that trained it")
        cfg.data._target_ = f"{SCHEMAS[cfg.data.name].__module__}.{SCHEMAS[cfg.data.name].__name__}"
    if "_target_" not in cfg.model:
        cfg.model._target_ = "models.MLP"
    return cfg


def check_file_source(name: str, data: str) -> None:
    """`data=FILE` sets `data.path`: only a data set read from a file has one."""
    import dataclasses

    from trainer.data.sets import SCHEMAS

    if name in SCHEMAS and "path" not in {f.name for f in dataclasses.fields(SCHEMAS[name])}:
        raise ConfigError(f"data={data} gives a file, but the checkpoint's data set {name!r} is not read "
                          "from a file (it has no data.path); evaluate a model trained on a file data set, "
                          "or leave data= out to use the checkpoint's own data")


def main(argv: list[str] | None = None) -> None:
    from trainer.checkpoint import write_json

    args = sys.argv[1:] if argv is None else argv
    try:
        data_overrides = [a for a in args if a.startswith("data.")]
        opts = parse_options([a for a in args if not a.startswith("data.")],
                             {"ckpt": None, "split": "", "data": "", "device": "auto", "json": ""}, USAGE)
        if opts["data"]:  # a data file: the checkpoint's data set given another path, all of it by default
            data_overrides.append(f"data.path={opts['data']}")
        split = opts["split"] or ("all" if opts["data"] else "test")
        ckpt = load(opts["ckpt"])
        if opts["data"]:
            check_file_source(ckpt["config"]["data"]["name"], opts["data"])
        metrics = evaluate_checkpoint(ckpt, split, data_overrides, opts["device"])
    except UserError as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        fail(str(exc))
    shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k.startswith(f"{split}/"))
    print(f"{opts['ckpt']} (epoch {metrics['epoch']}) on {metrics['data']} {split} "
          f"({metrics['samples']:,} samples): {shown}")
    if opts["json"]:
        write_json({**metrics, "checkpoint": str(opts["ckpt"])}, opts["json"])
        print(f"wrote {opts['json']}")


if __name__ == "__main__":
    main()
