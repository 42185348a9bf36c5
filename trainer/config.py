"""Where the configs live, and the checks every config passes before any work starts."""

from __future__ import annotations

import difflib
import logging
import secrets
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from models.mlp import ACTIVATIONS, BIAS_INITS, INITS, NORM_POSITIONS, NORMS
from trainer.accel import PRECISIONS
from trainer.averaging import AVERAGING
from trainer.data.base import TASKS
from trainer.data.preprocess import PREPROCESS
from trainer.device import DEVICES
from trainer.errors import ConfigError
from trainer.stopping import resolve_monitor

log = logging.getLogger(__name__)

TEST_ON = ("best", "last")
# What `monitor` may name: the validation metrics fit() produces (val/acc for classification only).
MONITORS = ("auto", "val/loss", "val/acc")
# Data sets whose task is fixed by their name; the others are classification, unless read from a file.
REGRESSION_SETS = ("regression",)
# Full-batch methods: L-BFGS's line search needs the same loss at every evaluation (rejected with
# minibatches); Rprop's sign rule is defeated by minibatch noise (a warning).
FULL_BATCH_ONLY = ("torch.optim.LBFGS",)
FULL_BATCH_ADVISED = ("torch.optim.Rprop",)
# Optimizer and scheduler arguments that take words; every other argument is a number, a list of
# numbers, a bool or null (torch checks the ranges; run() reports its complaints as ConfigError).
WORD_ARGS = ("_target_", "interval", "line_search_fn", "mode", "threshold_mode")


def config_dir() -> str:
    """The configs: inside the installed package, or `configs/` beside it in a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "configs", here.parent / "configs"):
        if (candidate / "config.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"no configs/config.yaml found beside {here}; the installation is broken")


_RUN_ID = secrets.token_hex(3)


def hydra_subdir(resume: object, ckpt: object) -> str:
    """Where Hydra writes a job's config files: `.hydra`, or a pending folder for a resume."""
    return f".hydra/pending-{_RUN_ID}" if resume is True or ckpt else ".hydra"


def register_resolvers() -> None:
    """`${run_id:}`: a random token per process, so two runs started in one second never share an
    output directory (Hydra's `${now:...}` has one-second resolution). `${trainer_hydra_subdir:}`:
    see `hydra_subdir`."""
    if not OmegaConf.has_resolver("run_id"):
        OmegaConf.register_new_resolver("run_id", lambda: _RUN_ID)
    if not OmegaConf.has_resolver("trainer_hydra_subdir"):
        OmegaConf.register_new_resolver("trainer_hydra_subdir", hydra_subdir)


register_resolvers()


def known_keys(path: Path) -> set[str]:
    """Top-level keys a config file declares, with the groups of its defaults list."""
    conf = OmegaConf.load(path)
    groups = set()
    for entry in conf.get("defaults", []):
        if isinstance(entry, DictConfig | dict):
            groups.update(k.split("/")[-1].split("@")[0].replace("override ", "") for k in entry)
    return (set(conf) - {"defaults", "hydra"}) | groups


def _check_keys(cfg: DictConfig) -> None:
    """Catch keys that no config declares, e.g. a typo in an experiment file (`epoch: 5`)."""
    root = Path(config_dir())
    for node, known in ((cfg, known_keys(root / "config.yaml") | {"experiment"}),
                        (cfg.model, known_keys(root / "model" / "mlp.yaml"))):
        unknown = sorted(set(node) - known)
        if unknown:
            where = "" if node is cfg else "model."
            raise ConfigError(f"unknown config key {where}{unknown[0]}: it is not one of "
                              f"{sorted(known)}; check its spelling in the command line or "
                              "the experiment file")


def did_you_mean(value: object, allowed: tuple[str, ...] | list[str] | set[str], prefix: str = "",
                 suffix: str = "") -> str:
    """' (did you mean PREFIX+X+SUFFIX?)' for the allowed word X closest to `value`, or ''."""
    close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1, cutoff=0.5)
    return f" (did you mean {prefix}{close[0]}{suffix}?)" if close else ""


def _choice(key: str, value: object, allowed: tuple[str, ...] | list[str]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not allowed{did_you_mean(value, allowed)}; "
                          f"choose one of {list(allowed)}")


def known_task(data: DictConfig) -> str | None:
    """The data set's task when its config fixes it, None when only its file can tell (task: auto)."""
    if data.get("task", "auto") != "auto":
        return str(data.task)
    if data.name in REGRESSION_SETS:
        return "regression"
    return None if "path" in data else "classification"


def static_monitor(cfg: DictConfig) -> str | None:
    """`monitor` resolved without loading data (None: `auto` on a file whose task is not known yet)."""
    task = known_task(cfg.data)
    if cfg.monitor == "auto" and task is None:
        return None
    return resolve_monitor(str(cfg.monitor), task or "classification")


