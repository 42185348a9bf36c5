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
from torch import nn
from torch.optim.swa_utils import SWALR

import trainer
from models import MLP, count_parameters, resolve_widths
from trainer import accel, dashboard, distributed
from trainer.averaging import WeightAverage
from trainer.checkpoint import remove_stale_temporaries, write_json
from trainer.config import check_batch_norm, check_monitor, config_dir, validate
from trainer.data import Splits, fit_preprocessor, load_source, make_splits
from trainer.data.preprocess import WHITEN_EPS, check_compatible, load_preprocessor
from trainer.data.targets import TargetScaler, original_units
from trainer.device import resolve_device, set_threads
from trainer.diagnostics import probe
from trainer.errors import ConfigError
from trainer.fit import FitState, fit
from trainer.logger import NullLogger, RunLogger, run_hparams
from trainer.loop import evaluate, loss_function, num_batches
from trainer.regularization import make_penalty
from trainer.resume import (
    Checkpointer,
    check_config,
    check_data,
    data_fingerprint,
    finished_metrics,
    newest_state,
    recorded_config,
    restore,
    resume_path,
    rng_state,
)
from trainer.rundir import RunFolder
from trainer.schedules import Schedule, arm_options
from trainer.signals import StopOnSignal
from trainer.stopping import EarlyStopping, mode_for, resolve_monitor
from trainer.tb import truncate_events
from trainer.trial import epoch_reporter

log = logging.getLogger(__name__)

# Data keys that run() uses itself; every other data key is an option of the data set's loader.
SPLIT_KEYS = ("name", "val_fraction", "test_fraction", "split_seed", "preprocess", "whiten_eps")
SCHEDULER_KEYS = ("interval", "per_arm")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def prepare_data(data: DictConfig, device: torch.device | str = "cpu",
                 prep_state: dict | None = None, target_state: dict | None = None) -> tuple[Splits, Any]:
    """Load, split, and preprocess on `device` with statistics of the train split only (or the
    saved statistics `prep_state`, `target_state` of a checkpoint). Regression targets are
    standardized too (`splits.target`), so a loss times `splits.loss_factor` is in original units."""
    options = {k: v for k, v in OmegaConf.to_container(data, resolve=True).items()
               if k not in SPLIT_KEYS}
    source = load_source(data.name, **options)
    splits = make_splits(source, data.val_fraction, data.test_fraction, data.split_seed, device)
    splits.fingerprint = data_fingerprint(splits.x_train, splits.y_train, splits.sizes())
    if prep_state is None:
        prep = fit_preprocessor(data.preprocess, splits.x_train, eps=data.get("whiten_eps", WHITEN_EPS))
    else:
        check_compatible(prep_state, splits.x_train)
        prep = load_preprocessor(prep_state)
    splits.x_train, splits.x_val, splits.x_test = (
        prep(splits.x_train), prep(splits.x_val), prep(splits.x_test))
    if target_state is not None:
        target = TargetScaler.from_state_dict(target_state)
    elif splits.task == "regression":
        target = TargetScaler.fit(splits.y_train)
    else:
        target = TargetScaler.identity()
    splits.y_train, splits.y_val, splits.y_test = (
        target(splits.y_train), target(splits.y_val), target(splits.y_test))
    splits.target = target
    return splits, prep


def build_scheduler(sched: DictConfig, optimizer: torch.optim.Optimizer) -> Any | None:
    """The configured `torch.optim.lr_scheduler` object, or None for a constant rate."""
    if "_target_" not in sched:
        return None
    kwargs = {k: v for k, v in sched.items() if k not in SCHEDULER_KEYS}
    return instantiate_checked(OmegaConf.create(arm_options(kwargs, sched.get("per_arm"), "scheduler")),
                               "scheduler", optimizer)


