"""One job of a vectorized group: the objects `run()` builds for it, its folder, its epoch ends.

A member is set up as `trainer.run` sets up a run (trainer.storage.setup: the same seeding,
builders, resume checks and checkpoint layout), so its folder is an ordinary run folder, and its
epochs end by fit()'s rules (trainer.training.epoch). Its model's parameters become views into the
group's stacked tensors (`StackedParams.adopt`); its own optimizer never updates: it carries the
learning rate that the member's `Schedule` sets, and the optimizer state that a checkpoint records.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from trainer.data import Splits
from trainer.logs import dashboard
from trainer.runtime.files import write_json
from trainer.runtime.job import JobContext
from trainer.runtime.runinfo import run_meta
from trainer.storage.checkpoint import Checkpointer
from trainer.storage.rundir import RunFolder
from trainer.storage.setup import RunSetup, build_training, plan_run, setup_run
from trainer.sweeps.jobs import record_process
from trainer.sweeps.trial import epoch_reporter
from trainer.training.epoch import Updates, after_save, close_epoch, initial_loss, record_epoch
from trainer.training.outcome import run_metrics, test_metrics
from trainer.training.state import FitHooks, FitOptions, FitState

log = logging.getLogger(__name__)
meta_once = functools.cache(run_meta)  # version and `git rev-parse` once per process, not per member


class Finished(Exception):
    """A job with nothing to train: its recorded metrics (a finished run relaunched with resume)."""

    def __init__(self, metrics: dict[str, Any]) -> None:
        super().__init__("finished")
        self.metrics = metrics


class MemberCheckpointer(Checkpointer):
    """run()'s checkpoints, with the model's weights copied out of the group's stacked tensors (a
    view would save the whole stack) and the member's slice of the group's optimizer state."""

    def __init__(self, member: Member, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.member = member

    def contents(self, state: FitState) -> dict[str, Any]:
        self.member.optimizer_state()
        ckpt = super().contents(state)
        ckpt["model"] = {k: v.clone() for k, v in ckpt["model"].items()}
        return ckpt


class Member:
    """Everything one job of a group owns. Build with `Member.open(...)` inside an ExitStack."""

    def __init__(self, cfg: DictConfig, out: Path, name: str) -> None:
        self.cfg, self.out, self.name = cfg, out, name
        self.started = time.time()
        self.resolved = OmegaConf.to_container(cfg, resolve=True)
        self.signal: str | None = None
        self.metrics: dict[str, Any] | None = None
        self.pruned = ""
        self.optimizer_state: Any = lambda: None  # set by the group: this member's slice of its state
        self.key = ""  # set by the group: this member's name in the group's checkpoint file

    @classmethod
    def open(cls, cfg: DictConfig, out: Path, splits: Splits, prep: Any, device: torch.device,
             stack: contextlib.ExitStack, name: str = "", started: float | None = None,
             job: JobContext | None = None) -> Member:
        """The member of job `cfg` writing into `out`, as `run()` would set it up; raises `Finished`
        for a finished run, `FolderRefused` for a folder it may not train into and `UserError` for
        a refused resume; `cfg` is validated already (`trainer.config.validate`, as `run_members`
        does). `started`: the group's start, in the job's process record; `job`: its Hydra context."""
        self, job = cls(cfg, out, name or out.name), job or JobContext.outside_hydra(out)
        self.job = job
        # The lock, the folder's guarantee, Hydra's staged .hydra files and held log lines.
        folder = stack.enter_context(RunFolder(out, resume=cfg.resume, ckpt=cfg.ckpt, overwrite=cfg.overwrite,
                                               on_accept=lambda: record_process(out, started),
                                               staged=job.staged_dir))
        plan = plan_run(cfg, out, device, self.resolved)
        if plan.finished is not None:
            raise Finished(plan.finished)
        self.meta = meta_once(device)
        # Its updates are the group's (MemberwiseOptimizer): its own optimizer carries the lr.
        run = setup_run(cfg, out, self.resolved, splits, prep, plan, folder, build_training, job,
                        meta=self.meta, name=self.name)
        stack.callback(run.logger.close)
        self.adopt(run, splits, prep, device)
        return self

    def adopt(self, run: RunSetup, splits: Splits, prep: Any, device: torch.device) -> None:
        """Keep what the set-up built, and the plain values that each step reads (not DictConfig
        lookups: microseconds each, times M per step)."""
        cfg, t = self.cfg, run.training
        self.splits, self.prep, self.device, self.resume_note = splits, prep, device, run.plan.note
        self.training, self.state, self.logger, self.monitor = t, run.state, run.logger, run.monitor
        self.model, self.optimizer, self.schedule = t.model, t.optimizer, t.schedule
        self.averaging, self.stopping, self.generator = t.averaging, t.stopping, t.generator
        self.batch_size, self.grad_clip, self.max_steps = run.batch_size, cfg.grad_clip, cfg.max_steps
        self.nan_every = int(cfg.nan_check_every_n_steps)
        self.weight_decay = float(self.optimizer.param_groups[0].get("weight_decay", 0.0))
        self.save = MemberCheckpointer(self, self.out / "checkpoints", t, run.extras,
                                       cfg.checkpoint_every_n_epochs, before_write=self.logger.flush)
        self.options = FitOptions(epochs=cfg.epochs, batch_size=run.batch_size, monitor=run.monitor,
                                  drop_last=cfg.drop_last, max_steps=cfg.max_steps,
                                  divergence_factor=cfg.divergence_factor, name=self.name)
        # Its checkpoints are the group's to write (storage.group_file), its stop the group's too;
        # `prune`: a pruned Optuna search's trial.
        self.hooks = FitHooks(self.logger, prune=epoch_reporter(cfg.epochs, self.job))
        self.updates = Updates(t, self.state, int(cfg.log_every_n_steps))

    # ----------------------------------------------------------------------------- per step
    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def after_update(self, epoch: int) -> None:
        """fit()'s on_step for this member (the step count, schedule, averaging, logged rate)."""
        self.updates.epoch = epoch
        self.updates.count()

    # ----------------------------------------------------------------------------- epoch end
    def end_epoch(self, epoch: int, seconds: float, seen: int, val: dict[str, float] | None = None) -> None:
        """fit()'s epoch end for this member (trainer.training.epoch): its metrics (`val`: its
        validation metrics, which the group computed), divergence, the schedule, the log, the best
        weights, early stopping; the group then checkpoints all members (and calls `pruned_stop`).
        Sets `state.status` when the member is done."""
        self.updates.write_lrs(self.logger)
        state = self.state
        stats = state.cursor.stats(self.splits.task == "classification")
        metrics = close_epoch(self.training, self.splits, self.options, state, epoch, stats, seconds, seen,
                              val)
        if metrics is not None:
            self.pruned = record_epoch(self.training, self.options, self.hooks, state, metrics, epoch)

    def pruned_stop(self) -> None:
        """Once the epoch's checkpoint is written: stop a member that its search pruned (as fit() does)."""
        if self.state.status in ("running", "completed"):
            after_save(self.state, self.options, self.pruned, lambda: False, self.state.epoch)

    @property
    def needs_initial_loss(self) -> bool:
        return self.state.initial_loss is None and self.cfg.divergence_factor is not None

    def initial_loss(self, val: dict[str, float] | None = None) -> None:
        """Divergence's yardstick (trainer.training.epoch.initial_loss); `val`: the untrained
        model's validation metrics, which the group computed."""
        initial_loss(self.training, self.splits, self.options, self.state, val)

    # ----------------------------------------------------------------------------- the end
    def finish(self) -> dict[str, Any]:
        """Test (when completed), log the end, write metrics.json: what run() returns."""
        state, cfg = self.state, self.cfg
        self.updates.write_lrs(self.logger)
        test: dict[str, float] = {}
        if state.status == "completed":
            test = test_metrics(cfg.test_on, self.training, state, self.splits)
            self.logger.scalars(dashboard.final_scalars(state.best_metrics, test), state.epoch)
        else:
            self.logger.text("status", f"{state.status}: {state.reason}", state.step)
        self.logger.close()
        metrics = run_metrics(cfg.seed, state, test, self.training, self.splits, self.started, self.meta,
                              self.monitor)
        if self.resume_note:
            metrics["resume"] = self.resume_note
        if self.signal is not None:
            metrics["signal"] = self.signal
        write_json(metrics, self.out / "metrics.json")
        self.metrics = metrics
        return metrics
