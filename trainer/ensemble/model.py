"""Ensembles, the notes' bagging and boosting: the combined model, each member's samples, SAMME's
weights, and the checks of `ensemble.*`. How the members train is in trainer.ensemble.fit.

The ensemble's prediction is the alpha-weighted mean of its members' predicted probabilities,
`p(c|x) = sum_m alpha_m p_m(c|x) / sum_m alpha_m` (regression: of their predictions), and its
output is `log p` so that the trainer's loss (cross-entropy of log-probabilities is their negative
log-likelihood) and accuracy (argmax) apply to it unchanged. Bagging's alphas are all 1 (the plain
mean); boosting's are SAMME's member weights, 0 for a round not yet trained. For boosting this is
SAMME's probability-weighted vote, `argmax_c sum_m alpha_m p_m(c|x)`, not the hard vote
`argmax_c sum_m alpha_m 1[pred_m(x) = c]`: the two agree when every member is sure of its class,
and the soft form also gives the validation loss a meaning.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from trainer.runtime.errors import ConfigError

log = logging.getLogger(__name__)

KINDS = ("none", "bagging", "boosting")
# SAMME's error is clamped to at least this: a member that misclassifies no (weighted) training
# sample gets a large finite alpha, log((1 - EPS) / EPS) + log(C - 1), instead of infinity.
MIN_ERROR = 1e-10


def kind_of(cfg: DictConfig | dict) -> str:
    """`ensemble.kind` of a config (a checkpoint's config from before ensembles: none)."""
    node = cfg.get("ensemble") or {}
    return str(node.get("kind", "none"))


def size_of(node: DictConfig | dict) -> int:
    """Members of the ensemble `node`: bagging's `members`, boosting's `rounds`, 1 for none."""
    return int(node.get("members") or node.get("rounds") or 1)


# --------------------------------------------------------------------------- each member's samples
def bootstrap_samples(n: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """(k, n): row m holds member m's bootstrap resample, n indices drawn uniformly with replacement."""
    return torch.randint(n, (k, n), generator=generator, device=generator.device)


def disjoint_parts(n: int, k: int, generator: torch.Generator) -> list[torch.Tensor]:
    """k disjoint parts of range(n) that cover it, in random order, sizes n // k or n // k + 1."""
    return list(torch.randperm(n, generator=generator, device=generator.device).tensor_split(k))


def padded(parts: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Parts as (k, L) index rows, L the largest part, and (k, L) loss weights: 1, and 0 where a
    shorter part is padded (the pad points at sample 0 and counts for nothing)."""
    length = max(len(p) for p in parts)
    index = torch.zeros(len(parts), length, dtype=torch.long, device=parts[0].device)
    weight = torch.zeros(len(parts), length, device=parts[0].device)
    for m, part in enumerate(parts):
        index[m, :len(part)] = part
        weight[m, :len(part)] = 1.0
    return index, weight


# --------------------------------------------------------------------------- SAMME
@dataclass(frozen=True)
class Samme:
    """One round of multi-class AdaBoost (SAMME): the member's weighted error, its weight, and the
    samples' new weights (summing to 1)."""

    err: float
    alpha: float
    weights: torch.Tensor


def samme_update(miss: torch.Tensor, weights: torch.Tensor, n_classes: int) -> Samme:
    """err = sum_i w_i miss_i / sum_i w_i; alpha = log((1 - err) / err) + log(C - 1);
    w_i <- w_i exp(alpha miss_i), renormalized. A member no better than chance (err >= 1 - 1/C,
    alpha <= 0) gets alpha 0: it is left out of the prediction and the weights stay as they were."""
    miss = miss.to(weights.dtype)
    err = float((weights * miss).sum() / weights.sum())
    clamped = min(max(err, MIN_ERROR), 1.0)
    alpha = math.log((1 - clamped) / clamped) + math.log(n_classes - 1) if clamped < 1 else 0.0
    if alpha <= 0:
        return Samme(err, 0.0, weights / weights.sum())
    new = weights * torch.exp(alpha * miss)
    return Samme(err, alpha, new / new.sum())


# --------------------------------------------------------------------------- the combined model
class Ensemble(nn.Module):
    """The members and their weights (`alphas`, a buffer: saved with them); see the module's doc."""

    def __init__(self, members: Sequence[nn.Module], classification: bool, alphas: torch.Tensor) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.register_buffer("alphas", alphas.float())
        self.classification = classification
        self.widths = getattr(members[0], "widths", [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, D) -> (B, K)
        outs = torch.stack([m(x) for m in self.members])  # (M, B, K)
        total = self.alphas.sum()
        share = (self.alphas / total).view(-1, 1, 1)  # no host sync: the empty case is a `where`
        if self.classification:
            mixed = torch.logsumexp(outs.log_softmax(-1) + share.log(), dim=0)
            chance = torch.full_like(mixed, -math.log(outs.shape[-1]))
        else:
            mixed = (share * outs).sum(0)
            chance = torch.zeros_like(mixed)
        return torch.where(total > 0, mixed, chance)  # before boosting's first round: chance


def build_predictor(cfg: DictConfig, in_dim: int, out_dim: int, classification: bool) -> nn.Module:
    """The config's model: `model` itself, or an `Ensemble` of `ensemble.members`/`rounds` of them
    (built in turn from torch's generator, so each starts from its own initial weights)."""
    from trainer.config.build import build_model

    kind = kind_of(cfg)
    if kind == "none":
        return build_model(cfg.model, in_dim, out_dim)
    k = size_of(cfg.ensemble)
    members = [build_model(cfg.model, in_dim, out_dim) for _ in range(k)]
    alphas = torch.ones(k) if kind == "bagging" else torch.zeros(k)
    return Ensemble(members, classification, alphas)


def member_report(model: nn.Module, splits: Any, loss: Any) -> list[dict[str, float]]:
    """metrics.json's `members`: each member's own val/test metrics (and alpha), in the weights
    the ensemble was tested with."""
    from trainer.data.targets import original_units
    from trainer.training.loop import evaluate

    if not isinstance(model, Ensemble):
        return []
    classification = splits.task == "classification"
    report = []
    for m, member in enumerate(model.members):
        row = {"alpha": float(model.alphas[m])}
        for split in ("val", "test"):
            x, y = getattr(splits, f"x_{split}"), getattr(splits, f"y_{split}")
            metrics = original_units(evaluate(member, loss, x, y, classification=classification),
                                     loss.factor)
            row.update({f"{split}/{k}": v for k, v in metrics.items()})
        report.append(row)
    return report


# --------------------------------------------------------------------------- checks
def check_ensemble(cfg: DictConfig, task: str | None) -> None:
    """`ensemble.*` against its schema, and what an ensemble cannot be combined with (`task`: the
    data's, None while only its file can tell)."""
    from trainer.config.schema import GROUP_SCHEMAS
    from trainer.config.validate import check_node

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
    if kind == "boosting" and task == "regression":
        raise ConfigError(f"{which} is multi-class AdaBoost (SAMME), which reweights misclassified "
                          f"samples, but data {cfg.data.name!r} is a regression task; use ensemble=bagging "
                          "(it averages the members' predictions) or ensemble=none")
    if kind == "boosting" and cfg.epochs % node.rounds:
        near = node.rounds * max(1, round(cfg.epochs / node.rounds))
        raise ConfigError(f"epochs={cfg.epochs} is not a multiple of ensemble.rounds={node.rounds}: each "
                          f"round trains epochs/rounds epochs; set epochs={near} or change ensemble.rounds")
    if kind == "boosting" and cfg.early_stopping.patience is not None:
        raise ConfigError(f"{which} cannot stop early: within a round the ensemble's validation metric "
                          "does not change (the round's member joins at its end); leave "
                          "early_stopping.patience=null (the best round is still chosen on validation)")
    _check_unsupported(cfg, which)


def _check_unsupported(cfg: DictConfig, which: str) -> None:
    """What the stacked members' training (trainer.training.stacked) does not do."""
    from hydra.utils import get_object

    from trainer.training.stacked import LINEAR_IN_LR

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
