"""`python -m trainer.eval ckpt=PATH`: evaluate a saved model on its test split, or on other data.

The checkpoint holds the model weights, the run's resolved config and the preprocessing fitted on
its train split; the data is rebuilt from that config (the same split) and `data.KEY=VALUE`
arguments change it, e.g. another data set or file of the same features.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from trainer.runtime.cli import parse_options, user_errors
from trainer.runtime.errors import ConfigError, DataError

USAGE = ("python -m trainer.eval ckpt=PATH [split=test|val|train|all] [data.KEY=VALUE ...] "
         "[data=FILE] [device=auto|cpu|cuda] [json=PATH] [predictions=FILE.csv]")
SPLITS = ("test", "val", "train", "all")
NEEDED = ("model", "config", "preprocess")


def load(path: str | Path) -> dict[str, Any]:
    """A checkpoint written by `trainer.run`, or a DataError that says what is wrong with the file."""
    from trainer.storage.checkpoint import load_checkpoint

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


def rebuild(ckpt: dict[str, Any], data_overrides: list[str] | None = None,
            device: str = "auto") -> tuple[Any, Any, DictConfig]:
    """(model, splits, config) of a checkpoint: its weights in the model its config describes, on
    `device`, and its data rebuilt (the same split) with the saved preprocessing."""
    from trainer.config.build import build_data
    from trainer.data import prepare_data

    cfg = with_targets(OmegaConf.create(ckpt["config"]))
    if data_overrides:
        try:
            cfg.data = OmegaConf.merge(cfg.data, OmegaConf.from_dotlist(data_overrides).data)
        except Exception as exc:
            raise ConfigError(f"cannot apply {data_overrides} to the checkpoint's data config "
                              f"({exc}); write them as data.KEY=VALUE") from exc
    # A checkpoint from before targets were standardized has no "target": its targets were raw.
    splits, _ = prepare_data(build_data(cfg.data), prep_state=ckpt["preprocess"],
                             target_state=ckpt.get("target", {"kind": "none"}))
    in_dim, out_dim = model_dims(ckpt["model"])
    if (splits.in_dim, splits.out_dim) != (in_dim, out_dim):
        raise DataError(f"the data has {splits.in_dim} features and {splits.out_dim} outputs (classes) "
                        f"but the checkpoint's model maps {in_dim} to {out_dim}; evaluate it on data like "
                        "the data it was trained on")
    return load_model(ckpt, cfg, splits.task == "classification", device), splits, cfg


def load_model(ckpt: dict[str, Any], cfg: DictConfig, classification: bool, device: str = "auto") -> Any:
    """The checkpoint's model with its weights, on `device`, in eval mode."""
    from trainer.ensemble.model import build_predictor
    from trainer.runtime.device import resolve_device

    in_dim, out_dim = model_dims(ckpt["model"])
    # an ensemble's checkpoint holds all its members and their alphas: it is evaluated as one model
    model = build_predictor(cfg.model, cfg.get("ensemble"), in_dim, out_dim, classification)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise DataError(f"the checkpoint's weights do not fit the model its config describes ({exc})"
                        ) from exc
    return model.to(resolve_device(device)).eval()


def split_names(split: str) -> tuple[str, ...]:
    if split not in SPLITS:
        raise ConfigError(f"split={split!r} is not allowed; choose one of {list(SPLITS)}")
    return ("train", "val", "test") if split == "all" else (split,)


def evaluate_checkpoint(ckpt: dict[str, Any], split: str = "test", data_overrides: list[str] | None = None,
                        device: str = "auto") -> dict[str, Any]:
    """Metrics of the checkpoint's model on a split of its data (rebuilt with the saved preprocessing)."""
    split_names(split)
    return checkpoint_metrics(ckpt, *rebuild(ckpt, data_overrides, device), split)


def checkpoint_metrics(ckpt: dict[str, Any], model: Any, splits: Any, cfg: DictConfig,
                       split: str) -> dict[str, Any]:
    """evaluate_checkpoint's metrics, of a model and data already rebuilt."""
    import torch

    from trainer.data.targets import original_units
    from trainer.training.loop import evaluate

    names = split_names(split)
    dev = next(model.parameters()).device
    x = torch.cat([getattr(splits, f"x_{n}") for n in names]).to(dev)
    y = torch.cat([getattr(splits, f"y_{n}") for n in names]).to(dev)
    loss = checkpoint_loss(cfg, splits)
    raw = evaluate(model, loss, x, y, classification=splits.task == "classification")
    metrics = original_units(raw, loss.factor)
    return {**{f"{split}/{k}": v for k, v in metrics.items()}, "samples": len(x), "split": split,
            "epoch": (ckpt.get("fit") or {}).get("epoch", ckpt.get("epoch")), "data": cfg.data.name}


