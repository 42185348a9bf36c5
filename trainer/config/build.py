"""The one place that turns config nodes into objects, with Hydra's `instantiate`: every node
names its class or function in `_target_` (`_partial_: true` where the object needs what only
the run has: the model's parameters, the optimizer, the model)."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from trainer.data import Splits
from trainer.data.sets import DataSet
from trainer.runtime.errors import ConfigError
from trainer.training import accel
from trainer.training.averaging import WeightAverage
from trainer.training.losses import Loss
from trainer.training.regularization import Penalty, make_penalty
from trainer.training.schedules import Schedule, arm_options


def instantiate_checked(node: DictConfig | dict, group: str, *args: Any, **kwargs: Any) -> Any:
    """`instantiate(node)` (called with `args` when partial), with a bad argument reported as the
    config key it came from."""
    node = OmegaConf.create(node) if isinstance(node, dict) else node
    _momentum_below_one(node, group)
    try:
        built = instantiate(node)
        return built(*args, **kwargs) if node.get("_partial_") else built
    except Exception as exc:  # TypeError: unknown argument; ValueError: a value torch rejects
        cause = exc.__cause__ or exc
        raise ConfigError(f"{group}={node.get('_target_')} cannot be built from the config "
                          f"{dict(OmegaConf.to_container(node))}: {cause}. Fix or remove the "
                          f"{group}.* value it names") from None


def _momentum_below_one(node: DictConfig, group: str) -> None:
    """torch takes any momentum >= 0, but from 1 on the velocity never decays: every step adds the
    whole past, and the run diverges whatever the learning rate (its message would say lower lr)."""
    momentum = node.get("momentum")
    if isinstance(momentum, int | float) and not isinstance(momentum, bool) and momentum >= 1:
        raise ConfigError(f"{group}.momentum={momentum} must be below 1 (e.g. 0.9): with momentum >= 1 "
                          "the velocity never decays and the steps grow without bound, whatever the "
                          "learning rate")


def _numbers_where_numbers(node: DictConfig, group: str) -> None:
    """A word where the target's argument is a number (`optimizer.lr=abc`), named by its key: torch's
    own message would be a comparison of a str with a float."""
    try:
        params = inspect.signature(get_object(node._target_)).parameters
    except Exception:  # an unknown target: instantiate_checked reports it
        return
    for name, value in node.items():
        if not isinstance(value, str) or name.startswith("_") or name not in params:
            continue
        default, annotation = params[name].default, str(params[name].annotation)
        if not (isinstance(default, str) or "str" in annotation or "Literal" in annotation):
            raise ConfigError(f"{group}.{name}={value!r} must be a number")


def build_data(data: DictConfig) -> DataSet:
    """The data set a `configs/data/` node names (trainer.data.sets); `.load()` reads it."""
    return instantiate_checked(data, "data")


def build_model(model: DictConfig, in_dim: int, out_dim: int) -> nn.Module:
    """The network of `configs/model/`, for `in_dim` inputs and `out_dim` outputs."""
    return instantiate(model, in_dim=in_dim, out_dim=out_dim)


def build_optimizer(cfg: DictConfig, params: Any, device: torch.device) -> torch.optim.Optimizer:
    """The configured `torch.optim` optimizer over `params`, with the device's fast options."""
    _numbers_where_numbers(cfg.optimizer, "optimizer")
    fast = accel.optimizer_options(cfg.optimizer._target_, cfg.optimizer, device, cfg.cuda_graphs)
    return instantiate_checked(cfg.optimizer, "optimizer", params, **fast)


def build_loss(loss: str, huber_delta: float, splits: Splits) -> Loss:
    """The run's one loss (`loss`, `huber_delta`): what its steps minimize and its epochs report,
    on the trained targets (regression: standardized by `splits.target`)."""
    scale = splits.target.scale if splits.target is not None else 1.0
    return Loss(loss, splits.task, scale, float(huber_delta))


def build_averaging(avg: DictConfig, model: nn.Module) -> WeightAverage | None:
    """The configured weight average of `model` (configs/averaging/), or None."""
    return instantiate_checked(avg, "averaging", model) if "_target_" in avg else None


def build_schedule(cfg: DictConfig, optimizer: torch.optim.Optimizer, per_epoch: int,
                   averaging: WeightAverage | None) -> Schedule:
    """The scheduler at its interval (`schedule.interval`), the linear warm-up, and SWA's SWALR."""
    interval = cfg.schedule.interval
    scheduler = None
    if "_target_" in cfg.scheduler:
        _numbers_where_numbers(cfg.scheduler, "scheduler")
        per_arm = OmegaConf.to_container(cfg.schedule.per_arm) if cfg.schedule.per_arm else None
        options = {**OmegaConf.to_container(cfg.scheduler),
                   **arm_options(cfg.scheduler._target_, per_arm, "scheduler")}
        if "T_max" in options and options["T_max"] is None:  # cosine over the whole run, in interval units
            updates = cfg.epochs * per_epoch
            options["T_max"] = cfg.epochs if interval == "epoch" else min(updates, cfg.max_steps or updates)
        scheduler = instantiate_checked(options, "scheduler", optimizer)
    swa = averaging.swalr(optimizer) if averaging is not None else None
    return Schedule(optimizer, scheduler, interval, cfg.warmup_steps, cfg.warmup_start_factor,
                    swa=(swa, averaging.start_epoch) if swa is not None else None)


def batch_size_for(batch_size: int | str, n_train: int) -> int:
    """Samples per update: `full` is the whole training split, which no batch may exceed."""
    size = n_train if batch_size == "full" else int(batch_size)
    if size > n_train:
        raise ConfigError(f"batch_size={size} is larger than the training split ({n_train} samples); "
                          f"use at most {n_train} or batch_size=full")
    return size


def check_batch_norm(norm: str, n_train: int, batch_size: int, drop_last: bool, world: int = 1) -> None:
    """BatchNorm in training mode needs 2 samples a batch: refuse a run with a batch of one on a rank
    (batch_size=1, or an epoch's last partial batch of one sample), before any training."""
    if norm != "batch":
        return
    sizes = [batch_size] + ([n_train % batch_size] if n_train % batch_size and not drop_last else [])
    per_rank = [s // world for s in sizes if s >= world]  # as trainer.training.loop.shard_batches splits them
    if min(per_rank, default=2) < 2:
        shared = f", shared by {world} processes," if world > 1 else ""
        raise ConfigError(f"model.norm=batch needs at least 2 samples in every batch, but with "
                          f"batch_size={batch_size} on {n_train} training samples{shared} a batch has "
                          "1 sample; use a larger batch_size, drop_last=true, or model.norm=layer "
                          "(which normalizes each sample on its own)")


def build_penalty(reg: DictConfig, model: nn.Module) -> Penalty | None:
    """The regularization penalty of `model`'s weights (configs/config.yaml `regularization`), or None."""
    return make_penalty(model, l1=reg.l1, l2=reg.l2, biases=reg.biases)


def check_optimization(cfg: DictConfig) -> None:
    """Build the optimizer and the schedule once on a dummy parameter: torch checks their arguments
    before any data is read."""
    dummy = nn.Linear(1, 1)
    optimizer = build_optimizer(cfg, dummy.parameters(), torch.device("cpu"))
    build_schedule(cfg, optimizer, per_epoch=1, averaging=build_averaging(cfg.averaging, dummy))
