"""`run(cfg)`: the one place that reads the whole config; it reads as the run's table of contents."""

from __future__ import annotations

import logging
import os
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from models import count_parameters
from trainer.config.build import build_data, build_penalty, check_batch_norm
from trainer.config.ensemble_checks import kind_of
from trainer.config.validate import validate
from trainer.data import Splits, prepare_data
from trainer.ensemble.fit import build_ensemble
from trainer.logs import dashboard
from trainer.runtime import distributed
from trainer.runtime.device import eval_threads, resolve_device, set_threads
from trainer.runtime.errors import FolderRefused, UserError
from trainer.runtime.files import write_json
from trainer.runtime.job import JobContext
from trainer.runtime.runinfo import new_output_dir, run_meta
from trainer.runtime.signals import StopOnSignal
from trainer.storage.checkpoint import Checkpointer
from trainer.storage.rundir import RunFolder, discard_staged, run_files
from trainer.storage.setup import build_training, plan_run, setup_run
from trainer.sweeps.jobs import record_process
from trainer.sweeps.trial import epoch_reporter
from trainer.training import accel
from trainer.training.diagnostics import probe
from trainer.training.fit import fit
from trainer.training.losses import Loss
from trainer.training.outcome import run_metrics, test_metrics
from trainer.training.state import FitHooks, FitOptions, FitState, Training

log = logging.getLogger(__name__)


def run(cfg: DictConfig, out_dir: str | Path | None = None, job: JobContext | None = None) -> dict[str, Any]:
    """Train and test one configuration; write logs, checkpoints and metrics.json into `out_dir`
    (default: the Hydra job's folder, or a new `outputs/DATE/TIME-ID`). `job`: the Hydra job this run
    is (trainer/__main__.py reads it); None from Python: the Hydra job of a user's own `@hydra.main`
    when there is one and `out_dir` is not given, else none.

    Raises `FolderRefused` when `out_dir` is another process's, or holds a run that `cfg` neither
    continues (`resume`, `ckpt`) nor replaces (`overwrite`)."""
    job = job or JobContext.of_caller(out_dir)
    chosen = Path(out_dir) if out_dir is not None else job.output_dir or new_output_dir()
    try:
        validate(cfg)
    except UserError:
        refused_config(chosen, job.staged_dir)
        raise
    world = distributed.setup(resolve_device(cfg.device))
    try:
        out = distributed.shared_dir(world, chosen)
        with RunFolder(out, lock=world.is_main, resume=cfg.resume, ckpt=cfg.ckpt, overwrite=cfg.overwrite,
                       on_accept=lambda: record_process(out), staged=job.staged_dir) as folder:
            return _run(cfg, out, world, folder, job)
    finally:
        distributed.teardown(world)


def refused_config(out: Path, staged: Path | None = None) -> None:
    """The folder of a run whose config was refused: one that holds a run stays as it was; an empty
    one is the run's as any other (its process record, its log), so a report sees it failed.
    `staged`: the config files Hydra staged for the run, removed."""
    if not out.is_dir():  # a run through the Python API: no folder is made for it
        return
    if run_files(out):
        discard_staged(staged)
        return
    try:
        main = int(os.environ.get("RANK", "0")) == 0  # before torchrun's ranks are set up
        with RunFolder(out, lock=main, on_accept=lambda: record_process(out), staged=staged):
            pass
    except FolderRefused:  # another process's: the config's error is the one to tell
        pass