def build_schedule(cfg: DictConfig, optimizer: torch.optim.Optimizer, per_epoch: int) -> Schedule:
    """The scheduler at its interval, the linear warm-up, and SWALR when SWA sets `swa_lr`."""
    sched = cfg.scheduler
    if "T_max" in sched and sched.T_max is None:  # cosine over the whole run, in interval units
        steps = min(cfg.epochs * per_epoch, cfg.max_steps or cfg.epochs * per_epoch)
        sched = OmegaConf.merge(sched, {"T_max": cfg.epochs if sched.interval == "epoch" else steps})
    scheduler = build_scheduler(sched, optimizer)
    swa = None
    avg = cfg.averaging
    if avg.kind == "swa" and avg.get("swa_lr") is not None:
        swa = (SWALR(optimizer, swa_lr=avg.swa_lr, anneal_epochs=avg.anneal_epochs,
                     anneal_strategy=avg.anneal_strategy), avg.start_epoch)
    return Schedule(optimizer, scheduler, cfg.scheduler.interval, cfg.warmup_steps,
                    cfg.warmup_start_factor, swa=swa)


def build_averaging(avg: DictConfig, model: nn.Module) -> WeightAverage | None:
    """The configured weight average of `model`, or None."""
    if avg.kind == "none":
        return None
    options = {k: avg[k] for k in ("gamma", "decay") if k in avg}
    return WeightAverage(model, avg.kind, start_epoch=avg.start_epoch, **options)


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


def build_model(cfg: DictConfig, splits: Splits) -> MLP:
    m = cfg.model
    return MLP(splits.in_dim, splits.out_dim, resolve_widths(m.depth, m.width), activation=m.activation,
               init=m.init, init_std=m.init_std, bias_init=m.bias_init, dropout=m.dropout,
               norm=m.get("norm", "none"), norm_position=m.get("norm_position", "pre"))


def instantiate_checked(node: DictConfig, group: str, *args: Any, **kwargs: Any) -> Any:
    """`instantiate(node)(*args)`, with a bad argument reported as the config key it came from."""
    try:
        return instantiate(node)(*args, **kwargs)
    except Exception as exc:  # TypeError: unknown argument; ValueError: a value torch rejects
        cause = exc.__cause__ or exc
        raise ConfigError(f"{group}={node.get('_target_')} cannot be built from the config "
                          f"{dict(OmegaConf.to_container(node))}: {cause}. Fix or remove the "
                          f"{group}.* value it names") from None


def run(cfg: DictConfig, out_dir: str | Path | None = None) -> dict[str, Any]:
    """Train and test one configuration; write logs, checkpoints and metrics.json into `out_dir`."""
    validate(cfg)
    world = distributed.setup(resolve_device(cfg.device))
    try:
        out = distributed.shared_dir(world, Path(out_dir) if out_dir is not None else hydra_output_dir())
        with RunFolder(out, lock=world.is_main) as folder:
            return _run(cfg, out, world, folder)
    finally:
        distributed.teardown(world)


