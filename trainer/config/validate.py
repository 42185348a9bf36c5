"""Where the configs live, their schema, and the checks every config passes before any work.

The schema (trainer.config.schema, and the data sets' own classes in trainer.data.sets) declares
every key and what its value may be; `validate(cfg)` applies those checks, then the few that
relate keys to each other, and checks the optimizer's and scheduler's arguments against their
classes' signatures and torch's rules (trainer.config.arguments), building nothing. What needs
the data's task (monitor, loss, boosting) is `check_task`: run by `validate` when the config
fixes the task, else once the data is loaded (`check_loaded`). Nothing else in the package
rejects a config value, except what only the loaded data can tell (a batch larger than the
training split, a batch of one sample for BatchNorm: trainer.config.build).
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from trainer.config.arguments import arm_options, check_arguments
from trainer.config.ensemble_checks import check_ensemble, check_ensemble_task
from trainer.config.nodes import check_node
from trainer.config.schema import Config, register, schema_of
from trainer.runtime.checks import did_you_mean
from trainer.runtime.errors import ConfigError
from trainer.training.losses import check_loss

log = logging.getLogger(__name__)

# Full-batch methods: L-BFGS's line search needs the same loss at every evaluation (rejected with
# minibatches); Rprop's sign rule is defeated by minibatch noise (a warning).
FULL_BATCH_ONLY = ("torch.optim.LBFGS",)
FULL_BATCH_ADVISED = ("torch.optim.Rprop",)


def config_dir() -> str:
    """The configs: inside the installed package, or `configs/` beside it in a source checkout."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "configs", here.parent / "configs"):
        if (candidate / "config.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"no configs/config.yaml found beside {here}; the installation is broken")


register()  # the schemas, before Hydra composes anything


def known_task(data: DictConfig) -> str | None:
    """The data set's task when its config fixes it, None when only its file can tell (task: auto)."""
    if data.get("task", "auto") != "auto":
        return str(data.task)
    schema = schema_of(data)
    return getattr(schema, "task_known", None)


def static_monitor(cfg: DictConfig) -> str | None:
    """`monitor` resolved without loading data (None: `auto` on a file whose task is not known yet)."""
    from trainer.training.stopping import resolve_monitor

    task = known_task(cfg.data)
    if cfg.monitor == "auto" and task is None:
        return None
    return resolve_monitor(str(cfg.monitor), task or "classification")


def check_monitor(monitor: object, task: str | None, data_name: str) -> None:
    """`monitor` must name a metric the run produces: val/acc only exists for classification."""
    if task == "regression" and monitor == "val/acc":
        raise ConfigError(f"monitor={monitor} needs classes, but data {data_name!r} is a regression "
                          "task (it has val/loss only); use monitor=val/loss or monitor=auto")


def validate(cfg: DictConfig) -> None:
    """Check every value the run uses; raise `ConfigError` naming the key and the allowed values.
    Builds nothing: no torch object is made."""
    check_values(cfg)
    _check_relations(cfg)
    check_optimization(cfg)


def check_loaded(cfg: DictConfig, task: str) -> None:
    """Once the data is loaded: the checks of `check_task` that `validate` could not make (a file
    whose task only its contents tell)."""
    if known_task(cfg.data) is None:
        check_task(cfg, task)


def check_task(cfg: DictConfig, task: str) -> None:
    """What must fit the data's task: the monitored metric, the loss, boosting."""
    check_monitor(cfg.monitor, task, cfg.data.name)
    check_loss(cfg.loss, task, cfg.data.name)
    check_ensemble_task(cfg, task)


def check_optimization(cfg: DictConfig) -> None:
    """The optimizer's and the scheduler's arguments, from the config alone (nothing is built)."""
    check_arguments(cfg.optimizer, "optimizer")
    if "_target_" in cfg.scheduler:
        per_arm = OmegaConf.to_container(cfg.schedule.per_arm) if cfg.schedule.per_arm else None
        check_arguments(cfg.scheduler, "scheduler", arm_options(cfg.scheduler._target_, per_arm)[0])


def check_values(cfg: DictConfig) -> None:
    """Each key's own check, none that relates keys (an Optuna search checks its space with this:
    a value is wrong on its own, while a pair of values is only wrong for the trials that draw it)."""
    check_node(cfg, Config, "")
    for group in ("model", "averaging", "data", "optimizer", "scheduler"):
        schema = schema_of(cfg[group])
        if schema is not None:
            check_node(cfg[group], schema, f"{group}.", strict=group not in ("optimizer", "scheduler"))
        elif group not in ("optimizer", "scheduler"):  # those two may name any torch class
            raise ConfigError(f"{group}: {cfg[group].get('_target_')!r} is not a {group} this version "
                              f"knows; choose one with {group}=NAME (see configs/{group}/)")


def _check_relations(cfg: DictConfig) -> None:
    """The checks that relate one key to another."""
    m, d, avg = cfg.model, cfg.data, cfg.averaging
    if cfg.overwrite and cfg.resume:
        raise ConfigError("overwrite=true moves the run in the folder aside to start a new one, and "
                          "resume=true continues it: pass one of them")
    if isinstance(m.width, ListConfig) and len(m.width) != m.depth:
        raise ConfigError(f"model.width lists {len(m.width)} widths but model.depth={m.depth}; "
                          f"set model.depth={len(m.width)} or give {m.depth} widths")
    if m.depth == 0:  # a linear model: no hidden layer for a norm or dropout to act on
        for key, off in (("norm", "none"), ("dropout", 0)):
            if m.get(key, off) != off:
                raise ConfigError(f"model.{key}={m[key]} acts on hidden layers, but model.depth=0 is a "
                                  f"linear model without any; set model.{key}={off} or model.depth>=1")
    if not d.val_fraction + d.test_fraction < 1:
        raise ConfigError(f"data.val_fraction={d.val_fraction} and data.test_fraction={d.test_fraction} "
                          "must sum to less than 1, leaving a training split")
    if known_task(d) is not None:  # else once the data is loaded: check_loaded
        check_task(cfg, known_task(d))
    check_ensemble(cfg)
    if "start_epoch" in avg and avg.start_epoch > cfg.epochs:
        raise ConfigError(f"averaging.start_epoch={avg.start_epoch} is after the last epoch "
                          f"(epochs={cfg.epochs}); nothing would be averaged: lower it or raise epochs")
    target = cfg.optimizer.get("_target_")
    if target in FULL_BATCH_ONLY and cfg.batch_size != "full":
        raise ConfigError(f"optimizer {target} is a full-batch method but batch_size={cfg.batch_size}; "
                          "set batch_size=full")
    if target in FULL_BATCH_ADVISED and cfg.batch_size != "full":
        log.warning("optimizer %s is a full-batch method: with batch_size=%s its sign-based step "
                    "sizes follow minibatch noise; set batch_size=full for the method as designed",
                    target, cfg.batch_size)
    if target in FULL_BATCH_ONLY and cfg.precision == "fp16":
        raise ConfigError("optimizer=lbfgs cannot train with precision=fp16: its line search "
                          "cannot use a grad scaler; use precision=fp32 or bf16")
    plateau = str(cfg.scheduler.get("_target_", "")).endswith("ReduceLROnPlateau")
    if plateau and cfg.schedule.interval != "epoch":
        raise ConfigError("scheduler=plateau reads the validation loss once an epoch: "
                          f"schedule.interval={cfg.schedule.interval!r} must be 'epoch'")
    from trainer.runtime.device import resolve_device  # cuda without CUDA: its own message

    device = resolve_device(cfg.device)
    if cfg.precision == "fp16" and device.type != "cuda":
        raise ConfigError(
            f"precision=fp16 needs CUDA (fp16 on the CPU is slow and loses small gradients) but the "
            f"run is on {device}; use precision=bf16 on the CPU, or precision=fp32")


__all__ = ["FULL_BATCH_ADVISED", "FULL_BATCH_ONLY", "check_loaded", "check_monitor", "check_node",
           "check_optimization", "check_task", "check_values", "config_dir", "did_you_mean", "known_task",
           "static_monitor", "validate"]