def _run(cfg: DictConfig, out: Path, world: distributed.World, folder: RunFolder,
         job: JobContext) -> dict[str, Any]:
    started, device = time.time(), world.device
    accel.setup_backend(device, cfg.tf32)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    plan = plan_run(cfg, out, device, resolved, main=world.is_main)
    if plan.finished is not None:
        return plan.finished

    splits, prep = prepare_data(build_data(cfg.data), device)
    meta = run_meta(device)
    build = partial(build_run_training, world=world)
    setup = setup_run(cfg, out, resolved, splits, prep, plan, folder, build, job, meta=meta,
                      main=world.is_main)
    training, logger, batch_size, monitor = setup.training, setup.logger, setup.batch_size, setup.monitor
    log.info("data %s %s; model %s %s, %d parameters; on %s (%d CPU threads)", cfg.data.name,
             splits.sizes(), "-".join(map(str, [splits.in_dim, *training.model.widths, splits.out_dim])),
             cfg.model.activation, count_parameters(training.model), device, torch.get_num_threads())
    save = Checkpointer(out / "checkpoints", training, setup.extras, cfg.checkpoint_every_n_epochs,
                        before_write=logger.flush, background=True)
    threads = eval_threads(cfg.threads, count_parameters(training.model), len(splits.x_val), device)
    options = fit_options(cfg, batch_size, monitor, world, threads)
    # Signals are caught until metrics.json is written: one after the last epoch changes nothing,
    # a second Ctrl-C stops at once (KeyboardInterrupt) with the last checkpoint intact.
    with StopOnSignal() as stop:
        hooks = FitHooks(logger, save, stop, None if world.distributed else epoch_reporter(cfg.epochs, job))
        if not world.is_main:
            hooks.save = lambda state: None
        elif cfg.log_layer_stats:
            hooks.layer_stats = probe(training.model, splits, training.loss, batch_size,
                                      cfg.log_layer_stats_every_n_epochs, logger)
        try:
            state, test = fit_and_test(training, splits, options, hooks, setup.state, cfg.test_on)
        finally:
            save.close()  # every checkpoint on disk before metrics.json, also when training failed
        logger.close()
        metrics = run_metrics(cfg.seed, state, test, training, splits, started, meta, monitor)
        if plan.note:
            metrics["resume"] = plan.note
        if stop.received is not None:
            metrics["signal"] = stop.received.name
            if state.status == "completed":
                log.info("%s arrived after the last epoch: the run is complete", stop.received.name)
        if world.is_main:
            write_json(metrics, out / "metrics.json")
    return metrics


def build_run_training(cfg: DictConfig, splits: Splits, batch_size: int, monitor: str, loss: Loss, *,
                       world: distributed.World) -> Training:
    """The model and everything that updates it, built from the config."""
    if kind_of(cfg) != "none":  # bagging's or boosting's members, trained as one stacked model
        return build_ensemble(cfg, splits, batch_size, splits.x_train.device, world, monitor, loss)
    check_batch_norm(cfg.model.norm, len(splits.x_train), batch_size, cfg.drop_last, world.size)
    device = splits.x_train.device

    def step_for(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[accel.Step, Any]:
        set_threads(cfg.threads, count_parameters(model), batch_size, device)
        penalty = build_penalty(cfg.regularization, model)
        return accel.make_step(accel.compile_model(distributed.wrap(model, world), cfg.compile), optimizer,
                               loss, device, precision=cfg.precision, cuda_graphs=cfg.cuda_graphs,
                               compiled=cfg.compile, distributed=world.distributed,
                               batch_size=batch_size // world.size, grad_clip=cfg.grad_clip,
                               penalty=penalty, backprop=cfg.backprop), penalty

    return build_training(cfg, splits, batch_size, monitor, loss, step_for)


def fit_options(cfg: DictConfig, batch_size: int, monitor: str, world: distributed.World,
                eval_threads: int | None) -> FitOptions:
    """How `fit` trains, from the config."""
    return FitOptions(epochs=cfg.epochs, batch_size=batch_size, monitor=monitor, drop_last=cfg.drop_last,
                      max_steps=cfg.max_steps, divergence_factor=cfg.divergence_factor,
                      log_every_n_steps=cfg.log_every_n_steps,
                      nan_check_every_n_steps=cfg.nan_check_every_n_steps,
                      progress=cfg.progress and world.is_main, shard=(world.rank, world.size),
                      eval_threads=eval_threads)


def fit_and_test(training: Training, splits: Splits, options: FitOptions, hooks: FitHooks, state: FitState,
                 test_on: str) -> tuple[FitState, dict[str, float]]:
    """Train; test the chosen weights of a completed fit; log the end (final metrics or status)."""
    test: dict[str, float] = {}
    try:
        fit(training, splits, options, hooks, state)
        if state.status == "completed":
            test = test_metrics(test_on, training, state, splits)
    except KeyboardInterrupt:
        state.status = "interrupted"
        state.reason = (f"stopped at once at step {state.step} (second Ctrl-C); a resume continues "
                        "from the last checkpoint")
    if state.status == "completed":
        hooks.logger.scalars(dashboard.final_scalars(state.best_metrics, test), state.epoch)
    else:
        hooks.logger.text("status", f"{state.status}: {state.reason}", state.step)
    return state, test