def _run(cfg: DictConfig, out: Path, world: distributed.World, folder: RunFolder) -> dict[str, Any]:
    started = time.time()
    seed_everything(cfg.seed)
    device = world.device
    accel.check_precision(cfg.precision, device)
    accel.setup_backend(device, cfg.tf32)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    resume_from = resume_path(cfg.resume, cfg.ckpt, out)
    same_folder = resume_from is not None and resume_from.parent.parent.resolve() == out.resolve()
    ckpt = best_weights = None
    if resume_from is not None:
        ckpt, best_weights = newest_state(resume_from, device)
        check_config(ckpt["config"], resume_from, resolved)
    if same_folder or (cfg.resume and resume_from is None):  # a run diverged before its checkpoint too
        recorded = finished_metrics(out, cfg.epochs, cfg.max_steps, ckpt and ckpt["fit"]["step"])
        if recorded is not None:
            if ckpt is None and (saved := recorded_config(out)) is not None:
                check_config(saved, out / ".hydra" / "config.yaml", resolved)
            return recorded
    resume_note = (f"resume=true found no checkpoint in {out / 'checkpoints'}: started afresh"
                   if cfg.resume and resume_from is None else None)
    if resume_note:
        log.warning(resume_note)

    splits, prep = prepare_data(cfg.data, device)
    if ckpt is not None:
        check_data(ckpt, resume_from, splits.fingerprint)
    check_monitor(cfg.monitor, splits.task, cfg.data.name)  # a file's task is known only now
    monitor = resolve_monitor(cfg.monitor, splits.task)
    batch_size = len(splits.x_train) if cfg.batch_size == "full" else int(cfg.batch_size)
    if batch_size > len(splits.x_train):
        raise ConfigError(f"batch_size={batch_size} is larger than the training split "
                          f"({len(splits.x_train)} samples); use at most {len(splits.x_train)} "
                          "or batch_size=full")
    check_batch_norm(cfg.model.norm, len(splits.x_train), batch_size, cfg.drop_last, world.size)
    model = build_model(cfg, splits).to(device)
    threads = set_threads(cfg.threads, count_parameters(model), batch_size, device)
    fast = accel.optimizer_options(cfg.optimizer._target_, cfg.optimizer, device, cfg.cuda_graphs)
    optimizer = instantiate_checked(cfg.optimizer, "optimizer", model.parameters(), **fast)
    schedule = build_schedule(cfg, optimizer, num_batches(len(splits.x_train), batch_size, cfg.drop_last))
    averaging = build_averaging(cfg.averaging, model)
    stopping = EarlyStopping(cfg.early_stopping.patience, cfg.early_stopping.min_delta,
                             mode_for(monitor))
    generator = torch.Generator(device=device).manual_seed(int(cfg.seed))
    stateful = {"model": model, "optimizer": optimizer, "scheduler": schedule, "averaging": averaging,
                "early_stopping": stopping}

    state = FitState()
    if ckpt is not None:
        state = restore(ckpt, best_weights, resume_from, stateful, generator, device)
        resume_note = f"continued from {resume_from} at epoch {state.epoch}, step {state.step}"
        log.info(resume_note)
    folder.commit()  # the checks passed: this run's config files replace the previous ones

    meta = {"version": trainer.__version__, "git_commit": git_commit(), "device": str(device)}
    if world.is_main:
        for stale in remove_stale_temporaries(out / "checkpoints"):
            log.warning("removed %s, left by a run killed while writing it", stale)
        if same_folder:  # what the stopped run logged after its checkpoint is logged again
            truncate_events(out, state.epoch, state.step)
    logger = RunLogger(out) if world.is_main else NullLogger()
    if not same_folder:
        logger.hparams(run_hparams(resolved, config_dir()))
        logger.describe(dashboard.config_text(resolved), dashboard.command_line())
    log.info("data %s %s; model %s %s, %d parameters; on %s (%d CPU threads)", cfg.data.name, splits.sizes(),
             "-".join(map(str, [splits.in_dim, *resolve_widths(cfg.model.depth, cfg.model.width),
                                splits.out_dim])),
             cfg.model.activation, count_parameters(model), device, threads)

    def parts() -> dict[str, Any]:
        return {**{k: v.state_dict() if v is not None else None for k, v in stateful.items()},
                "rng": rng_state(generator), "config": resolved, "preprocess": prep.state_dict(),
                "target": splits.target.state_dict(), "data": splits.fingerprint, "meta": meta}

    save = Checkpointer(out / "checkpoints", parts, cfg.checkpoint_every_n_epochs, before_write=logger.flush)
    trained = accel.compile_model(distributed.wrap(model, world), cfg.compile)
    reg = cfg.regularization
    penalty = make_penalty(model, reg.l1, reg.l2, reg.biases)
    step = accel.make_step(trained, optimizer, loss_function(splits.task), device, precision=cfg.precision,
                           cuda_graphs=cfg.cuda_graphs, compiled=cfg.compile,
                           distributed=world.distributed, batch_size=batch_size // world.size,
                           grad_clip=cfg.grad_clip, penalty=penalty)
    layer_stats = probe(model, splits, batch_size, cfg.log_layer_stats_every_n_epochs, logger) \
        if cfg.log_layer_stats and world.is_main else None
    # Signals are caught until metrics.json is written: one after the last epoch changes nothing,
    # a second Ctrl-C stops at once (KeyboardInterrupt) with the last checkpoint intact.
    with StopOnSignal() as stop:
        test: dict[str, float] = {}
        try:
            fit(model, optimizer, schedule, splits, epochs=cfg.epochs,
                batch_size=batch_size, drop_last=cfg.drop_last, monitor=monitor,
                generator=generator, logger=logger, log_every_n_steps=cfg.log_every_n_steps,
                nan_check_every_n_steps=cfg.nan_check_every_n_steps,
                progress=cfg.progress and world.is_main, save=save if world.is_main else lambda s: None,
                state=state, stop_requested=stop, max_steps=cfg.max_steps, averaging=averaging,
                stopping=stopping, step=step, shard=(world.rank, world.size),
                divergence_factor=cfg.divergence_factor,
                prune=None if world.distributed else epoch_reporter(cfg.epochs),
                penalty=penalty, layer_stats=layer_stats)
            if state.status == "completed":
                test = test_metrics(cfg, model, averaging, state, splits)
        except KeyboardInterrupt:
            state.status = "interrupted"
            state.reason = (f"stopped at once at step {state.step} (second Ctrl-C); a resume continues "
                            "from the last checkpoint")
        if state.status == "completed":
            logger.scalars(dashboard.final_scalars(state.best_metrics, test), state.epoch)
            if stop.received is not None:
                log.info("%s arrived after the last epoch: the run is complete", stop.received.name)
        else:
            logger.text("status", f"{state.status}: {state.reason}", state.step)
        logger.close()
        metrics = run_metrics(cfg, state, test, model, splits, started, meta, monitor)
        if resume_note:
            metrics["resume"] = resume_note
        if stop.received is not None:
            metrics["signal"] = stop.received.name
        if world.is_main:
            write_json(metrics, out / "metrics.json")
    return metrics


