"""One job of a vectorized group: the objects `run()` builds for it, its folder, its epoch ends.

A member is built exactly as `trainer.run._run` builds a run (same seeding, same builders, same
resume checks and checkpoint layout), so its folder is an ordinary run folder. Its model's
parameters become views into the group's stacked tensors (`StackedParams.adopt`); its own optimizer
never steps: it carries the learning rate that the member's `Schedule` sets, and the optimizer state
that a checkpoint records.
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

from trainer.config.build import RunLength, build_averaging, build_model, build_optimizer, build_schedule
from trainer.config.validate import check_loaded
from trainer.data import Splits
from trainer.data.targets import original_units
from trainer.logs import dashboard
from trainer.logs.events import remove_events, truncate_events
from trainer.logs.writer import LR_TAG, SPEED_TAG, RunLogger, run_hparams
from trainer.run import seed_everything
from trainer.runtime.job import JobContext
from trainer.runtime.runinfo import run_meta
from trainer.storage.checkpoint import Checkpointer, remove_stale_temporaries, restore, write_json
from trainer.storage.group_file import recover
from trainer.storage.resume import check_data, plan_resume
from trainer.storage.rundir import RunFolder
from trainer.sweeps.jobs import record_process
from trainer.sweeps.trial import epoch_reporter
from trainer.training.fit import FitState, Training, diverged, keep_if_best, validation_metrics
from trainer.training.loop import num_batches
from trainer.training.outcome import run_metrics, test_metrics
from trainer.training.stopping import EarlyStopping, mode_for, resolve_monitor

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
        self.lrs: list[tuple[int, float]] = []  # (step, lr), written once per epoch as fit() does
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
        # The lock, the folder's guarantee, Hydra's staged .hydra files and held log lines.
        folder = stack.enter_context(RunFolder(out, resume=cfg.resume, ckpt=cfg.ckpt, overwrite=cfg.overwrite,
                                               on_accept=lambda: record_process(out, started),
                                               staged=job.staged_dir))
        seed_everything(cfg.seed)
        if cfg.resume and not cfg.ckpt:
            recover(out)  # a group killed without warning: its newest state is in the group file
        plan = plan_resume(out, device, self.resolved)
        if plan.finished is not None:
            raise Finished(plan.finished)
        self.resume_note = plan.note
        if plan.ckpt is not None:
            check_data(plan.ckpt, plan.path, splits.fingerprint)
        check_loaded(cfg, splits.task)  # a file's task is known only now
        self.monitor = resolve_monitor(cfg.monitor, splits.task)
        self.splits, self.prep, self.device = splits, prep, device
        self.batch_size = len(splits.x_train) if cfg.batch_size == "full" else int(cfg.batch_size)
        # The weights this job would start from alone: run() seeds, prepares the data (which draws
        # nothing from torch's generator) and builds the model, in this order.
        model = build_model(cfg.model, splits.in_dim, splits.out_dim).to(device)
        optimizer = build_optimizer(cfg.optimizer, model.parameters(), device, cfg.cuda_graphs)
        # Its updates are the group's (MemberwiseOptimizer): tell torch's schedulers that it steps.
        optimizer._opt_called = True
        averaging = build_averaging(cfg.averaging, model)
        length = RunLength.of(cfg, num_batches(len(splits.x_train), self.batch_size, cfg.drop_last))
        stopping = EarlyStopping(cfg.early_stopping.patience, cfg.early_stopping.min_delta,
                                 mode_for(self.monitor))
        generator = torch.Generator(device=device).manual_seed(int(cfg.seed))
        self.training = Training(model, optimizer, build_schedule(cfg.scheduler, cfg.schedule, optimizer,
                                 length, averaging), None, generator, averaging=averaging, stopping=stopping)
        self.model, self.optimizer, self.schedule = model, optimizer, self.training.schedule
        self.averaging, self.stopping, self.generator = averaging, stopping, generator
        self.state = FitState()
        if plan.ckpt is not None:
            self.state = restore(plan.ckpt, plan.best_weights, plan.path, self.training, device)
            self.resume_note = (f"continued from {plan.path} at epoch {self.state.epoch}, "
                                f"step {self.state.step}")
            log.info("%s: %s", self.name, self.resume_note)
        folder.commit()
        self.meta = meta_once(device)
        for stale in remove_stale_temporaries(out / "checkpoints"):
            log.warning("removed %s, left by a run killed while writing it", stale)
        if plan.same_folder:
            truncate_events(out, self.state.epoch, self.state.step)
        elif plan.afresh:
            remove_events(out)
        self.logger = RunLogger(out)
        stack.callback(self.logger.close)
        if not plan.same_folder:
            self.logger.hparams(run_hparams(self.resolved, dict(job.choices)))
            self.logger.describe(dashboard.config_text(self.resolved), dashboard.command_line(job),
                                 layer_stats=bool(self.resolved.get("log_layer_stats")))
        # Read every step: plain values, not DictConfig lookups (microseconds each, times M per step).
        self.grad_clip, self.max_steps = cfg.grad_clip, cfg.max_steps
        self.log_every, self.nan_every = int(cfg.log_every_n_steps), int(cfg.nan_check_every_n_steps)
        self.weight_decay = float(optimizer.param_groups[0].get("weight_decay", 0.0))
        extras = {"config": self.resolved, "preprocess": prep.state_dict(),
                  "target": splits.target.state_dict(), "data": splits.fingerprint, "meta": self.meta}
        self.save = MemberCheckpointer(self, out / "checkpoints", self.training, extras,
                                       cfg.checkpoint_every_n_epochs, before_write=self.logger.flush)
        self.prune = epoch_reporter(cfg.epochs, job)  # a job of a pruned Optuna search: its trial
        return self

    # ----------------------------------------------------------------------------- per step
    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def after_update(self, epoch: int) -> None:
        """fit()'s on_step for this member (the step count, schedule, averaging, logged rate)."""
        state = self.state
        state.step += 1
        if self.schedule.per_update:
            self.schedule.after_update()
        if self.averaging is not None:
            self.averaging.update(self.model, epoch)
        if state.step % self.log_every == 0:
            self.lrs.append((state.step, self.lr))

    def write_lrs(self) -> None:
        for at, lr in self.lrs:
            self.logger.scalars({LR_TAG: lr}, at)
        self.lrs.clear()

    # ----------------------------------------------------------------------------- epoch end
    def end_epoch(self, epoch: int, seconds: float, seen: int, save: bool = True,
                  val: dict[str, float] | None = None) -> None:
        """The tail of fit()'s epoch for this member: validate (unless the group gives `val`, this
        member's validation metrics), divergence, schedule, best weights, early stopping,
        checkpoint (unless `save` is False: the group then saves all members at once). Sets
        `state.status` when the member is done."""
        state, splits, cfg = self.state, self.splits, self.cfg
        self.write_lrs()
        stats = state.cursor.stats(splits.task == "classification")
        train = original_units({f"train/{k}": v.item() for k, v in stats.items()}, splits.loss_factor)
        if val is None:
            val = validation_metrics(self.model, self.averaging, splits)
        val = original_units(val, splits.loss_factor)
        state.reason = diverged(train["train/loss"], val["val/loss"], state, cfg.divergence_factor, epoch)
        if state.reason:
            state.status = "diverged"
            return
        metrics = {**train, **val, "lr": self.lr, SPEED_TAG: seen / max(seconds, 1e-9)}
        self.schedule.after_epoch(epoch, metrics.get("val_raw/loss", metrics["val/loss"]))
        self.logger.scalars({k: v for k, v in metrics.items() if k != "lr"}, epoch)
        state.end_epoch(epoch, metrics)
        keep_if_best(state, metrics, self.monitor, self.model, self.averaging)
        log.debug("%s epoch %d  %s", self.name, epoch, "  ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
        self.pruned = self.prune(epoch, metrics[self.monitor]) if self.prune is not None else ""
        if self.stopping.update(metrics[self.monitor]):
            state.stopped_by = "early_stopping"
        elif cfg.max_steps is not None and state.step >= cfg.max_steps:
            state.stopped_by = "max_steps"
        if state.stopped_by != "epochs" or epoch == cfg.epochs:
            state.status = "completed"
        if save:
            self.saved()

    def saved(self) -> None:
        """Checkpoint the epoch's end, then stop a member that its search pruned (as fit() does)."""
        self.save(self.state)
        self.pruned_stop()

    def pruned_stop(self) -> None:
        if self.pruned and self.state.status == "running":
            self.state.status, self.state.reason = "pruned", self.pruned

    @property
    def needs_initial_loss(self) -> bool:
        return self.state.initial_loss is None and self.cfg.divergence_factor is not None

    def initial_loss(self, val: dict[str, float] | None = None) -> None:
        """Divergence's yardstick: the untrained model's validation loss (as fit() computes it), or
        from `val`, its validation metrics that the group computed."""
        if self.needs_initial_loss:
            val = val if val is not None else validation_metrics(self.model, None, self.splits)
            self.state.initial_loss = original_units(val, self.splits.loss_factor)["val/loss"]

    # ----------------------------------------------------------------------------- the end
    def finish(self) -> dict[str, Any]:
        """Test (when completed), log the end, write metrics.json: what run() returns."""
        state, cfg = self.state, self.cfg
        self.write_lrs()
        test: dict[str, float] = {}
        if state.status == "completed":
            test = test_metrics(cfg.test_on, self.model, self.averaging, state, self.splits)
            self.logger.scalars(dashboard.final_scalars(state.best_metrics, test), state.epoch)
        else:
            self.logger.text("status", f"{state.status}: {state.reason}", state.step)
        self.logger.close()
        metrics = run_metrics(cfg.seed, state, test, self.model, self.splits, self.started, self.meta,
                              self.monitor)
        if self.resume_note:
            metrics["resume"] = self.resume_note
        if self.signal is not None:
            metrics["signal"] = self.signal
        write_json(metrics, self.out / "metrics.json")
        self.metrics = metrics
        return metrics
