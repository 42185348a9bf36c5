"""Data sources by name. A source returns whole arrays; splitting happens elsewhere."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from trainer.errors import ConfigError

TASKS = ("classification", "regression")


@dataclass
class Source:
    """Features and targets as numpy arrays, with the data set's own splits where it has them."""

    x: np.ndarray  # (N, D) float
    y: np.ndarray  # (N,) int64 labels or (N,) / (N, K) float targets
    task: str
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None


def load_digits() -> Source:
    """The 8x8 handwritten digits that scikit-learn ships (1,797 images, 10 classes), no network."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    return Source(
        x=bunch.data.astype(np.float32), y=bunch.target.astype(np.int64), task="classification"
    )


SOURCES: dict[str, Callable[..., Source]] = {"digits": load_digits}


def load_source(name: str, **options) -> Source:
    """Load the source registered as `name` with its own options (e.g. a path)."""
    if name not in SOURCES:
        raise ConfigError(f"data.name={name!r} is not a known data set; choose one of {sorted(SOURCES)}")
    loader = SOURCES[name]
    accepted = inspect.signature(loader).parameters
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(
            f"data.{unknown[0]} is not an option of data set {name!r}; "
            f"it takes {sorted(accepted) or 'no options'} besides the split keys"
        )
    return loader(**options)
