"""`run(cfg)`: the one place that reads the whole config and turns it into objects."""

from __future__ import annotations

import logging
import random
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import trainer
from models import MLP, count_parameters, resolve_widths
from trainer.checkpoint import save_checkpoint, write_json
from trainer.config import validate
from trainer.data import Splits, fit_preprocessor, load_source, make_splits
from trainer.device import resolve_device
from trainer.fit import FitState, fit
from trainer.logger import RunLogger, flatten_hparams
from trainer.loop import evaluate, loss_function

log = logging.getLogger(__name__)

SPLIT_KEYS = ("name", "val_fraction", "test_fraction", "split_seed", "preprocess")
SCHEDULER_KEYS = ("interval",)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def prepare_data(data: DictConfig) -> tuple[Splits, Any]:
    """Load, split, and preprocess with statistics of the train split only."""
    options = {k: v for k, v in OmegaConf.to_container(data, resolve=True).items()
               if k not in SPLIT_KEYS}
    source = load_source(data.name, **options)
    splits = make_splits(source, data.val_fraction, data.test_fraction, data.split_seed)
    prep = fit_preprocessor(data.preprocess, splits.x_train)
    splits.x_train, splits.x_val, splits.x_test = (
        prep(splits.x_train), prep(splits.x_val), prep(splits.x_test))
    return splits, prep


def build_scheduler(sched: DictConfig, optimizer: torch.optim.Optimizer) -> Any | None:
    """The configured `torch.optim.lr_scheduler` object, or None for a constant rate."""
    if "_target_" not in sched:
        return None
    kwargs = {k: v for k, v in sched.items() if k not in SCHEDULER_KEYS}
    return instantiate(OmegaConf.create(kwargs))(optimizer)


def git_commit() -> str:
    """The source checkout's commit, or 'unknown' (installed package, no git)."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5, cwd=Path(__file__).parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def hydra_output_dir() -> Path:
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path.cwd()


def run(cfg: DictConfig, out_dir: str | Path | None = None) -> dict[str, Any]:
    """Train and test one configuration; write logs, checkpoints and metrics.json into `out_dir`."""
    validate(cfg)
    out = Path(out_dir) if out_dir is not None else hydra_output_dir()
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)

    splits, prep = prepare_data(cfg.data)
    batch_size = len(splits.x_train) if cfg.batch_size == "full" else int(cfg.batch_size)
    splits = splits.to(device)
    m = cfg.model
    model = MLP(splits.in_dim, splits.out_dim, resolve_widths(m.depth, m.width), activation=m.activation,
                init=m.init, init_std=m.init_std, bias_init=m.bias_init, dropout=m.dropout).to(device)
    optimizer = instantiate(cfg.optimizer)(model.parameters())
    scheduler = build_scheduler(cfg.scheduler, optimizer)
    generator = torch.Generator(device=device).manual_seed(int(cfg.seed))

    resolved = OmegaConf.to_container(cfg, resolve=True)
    meta = {"version": trainer.__version__, "git_commit": git_commit(), "device": str(device)}
    logger = RunLogger(out)
    metric_tags = ["best/val_loss", "test/loss"] + (
        ["best/val_acc", "test/acc"] if splits.task == "classification" else [])
    logger.hparams(flatten_hparams(resolved), metric_tags)
    log.info("data %s %s; model %s %s, %d parameters; on %s", cfg.data.name, splits.sizes(),
             "-".join(map(str, [splits.in_dim, *resolve_widths(m.depth, m.width), splits.out_dim])),
             m.activation, count_parameters(model), device)

    def checkpoint(state: FitState, name: str = "last.pt") -> dict[str, Any]:
        ckpt = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "epoch": state.epoch, "step": state.step, "best_value": state.best_value,
                "best_epoch": state.best_epoch, "config": resolved, "preprocess": prep.state_dict(),
                "rng": {"torch": torch.get_rng_state(), "generator": generator.get_state()},
                "meta": meta}
        save_checkpoint(ckpt, out / "checkpoints" / name)
        if state.best_epoch == state.epoch:
            save_checkpoint({**ckpt, "model": state.best_weights}, out / "checkpoints" / "best.pt")
        return ckpt

    state = fit(model, optimizer, scheduler, cfg.scheduler.interval, splits, epochs=cfg.epochs,
                batch_size=batch_size, drop_last=cfg.drop_last, monitor=cfg.monitor,
                generator=generator, logger=logger, log_every_n_steps=cfg.log_every_n_steps,
                progress=cfg.progress, save=checkpoint)

    if cfg.test_on == "best" and state.best_weights is not None:
        model.load_state_dict(state.best_weights)
    classification = splits.task == "classification"
    test = evaluate(model, loss_function(splits.task), splits.x_test, splits.y_test,
                    classification=classification)
    final = {f"best/{k.replace('/', '_')}": v for k, v in state.best_metrics.items()}
    final.update({f"test/{k}": v for k, v in test.items()})
    logger.scalars(final, state.epoch)
    logger.close()

    metrics: dict[str, Any] = {
        **state.best_metrics,
        **{f"test/{k}": v for k, v in test.items()},
        "train/loss": state.last_metrics.get("train/loss"),
        "monitor": cfg.monitor,
        "best_epoch": state.best_epoch,
        "epochs": state.epoch,
        "steps": state.step,
        "params": count_parameters(model),
        "status": "completed",
        "wall_time_s": round(time.time() - started, 3),
        "seed": int(cfg.seed),
        **meta,
    }
    if classification:
        metrics["train/acc"] = state.last_metrics.get("train/acc")
    write_json(metrics, out / "metrics.json")
    return metrics
