"""Input preprocessing fitted on the train split only, then applied unchanged to every split."""

from __future__ import annotations

import torch

from trainer.errors import ConfigError

PREPROCESS = ("standardize", "none")


class Standardizer:
    """x <- (x - mean_i) / sigma_i with the population std of the lectures (1/N, not 1/(N-1)).

    Constant features (sigma_i = 0) are only centred, so they do not become NaN.
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean = mean
        self.std = std

    @classmethod
    def fit(cls, x: torch.Tensor) -> Standardizer:
        mean = x.mean(dim=0)
        std = x.std(dim=0, correction=0)
        return cls(mean, torch.where(std > 0, std, torch.ones_like(std)))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def state_dict(self) -> dict:
        return {"kind": "standardize", "mean": self.mean.cpu(), "std": self.std.cpu()}


class Identity:
    """No preprocessing."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def state_dict(self) -> dict:
        return {"kind": "none"}


def fit_preprocessor(kind: str, x_train: torch.Tensor) -> Standardizer | Identity:
    """Fit the preprocessing named `kind` on the training inputs."""
    if kind == "standardize":
        return Standardizer.fit(x_train)
    if kind == "none":
        return Identity()
    raise ConfigError(f"data.preprocess={kind!r} is not known; choose one of {list(PREPROCESS)}")


def load_preprocessor(state: dict) -> Standardizer | Identity:
    """Rebuild a fitted preprocessor from its `state_dict()` (as stored in a checkpoint)."""
    if state["kind"] == "standardize":
        return Standardizer(state["mean"], state["std"])
    return Identity()
