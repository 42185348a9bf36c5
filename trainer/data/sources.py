"""Data sources by name. A source returns whole arrays; splitting happens elsewhere."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial

import numpy as np

from trainer.data.base import TASKS, Source, check_source
from trainer.data.files import load_csv, load_npz
from trainer.data.synthetic import SYNTHETIC
from trainer.data.vision import VISION, load_vision
from trainer.errors import ConfigError

__all__ = ["SOURCES", "TASKS", "Source", "load_source"]


def load_digits() -> Source:
    """The 8x8 handwritten digits that scikit-learn ships (1,797 images, 10 classes), no network."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    return Source(
        x=bunch.data.astype(np.float32), y=bunch.target.astype(np.int64), task="classification"
    )


SOURCES: dict[str, Callable[..., Source]] = {
    "digits": load_digits,
    **{name: partial(load_vision, name) for name in VISION},
    "csv": load_csv,
    "npz": load_npz,
    **SYNTHETIC,
}


def load_source(name: str, **options) -> Source:
    """Load the source registered as `name` with its own options (e.g. a path), and check it."""
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
    source = loader(**options)
    check_source(source, str(options.get("path") or f"data set {name!r}"))
    return source