def check_monitor(monitor: object, task: str | None, data_name: str) -> None:
    """`monitor` must name a metric the run produces: val/acc only exists for classification."""
    _choice("monitor", monitor, MONITORS)
    if task == "regression" and monitor == "val/acc":
        raise ConfigError(f"monitor={monitor} needs classes, but data {data_name!r} is a regression "
                          "task (it has val/loss only); use monitor=val/loss or monitor=auto")


def _positive(key: str, value: object, kind: type = int) -> None:
    ok = isinstance(value, kind | int) and not isinstance(value, bool) and value > 0
    if not ok:
        raise ConfigError(f"{key}={value!r} must be a positive {kind.__name__}")


def _optional(key: str, value: object, kind: type = int) -> None:
    if value is not None:
        _positive(key, value, kind)


def _at_least(key: str, value: object, low: float, below: float = float("inf")) -> None:
    ok = isinstance(value, float | int) and not isinstance(value, bool) and low <= value < below
    if not ok:
        raise ConfigError(f"{key}={value!r} must be a number in [{low}, {below})")


def _whole(key: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"{key}={value!r} must be a whole number >= 0")


def validate_optimization(cfg: DictConfig) -> None:
    """The optimizer/batch pairing, schedule, warm-up, averaging and stopping keys."""
    for group in ("optimizer", "scheduler"):
        for key, value in cfg[group].items():
            if isinstance(value, str) and key not in WORD_ARGS:
                raise ConfigError(f"{group}.{key}={value!r} must be a number")
    target = cfg.optimizer.get("_target_")
    if target in FULL_BATCH_ONLY and cfg.batch_size != "full":
        raise ConfigError(f"optimizer {target} is a full-batch method but batch_size={cfg.batch_size}; "
                          "set batch_size=full")
    if target in FULL_BATCH_ADVISED and cfg.batch_size != "full":
        log.warning("optimizer %s is a full-batch method: with batch_size=%s its sign-based step "
                    "sizes follow minibatch noise; set batch_size=full for the method as designed",
                    target, cfg.batch_size)
    _choice("scheduler.interval", cfg.scheduler.interval, ("epoch", "step"))
    plateau = str(cfg.scheduler.get("_target_", "")).endswith("ReduceLROnPlateau")
    if plateau and cfg.scheduler.interval != "epoch":
        raise ConfigError("scheduler=plateau reads the validation loss once an epoch: "
                          f"scheduler.interval={cfg.scheduler.interval!r} must be 'epoch'")
    _whole("warmup_steps", cfg.warmup_steps)
    if not (isinstance(cfg.warmup_start_factor, float | int) and 0 < cfg.warmup_start_factor <= 1):
        raise ConfigError(f"warmup_start_factor={cfg.warmup_start_factor!r} must lie in (0, 1]")
    _optional("grad_clip", cfg.grad_clip, float)
    _optional("max_steps", cfg.max_steps)
    if cfg.divergence_factor is not None:
        _at_least("divergence_factor", cfg.divergence_factor, 1)
    _optional("early_stopping.patience", cfg.early_stopping.patience)
    _at_least("early_stopping.min_delta", cfg.early_stopping.min_delta, 0)
    _at_least("regularization.l1", cfg.regularization.l1, 0)
    _at_least("regularization.l2", cfg.regularization.l2, 0)
    if not isinstance(cfg.regularization.biases, bool):
        raise ConfigError(f"regularization.biases={cfg.regularization.biases!r} must be true or false")

    avg = cfg.averaging
    _choice("averaging.kind", avg.kind, AVERAGING)
    if avg.kind == "none":
        return
    _positive("averaging.start_epoch", avg.start_epoch)
    if avg.start_epoch > cfg.epochs:
        raise ConfigError(f"averaging.start_epoch={avg.start_epoch} is after the last epoch "
                          f"(epochs={cfg.epochs}); nothing would be averaged: lower it or raise epochs")
    if avg.kind == "poly":
        _at_least("averaging.gamma", avg.gamma, 0)
    if avg.kind == "ema":
        _at_least("averaging.decay", avg.decay, 0, 1)
    if avg.kind == "swa":
        _optional("averaging.swa_lr", avg.swa_lr, float)
        _positive("averaging.anneal_epochs", avg.anneal_epochs)
        _choice("averaging.anneal_strategy", avg.anneal_strategy, ("cos", "linear"))