def checkpoint_loss(cfg: DictConfig, splits: Any) -> Any:
    """The loss a checkpoint's run trained with (one from before `loss` existed: the task's default)."""
    from trainer.config.build import build_loss

    return build_loss(cfg.get("loss", "auto"), cfg.get("huber_delta", 1.0), splits)


def prediction_table(model: Any, splits: Any, split: str,
                     loss: Any = None) -> tuple[list[str], list[list[Any]]]:
    """(header, rows) of the model's predictions on a split (or all three), one row per sample:
    where the sample came from (`split`, `part` and `row` of the data set: trainer.data.split's
    `Splits.rows`), its target and prediction in the data's own units, and for a classifier
    trained with cross-entropy or NLL (`loss`; None: the task's default) the class probabilities
    (softmax of the outputs; for mse on one-hot codes, the raw outputs)."""
    import torch

    from trainer.training.loop import EVAL_BATCH
    from trainer.training.losses import SOFTMAX_LOSSES, Loss

    classification = splits.task == "classification"
    softmax = (loss or Loss("auto", splits.task)).kind in SOFTMAX_LOSSES
    dev = next(model.parameters()).device
    header, rows = ["split", "part", "row"], []
    for name in split_names(split):
        x, y = getattr(splits, f"x_{name}"), getattr(splits, f"y_{name}")
        with torch.no_grad():
            out = torch.cat([model(x[i:i + EVAL_BATCH].to(dev)).float().cpu()
                             for i in range(0, len(x), EVAL_BATCH)])
        part, ids = splits.rows.get(name, ("data", range(len(x))))
        if classification:
            scores = out.softmax(dim=1) if softmax else out
            body = torch.cat([y.cpu().view(-1, 1).float(), out.argmax(dim=1).view(-1, 1).float(), scores], 1)
        else:  # standardized targets and outputs, back in the data's units
            target, pred = splits.target.inverse(y.cpu()), splits.target.inverse(out)
            body = torch.cat([target.view(len(x), -1), pred.view(len(x), -1)], 1)
        for i, values in zip(ids, body.tolist(), strict=True):
            rows.append([name, part, int(i), *values])
    width = out.shape[1]
    if classification:
        kind = "prob" if softmax else "output"
        header += ["target", "prediction", *(f"{kind}_{k}" for k in range(width))]
        rows = [[*r[:3], int(r[3]), int(r[4]), *r[5:]] for r in rows]
    elif width == 1:
        header += ["target", "prediction"]
    else:
        header += [*(f"target_{k}" for k in range(width)), *(f"prediction_{k}" for k in range(width))]
    return header, rows


def write_predictions(path: str | Path, header: list[str], rows: list[list[Any]]) -> None:
    """The table as CSV, written atomically (a partial file never stands under the name)."""
    import csv
    import io

    from trainer.runtime.files import atomic_write

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([[f"{v:.6g}" if isinstance(v, float) else v for v in r] for r in rows])
    atomic_write(Path(path), lambda f: f.write(text.getvalue().encode()))


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
    from trainer.runtime.files import write_json

    args = sys.argv[1:] if argv is None else argv
    with user_errors():
        data_overrides = [a for a in args if a.startswith("data.")]
        opts = parse_options([a for a in args if not a.startswith("data.")],
                             {"ckpt": None, "split": "", "data": "", "device": "auto", "json": "",
                              "predictions": ""}, USAGE)
        if opts["data"]:  # a data file: the checkpoint's data set given another path, all of it by default
            data_overrides.append(f"data.path={opts['data']}")
        split = opts["split"] or ("all" if opts["data"] else "test")
        ckpt = load(opts["ckpt"])
        if opts["data"]:
            check_file_source(ckpt["config"]["data"]["name"], opts["data"])
        split_names(split)
        model, splits, cfg = rebuild(ckpt, data_overrides, opts["device"])
        metrics = checkpoint_metrics(ckpt, model, splits, cfg, split)
        if opts["predictions"]:
            table = prediction_table(model, splits, split, checkpoint_loss(cfg, splits))
            write_predictions(opts["predictions"], *table)
    shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k.startswith(f"{split}/"))
    print(f"{opts['ckpt']} (epoch {metrics['epoch']}) on {metrics['data']} {split} "
          f"({metrics['samples']:,} samples): {shown}")
    if opts["json"]:
        write_json({**metrics, "checkpoint": str(opts["ckpt"])}, opts["json"])
        print(f"wrote {opts['json']}")
    if opts["predictions"]:
        print(f"wrote {opts['predictions']}: a row per sample of {split} (split, part, row, target, "
              "prediction, and a classifier's class probabilities)")


if __name__ == "__main__":
    main()
