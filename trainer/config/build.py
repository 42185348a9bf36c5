"""The one place that turns config nodes into objects, with Hydra's `instantiate`: every node
names its class or function in `_target_` (`_partial_: true` where the object needs what only
the run has: the model's parameters, the optimizer, the model)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from trainer.config.arguments import arm_options, momentum_below_one, refusal
from trainer.data import Splits
from trainer.data.sets import DataSet
from trainer.runtime.errors import ConfigError
from trainer.training import accel
from trainer.training.averaging import WeightAverage
from trainer.training.losses import Loss
from trainer.training.regularization import Penalty, make_penalty
from trainer.training.schedules import Schedule

log = logging.getLogger(__name__)


def instantiate_checked(node: DictConfig | dict, group: str, *args: Any, **kwargs: Any) -> Any:
    """`instantiate(node)` (called with `args` when partial), with a bad argument reported as the
    config key it came from."""
    node = OmegaConf.create(node) if isinstance(node, dict) else node
    momentum_below_one(node, group)
    try:
        built = instantiate(node)
        return built(*args, **kwargs) if node.get("_partial_") else built
    except Exception as exc:  # TypeError: unknown argument; ValueError: a value torch rejects
        cause = exc.__cause__ or exc
        raise refusal(group, node.get("_target_"), OmegaConf.to_container(node), cause) from None


def build_data(data: DictConfig) -> DataSet:
    """The data set a `configs/data/` node names (trainer.data.sets); `.load()` reads it."""
    return instantiate_checked(data, "data")


def build_model(model: DictConfig, in_dim: int, out_dim: int) -> nn.Module:
    """The network of `configs/model/`, for `in_dim` inputs and `out_dim` outputs."""
    return instantiate(model, in_dim=in_dim, out_dim=out_dim)


def build_optimizer(optimizer: DictConfig, params: Any, device: torch.device,
                    cuda_graphs: bool = False) -> torch.optim.Optimizer:
    """The `torch.optim` optimizer of `configs/optimizer/` over `params`, with the device's fast options."""
    fast = accel.optimizer_options(optimizer._target_, optimizer, device, cuda_graphs)
    return instantiate_checked(optimizer, "optimizer", params, **fast)


def build_loss(loss: str, huber_delta: float, splits: Splits) -> Loss:
    """The run's one loss (`loss`, `huber_delta`): what its steps minimize and its epochs report,
    on the trained targets (regression: standardized by `splits.target`)."""
    scale = splits.target.scale if splits.target is not None else 1.0
    return Loss(loss, splits.task, scale, float(huber_delta))


def build_averaging(avg: DictConfig, model: nn.Module) -> WeightAverage | None:
    """The configured weight average of `model` (configs/averaging/), or None."""
    return instantiate_checked(avg, "averaging", model) if "_target_" in avg else None


@dataclass(frozen=True)
class RunLength:
    """What a schedule needs to know of the run: its epochs, its updates per epoch, `max_steps`,
    and the linear warm-up (`warmup_steps`, `warmup_start_factor`)."""

    epochs: int
    per_epoch: int
    max_steps: int | None = None
    warmup_steps: int = 0
    warmup_start_factor: float = 1.0

    @classmethod
    def of(cls, cfg: DictConfig, per_epoch: int) -> RunLength:
        """The run's length from its top-level keys."""
        return cls(int(cfg.epochs), per_epoch, cfg.max_steps, int(cfg.warmup_steps),
                   float(cfg.warmup_start_factor))


def scheduler_options(scheduler: DictConfig, schedule: DictConfig, length: RunLength) -> dict[str, Any]:
    """The scheduler's arguments: its node, the sweep arm's options it takes (`schedule.per_arm`), and
    cosine's `T_max: null` as the whole run in `schedule.interval` units."""
    per_arm = OmegaConf.to_container(schedule.per_arm) if schedule.per_arm else None
    taken, unused = arm_options(scheduler._target_, per_arm)
    if unused:
        log.info("scheduler: %s is an option of another arm of the sweep; %s does not take it",
                 ", ".join(f"schedule.per_arm.{k}={per_arm[k]}" for k in unused), scheduler._target_)
    options = {**OmegaConf.to_container(scheduler), **taken}
    if "T_max" in options and options["T_max"] is None:
        updates = length.epochs * length.per_epoch
        options["T_max"] = (length.epochs if schedule.interval == "epoch"
                            else min(updates, length.max_steps or updates))
    return options


def build_schedule(scheduler: DictConfig, schedule: DictConfig, optimizer: torch.optim.Optimizer,
                   length: RunLength, averaging: WeightAverage | None) -> Schedule:
    """The scheduler at its interval (`schedule.interval`), the linear warm-up, and SWA's SWALR."""
    built = None
    if "_target_" in scheduler:
        built = instantiate_checked(scheduler_options(scheduler, schedule, length), "scheduler", optimizer)
    swa = averaging.swalr(optimizer) if averaging is not None else None
    return Schedule(optimizer, built, schedule.interval, length.warmup_steps, length.warmup_start_factor,
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
