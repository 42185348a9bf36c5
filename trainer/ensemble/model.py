"""Ensembles, the notes' bagging and boosting: the combined model, each member's samples, SAMME's
weights. How the members train is in trainer.ensemble.fit; the checks of `ensemble.*` in
trainer.config.ensemble_checks.

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

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import nn

from trainer.config.ensemble_checks import kind_of, size_of

# SAMME's error is clamped to at least this: a member that misclassifies no (weighted) training
# sample gets a large finite alpha, log((1 - EPS) / EPS) + log(C - 1), instead of infinity.
MIN_ERROR = 1e-10


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


def build_predictor(model: DictConfig, ensemble: DictConfig | None, in_dim: int, out_dim: int,
                    classification: bool) -> nn.Module:
    """The network of the `model` node, or an `Ensemble` of `ensemble.members`/`rounds` of them
    (built in turn from torch's generator, so each starts from its own initial weights)."""
    from trainer.config.build import build_model

    kind = kind_of({"ensemble": ensemble})
    if kind == "none":
        return build_model(model, in_dim, out_dim)
    k = size_of(ensemble)
    members = [build_model(model, in_dim, out_dim) for _ in range(k)]
    alphas = torch.ones(k) if kind == "bagging" else torch.zeros(k)
    return Ensemble(members, classification, alphas)


