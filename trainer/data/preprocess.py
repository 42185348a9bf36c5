"""Input preprocessing fitted on the train split only, then applied unchanged to every split.

The notes' recipe: step 1 subtract the mean, step 2 divide by the standard deviation
(`standardize`), step 3 decorrelate the features (`whiten_pca`, `whiten_zca`).
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from trainer.data.sets import PREPROCESS
from trainer.runtime.errors import DataError

WHITEN_EPS = 1e-5  # added to the covariance eigenvalues, relative to the unit variances of step 2


class Standardizer:
    """x <- (x - mean_i) / sigma_i with the population std of the lectures (1/N, not 1/(N-1)).

    Constant features (sigma_i = 0) are only centred, so they do not become NaN.
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean = mean
        self.std = std

    @property
    def in_dim(self) -> int:
        return len(self.mean)

    @classmethod
    def fit(cls, x: torch.Tensor) -> Standardizer:
        mean = x.mean(dim=0)
        std = x.std(dim=0, correction=0)
        return cls(mean, torch.where(std > 0, std, torch.ones_like(std)))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def to(self, device: torch.device) -> Standardizer:
        """The same map (also a subclass's) with its tensors on `device`, for per-batch use there."""
        moved = copy.copy(self)
        for key, value in vars(self).items():
            if isinstance(value, torch.Tensor):
                setattr(moved, key, value.to(device))
        return moved

    def state_dict(self) -> dict:
        return {"kind": "standardize", "mean": self.mean.cpu(), "std": self.std.cpu()}


class Whitener(Standardizer):
    """Steps 1-3: standardize, then z = x_std @ W so that the train split has identity covariance.

    With C = U diag(lambda) U^T the (1/N) covariance of the standardized train split,
    PCA whitening is W = U diag(lambda + eps)^(-1/2) (rotate onto the principal axes, then scale);
    ZCA whitening is W = U diag(lambda + eps)^(-1/2) U^T (symmetric: the whitened data stays
    closest to the input). `eps` keeps near-zero eigenvalues (constant or collinear features)
    from blowing up; directions with lambda << eps are damped rather than scaled to unit variance.
    """

    def __init__(self, kind: str, mean: torch.Tensor, std: torch.Tensor, matrix: torch.Tensor,
                 eps: float) -> None:
        super().__init__(mean, std)
        self.kind, self.matrix, self.eps = kind, matrix, eps

    @classmethod
    def fit(cls, x: torch.Tensor, kind: str = "whiten_zca", eps: float = WHITEN_EPS) -> Whitener:
        std = Standardizer.fit(x)
        z = std(x).double()
        cov = z.T @ z / len(z)  # (D, D); z is centred
        lam, u = torch.linalg.eigh(cov)
        w = u * (lam.clamp(min=0) + eps).rsqrt()  # scales column j of U by 1/sqrt(lambda_j + eps)
        if kind == "whiten_zca":
            w = w @ u.T
        return cls(kind, std.mean, std.std, w.float(), eps)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return super().__call__(x) @ self.matrix.to(x.device)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "kind": self.kind, "matrix": self.matrix.cpu(), "eps": self.eps}


class Identity:
    """No preprocessing; remembers the feature count to check new data against."""

    def __init__(self, in_dim: int) -> None:
        self.in_dim = in_dim

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def state_dict(self) -> dict:
        return {"kind": "none", "in_dim": self.in_dim}


Preprocessor = Standardizer | Whitener | Identity


def fit_preprocessor(kind: str, x_train: torch.Tensor, eps: float = WHITEN_EPS) -> Preprocessor:
    """Fit the preprocessing named `kind` on the training inputs (`eps`: whitening only)."""
    if kind == "standardize":
        return Standardizer.fit(x_train)
    if kind in ("whiten_pca", "whiten_zca"):
        return Whitener.fit(x_train, kind, eps)
    if kind == "none":
        return Identity(x_train.shape[1])
    raise ValueError(f"unknown preprocessing {kind!r}; choose one of {list(PREPROCESS)}")


def load_preprocessor(state: dict) -> Preprocessor:
    """Rebuild a fitted preprocessor from its `state_dict()` (as stored in a checkpoint)."""
    kind = state.get("kind")
    if kind == "standardize":
        return Standardizer(state["mean"], state["std"])
    if kind in ("whiten_pca", "whiten_zca"):
        return Whitener(kind, state["mean"], state["std"], state["matrix"], state["eps"])
    if kind == "none":
        return Identity(state["in_dim"])
    raise DataError(f"the checkpoint's preprocessing {kind!r} is not one of {list(PREPROCESS)}; "
                    "it was written by another version of trainer")


def check_compatible(state: dict, x: torch.Tensor | np.ndarray, where: str = "the data") -> None:
    """Raise `DataError` unless `x` (N, D) fits the checkpoint whose preprocessing state is `state`."""
    expected = load_preprocessor(state).in_dim
    if x.ndim != 2 or x.shape[1] != expected:
        got = f"{x.shape[1]} features per sample" if x.ndim == 2 else f"shape {tuple(x.shape)}"
        raise DataError(f"{where} has {got}, but the checkpoint was trained on {expected} features; "
                        "evaluate it on data with the same columns, in the same order, as its training data")
    if not torch.isfinite(torch.as_tensor(x, dtype=torch.float32)).all():
        raise DataError(f"{where} has NaN or infinite values; remove those samples or fill them in")