def test_metrics(cfg: DictConfig, model: nn.Module, averaging: WeightAverage | None, state: FitState,
                 splits: Splits) -> dict[str, float]:
    """The test split's metrics of the best-validation weights (or, test_on=last, the last ones)."""
    if cfg.test_on == "best" and state.best_weights is not None:
        model.load_state_dict(state.best_weights)
    elif averaging is not None and averaging.count:  # test_on=last: the last averaged weights
        model.load_state_dict(averaging.weights())
    test = evaluate(model, loss_function(splits.task), splits.x_test, splits.y_test,
                    classification=splits.task == "classification", transform=splits.transform)
    return original_units(test, splits.loss_factor)  # regression: in the targets' own units


def run_metrics(cfg: DictConfig, state: FitState, test: dict[str, float], model: nn.Module,
                splits: Splits, started: float, meta: dict[str, str], monitor: str) -> dict[str, Any]:
    """metrics.json: the best epoch's validation metrics, the test metrics, and how the run went;
    `monitor` is the metric that picked the best epoch (`auto` resolved for the task)."""
    metrics: dict[str, Any] = {**state.best_metrics, **{f"test/{k}": v for k, v in test.items()}}
    metrics.update({
        "train/loss": state.last_metrics.get("train/loss"),
        **{k: state.last_metrics[k] for k in ("train/penalty",) if k in state.last_metrics},
        "monitor": monitor,
        "best_epoch": state.best_epoch,
        "epochs": state.epoch,
        "steps": state.step,
        "stopped_by": state.stopped_by,
        "params": count_parameters(model),
        "status": state.status,
        "wall_time_s": round(time.time() - started, 3),
        "seed": int(cfg.seed),
        **meta,
    })
    if state.reason:
        metrics["reason"] = state.reason
    if splits.task == "classification":
        metrics["train/acc"] = state.last_metrics.get("train/acc")
    return metrics
