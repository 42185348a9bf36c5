"""The checks of `ensemble.*` (configs/ensemble/): its kind and schema, and what an ensemble cannot be
combined with; the one that needs the data's task (boosting classifies) is `check_ensemble_task`.
How an ensemble predicts and trains is trainer.ensemble; these read the config alone."""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from trainer.config.nodes import check_node
from trainer.config.schema import GROUP_SCHEMAS
from trainer.runtime.errors import ConfigError

log = logging.getLogger(__name__)

KINDS = ("none", "bagging", "boosting")


def kind_of(cfg: DictConfig | dict) -> str:
    """`ensemble.kind` of a config (a checkpoint's config from before ensembles: none)."""
    node = cfg.get("ensemble") or {}
    return str(node.get("kind", "none"))


def size_of(node: DictConfig | dict) -> int:
    """Members of the ensemble `node`: bagging's `members`, boosting's `rounds`, 1 for none."""
    return int(node.get("members") or node.get("rounds") or 1)


def check_ensemble(cfg: DictConfig) -> None:
    """`ensemble.*` against its schema, and what an ensemble cannot be combined with."""
    node = cfg.get("ensemble")
    kind = kind_of(cfg)
    if kind not in KINDS:
        raise ConfigError(f"ensemble.kind={kind!r} is not allowed; choose ensemble=none, ensemble=bagging "
                          "or ensemble=boosting")
    check_node(node, GROUP_SCHEMAS["ensemble"][kind], "ensemble.")
    if kind == "none":
        return
    which = f"ensemble={kind}"
    if size_of(node) == 1:  # the K = 1 point of an ensemble curve (experiment digits_ensembles)
        one = ("one model on a bootstrap resample of the train split" if kind == "bagging"
               and node.get("split") == "bootstrap" else "one model on the whole train split")
        log.warning("%s with %s=1 trains a single member: %s, not an ensemble; use ensemble=none for "
                    "a plain run", which, "ensemble.members" if kind == "bagging" else "ensemble.rounds", one)
    if kind == "boosting" and cfg.epochs % node.rounds:
        near = node.rounds * max(1, round(cfg.epochs / node.rounds))
        raise ConfigError(f"epochs={cfg.epochs} is not a multiple of ensemble.rounds={node.rounds}: each "
                          f"round trains epochs/rounds epochs; set epochs={near} or change ensemble.rounds")
    if kind == "boosting" and cfg.early_stopping.patience is not None:
        raise ConfigError(f"{which} cannot stop early: within a round the ensemble's validation metric "
                          "does not change (the round's member joins at its end); leave "
                          "early_stopping.patience=null (the best round is still chosen on validation)")
    _check_unsupported(cfg, which)


def check_ensemble_task(cfg: DictConfig, task: str) -> None:
    """Boosting (SAMME) reweights misclassified samples: it needs a classification task."""
    if kind_of(cfg) == "boosting" and task == "regression":
        raise ConfigError(f"ensemble=boosting is multi-class AdaBoost (SAMME), which reweights misclassified "
                          f"samples, but data {cfg.data.name!r} is a regression task; use ensemble=bagging "
                          "(it averages the members' predictions) or ensemble=none")


def _check_unsupported(cfg: DictConfig, which: str) -> None:
    """What the stacked members' training (trainer.training.stacked) does not do."""
    from hydra.utils import get_object

    from trainer.training.stacked import LINEAR_IN_LR  # classes, imported (torch), never built

    optimizer = get_object(cfg.optimizer._target_)
    if not (isinstance(optimizer, type) and issubclass(optimizer, LINEAR_IN_LR)):
        raise ConfigError(f"{which} trains its members with a member-wise optimizer, which "
                          f"{optimizer.__name__} is not (its update is not linear in the learning rate); "
                          f"use one of {', '.join(c.__name__.lower() for c in LINEAR_IN_LR)}")
    unsupported = {
        f"averaging={str(cfg.averaging.get('_target_', '')).rsplit('.', 1)[-1]}":
            ("_target_" in cfg.averaging, "averaging=none"),
        "model.norm=batch": (cfg.model.norm == "batch", "model.norm=layer or none"),
        f"precision={cfg.precision}": (cfg.precision != "fp32", "precision=fp32"),
        "compile=true": (cfg.compile, "compile=false"),
        "cuda_graphs=true": (cfg.cuda_graphs, "cuda_graphs=false"),
        "regularization": (cfg.regularization.l1 > 0 or cfg.regularization.l2 > 0,
                           "regularization.l1=0 regularization.l2=0 (optimizer.weight_decay works)"),
        "log_layer_stats=true": (cfg.log_layer_stats, "log_layer_stats=false"),
        f"loss={cfg.get('loss', 'auto')}": (cfg.get("loss", "auto") != "auto", "loss=auto"),
    }
    for what, (used, fix) in unsupported.items():
        if used:
            raise ConfigError(f"{which} cannot be combined with {what}: the members train as one stacked "
                              f"model, which does not support it; use {fix}, or ensemble=none")
