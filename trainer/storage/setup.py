"""A run's set-up, the one for `trainer.run` and for each job of a vectorized group
(trainer.vectorized.member): seeding, what the folder holds to continue from, the checks that need
the data, the loss and the `Training` built from the config, a checkpoint restored into it, the
TensorBoard writer, and what every checkpoint records beside the weights.

The order is the run's: seed, plan the resume, (the data: `run` loads it, a group shares it), then
build in the order that draws the same initial weights from torch's generator.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from omegaconf import DictConfig
from torch import nn

from trainer.config.build import (
    RunLength,
    batch_size_for,
    build_averaging,
    build_loss,
    build_model,
    build_optimizer,
    build_schedule,
)
from trainer.config.validate import check_loaded
from trainer.data import Splits
from trainer.logs import dashboard
from trainer.logs.events import remove_events, truncate_events
from trainer.logs.hparams import run_hparams
from trainer.logs.writer import NullLogger, RunLogger
from trainer.runtime.files import remove_stale_temporaries
from trainer.runtime.job import JobContext
from trainer.runtime.seed import seed_everything
from trainer.storage.checkpoint import restore
from trainer.storage.group_file import recover
from trainer.storage.resume import Resumption, check_data, plan_resume
from trainer.training.accel import Step
from trainer.training.loop import num_batches
from trainer.training.losses import Loss
from trainer.training.regularization import Penalty
from trainer.training.state import FitState, Training
from trainer.training.stopping import EarlyStopping, mode_for, resolve_monitor

log = logging.getLogger(__name__)

# (cfg, splits, batch_size, monitor, loss) -> the run's Training
Build = Callable[[DictConfig, Splits, int, str, Loss], Training]
# (model, optimizer) -> the run's step and regularization penalty (trainer.training.accel.make_step)
MakeStep = Callable[[nn.Module, torch.optim.Optimizer], tuple[Step, Penalty | None]]


class Folder(Protocol):
    def commit(self) -> None: ...


@dataclass
class RunSetup:
    """What a run trains with, once its checks passed and its folder is committed."""

    plan: Resumption
    monitor: str  # `auto` resolved for the task
    batch_size: int
    training: Training
    state: FitState  # fresh, or the checkpoint's
    logger: RunLogger | NullLogger
    extras: dict[str, Any]  # what each checkpoint holds beside the training's objects


def plan_run(cfg: DictConfig, out: Path, device: torch.device, resolved: dict[str, Any],
             main: bool = True) -> Resumption:
    """Seed, then find what the run in `out` continues from (`resume`, `ckpt`): raises `UserError`
    for a refused resume; `finished` is set for a finished run. `main`: the process that owns the
    folder (torchrun's rank 0)."""
    seed_everything(cfg.seed)
    if cfg.resume and not cfg.ckpt and main:  # a vectorized group's job, killed without warning:
        recover(out)  # its newest state is in the group file
    return plan_resume(out, device, resolved)


def setup_run(cfg: DictConfig, out: Path, resolved: dict[str, Any], splits: Splits, prep: Any,
              plan: Resumption, folder: Folder, build: Build, job: JobContext, *, meta: dict[str, Any],
              main: bool = True, name: str = "") -> RunSetup:
    """Check `cfg` against the loaded data, build its `Training` with `build`, restore the
    checkpoint that `plan` found, commit `folder` and open the run's writer (`main`: rank 0).
    `job`: the Hydra job (its choices and command line in TensorBoard); `name`: a group's job, in
    the log's lines."""
    device = splits.x_train.device
    if plan.ckpt is not None:
        check_data(plan.ckpt, plan.path, splits.fingerprint)
    check_loaded(cfg, splits.task)  # a file's task is known only now
    monitor = resolve_monitor(cfg.monitor, splits.task)
    batch_size = batch_size_for(cfg.batch_size, len(splits.x_train))
    training = build(cfg, splits, batch_size, monitor, build_loss(cfg.loss, cfg.huber_delta, splits))
    state = resume_training(plan, training, device, name)
    folder.commit()  # the checks passed: this run's config files replace the previous ones
    logger = open_logger(out, main, plan, resolved, state, job)
    extras = {"config": resolved, "preprocess": prep.state_dict(), "target": splits.target.state_dict(),
              "data": splits.fingerprint, "meta": meta}
    return RunSetup(plan, monitor, batch_size, training, state, logger, extras)


def build_training(cfg: DictConfig, splits: Splits, batch_size: int, monitor: str, loss: Loss,
                   make_step: MakeStep | None = None) -> Training:
    """A model's `Training` from the config, in the order that draws its initial weights as every
    run does. `make_step`: the run's update (None: a vectorized group's job, whose updates are the
    group's, so that its optimizer only carries the schedule's learning rate)."""
    device = splits.x_train.device
    model = build_model(cfg.model, splits.in_dim, splits.out_dim).to(device)
    optimizer = build_optimizer(cfg.optimizer, model.parameters(), device, cfg.cuda_graphs)
    averaging = build_averaging(cfg.averaging, model)
    step, penalty = make_step(model, optimizer) if make_step is not None else (None, None)
    per_epoch = num_batches(len(splits.x_train), batch_size, cfg.drop_last)
    schedule = build_schedule(cfg.scheduler, cfg.schedule, optimizer, RunLength.of(cfg, per_epoch), averaging)
    return Training(model, optimizer, schedule if step is not None else schedule.carried(), step,
                    torch.Generator(device=device).manual_seed(int(cfg.seed)), loss, averaging=averaging,
                    stopping=EarlyStopping(cfg.early_stopping.patience, cfg.early_stopping.min_delta,
                                           mode_for(monitor)),
                    penalty=penalty)


def resume_training(plan: Resumption, training: Training, device: torch.device, name: str = "") -> FitState:
    """A fresh state, or the checkpoint's loaded into `training`."""
    if plan.ckpt is None:
        return FitState()
    state = restore(plan.ckpt, plan.best_weights, plan.path, training, device)
    plan.note = f"continued from {plan.path} at epoch {state.epoch}, step {state.step}"
    log.info("%s%s", f"{name}: " if name else "", plan.note)
    return state


def open_logger(out: Path, main: bool, plan: Resumption, resolved: dict[str, Any],
                state: FitState, job: JobContext) -> RunLogger | NullLogger:
    """The run's TensorBoard writer (rank 0 only); a run continued in its own folder first drops
    what the stopped run logged after its checkpoint, and keeps its HParams and config text; a run
    that `resume=true` starts afresh (killed before its first checkpoint) drops all it logged."""
    if not main:
        return NullLogger()
    for stale in remove_stale_temporaries(out / "checkpoints"):
        log.warning("removed %s, left by a run killed while writing it", stale)
    if plan.same_folder:
        truncate_events(out, state.epoch, state.step)
    elif plan.afresh:
        remove_events(out)
    logger = RunLogger(out)
    if not plan.same_folder:
        logger.hparams(run_hparams(resolved, dict(job.choices)))
        logger.describe(dashboard.config_text(resolved), dashboard.command_line(job),
                        layer_stats=bool(resolved.get("log_layer_stats")))
    return logger