def validate(cfg: DictConfig) -> None:
    """Check every value the run uses; raise `ConfigError` naming the key and the allowed values."""
    _check_keys(cfg)
    _choice("device", cfg.device, [*DEVICES, *(f"cuda:{i}" for i in range(16))])
    _positive("epochs", cfg.epochs)
    if isinstance(cfg.batch_size, str) and cfg.batch_size != "full":
        raise ConfigError(f"batch_size={cfg.batch_size!r} must be a positive whole number or 'full' "
                          "(full-batch gradient descent)" + did_you_mean(cfg.batch_size, ["full"]))
    if cfg.batch_size != "full":
        _positive("batch_size", cfg.batch_size)
    _choice("test_on", cfg.test_on, TEST_ON)
    if cfg.threads != "auto":
        _positive("threads", cfg.threads)
    _positive("log_every_n_steps", cfg.log_every_n_steps)
    _positive("nan_check_every_n_steps", cfg.nan_check_every_n_steps)
    _positive("checkpoint_every_n_epochs", cfg.checkpoint_every_n_epochs)
    _positive("log_layer_stats_every_n_epochs", cfg.log_layer_stats_every_n_epochs)
    for key in ("resume", "drop_last", "progress", "compile", "cuda_graphs", "tf32", "log_layer_stats"):
        if not isinstance(cfg[key], bool):
            raise ConfigError(f"{key}={cfg[key]!r} must be true or false")
    if cfg.ckpt is not None and not isinstance(cfg.ckpt, str):
        raise ConfigError(f"ckpt={cfg.ckpt!r} must be the path of a checkpoint or run directory")
    check_monitor(cfg.monitor, known_task(cfg.data), cfg.data.name)

    m = cfg.model
    _choice("model.activation", m.activation, sorted(ACTIVATIONS))
    _choice("model.init", m.init, INITS)
    _choice("model.bias_init", m.bias_init, BIAS_INITS)
    _choice("model.norm", m.norm, list(NORMS))
    _choice("model.norm_position", m.norm_position, NORM_POSITIONS)
    if not isinstance(m.depth, int) or isinstance(m.depth, bool) or m.depth < 0:
        raise ConfigError(f"model.depth={m.depth!r} must be a whole number >= 0 (0: a linear model)")
    widths = m.width if isinstance(m.width, ListConfig) else [m.width]
    for w in widths:
        _positive("model.width", w)
    if isinstance(m.width, ListConfig) and len(m.width) != m.depth:
        raise ConfigError(
            f"model.width lists {len(m.width)} widths but model.depth={m.depth}; "
            f"set model.depth={len(m.width)} or give {m.depth} widths"
        )
    if not (0 <= m.dropout < 1):
        raise ConfigError(f"model.dropout={m.dropout} must lie in [0, 1)")
    _positive("model.init_std", m.init_std, float)

    lr = cfg.optimizer.get("lr")
    if lr is not None:
        _positive("optimizer.lr", lr, float)
    validate_data(cfg.data)
    validate_optimization(cfg)
    _choice("precision", cfg.precision, list(PRECISIONS))


def check_batch_norm(norm: str, n_train: int, batch_size: int, drop_last: bool, world: int = 1) -> None:
    """BatchNorm in training mode needs 2 samples a batch: refuse a run with a batch of one on a rank
    (batch_size=1, or an epoch's last partial batch of one sample), before any work."""
    if norm != "batch":
        return
    sizes = [batch_size] + ([n_train % batch_size] if n_train % batch_size and not drop_last else [])
    per_rank = [s // world for s in sizes if s >= world]  # as trainer.loop.shard_batches splits them
    if min(per_rank, default=2) < 2:
        shared = f", shared by {world} processes," if world > 1 else ""
        raise ConfigError(f"model.norm=batch needs at least 2 samples in every batch, but with "
                          f"batch_size={batch_size} on {n_train} training samples{shared} a batch has "
                          "1 sample; use a larger batch_size, drop_last=true, or model.norm=layer "
                          "(which normalizes each sample on its own)")


def validate_data(d: DictConfig) -> None:
    """The data keys; a data set's loader sees only those its config file has (see configs/data/)."""
    _choice("data.preprocess", d.preprocess, PREPROCESS)
    if "whiten_eps" in d:
        _positive("data.whiten_eps", d.whiten_eps, float)
    if "task" in d:
        _choice("data.task", d.task, ("auto", *TASKS))
    for key in ("n_samples", "dim"):
        if key in d:
            _positive(f"data.{key}", d[key])
    if "classes" in d and not (isinstance(d.classes, int) and d.classes >= 2):
        raise ConfigError(f"data.classes={d.classes!r} must be a whole number >= 2")
    if "noise" in d and not (isinstance(d.noise, int | float) and d.noise >= 0):
        raise ConfigError(f"data.noise={d.noise!r} must be a number >= 0 (the std of the noise)")
    if "factor" in d and not (isinstance(d.factor, int | float) and 0 < d.factor < 1):
        raise ConfigError(f"data.factor={d.factor!r} must lie in (0, 1): the inner circle's radius")
    if "seed" in d and not (isinstance(d.seed, int) and d.seed >= 0):
        raise ConfigError(f"data.seed={d.seed!r} must be a whole number >= 0")
    if "download" in d:
        _choice("data.download", d.download, (True, False))
    if "path" in d and not d.path:
        raise ConfigError(f"data.path is required for data={d.name}: give the file, "
                          f"e.g. data={d.name} data.path=my_data.{d.name}")
    if "delimiter" in d and not (isinstance(d.delimiter, str) and (len(d.delimiter) == 1
                                                                   or d.delimiter == "auto")):
        raise ConfigError(f"data.delimiter={d.delimiter!r} must be one character, e.g. ',' or ';', "
                          "or auto (detected from the file)")
    if "header" in d:
        _choice("data.header", d.header, ("auto", True, False))
