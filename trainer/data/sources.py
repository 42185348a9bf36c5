"""Loading a data set by its name outside a config (tests, notebooks): the same classes the
configs' `_target_` names (trainer.data.sets), with the split keys left at their defaults."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from trainer.data.base import Source, check_source
from trainer.data.sets import SCHEMAS, DataSet
from trainer.runtime.errors import ConfigError

__all__ = ["Source", "load_digits", "load_set", "load_source"]


def digits_file() -> Path | None:
    """The digits table scikit-learn ships (`sklearn/datasets/data/digits.csv.gz`), found without
    importing scikit-learn (about a second of a run's start-up); None if this version moved it."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    return path if path.is_file() else None


def load_digits() -> Source:
    """The 8x8 handwritten digits that scikit-learn ships (1,797 images, 10 classes), no network:
    its table read directly (64 pixel columns, then the label), as sklearn.datasets.load_digits does."""
    path = digits_file()
    if path is None:
        from sklearn.datasets import load_digits as sk_load_digits

        bunch = sk_load_digits()
        x, y = bunch.data, bunch.target
    else:
        table = np.loadtxt(path, delimiter=",")
        x, y = table[:, :-1], table[:, -1]
    return Source(x=x.astype(np.float32), y=y.astype(np.int64), task="classification")


def load_set(data: DataSet) -> Source:
    """Load the data set that a config's data node built, and check what it holds."""
    source = data.load()
    check_source(source, str(getattr(data, "path", None) or f"data set {data.name!r}"))
    return source


def load_source(name: str, **options: Any) -> Source:
    """Load the data set `name` (a configs/data/ file's name) with its own options, e.g. a path."""
    if name not in SCHEMAS:
        raise ConfigError(f"data.name={name!r} is not a known data set; choose one of {sorted(SCHEMAS)}")
    split = {"val_fraction": 0.15, "test_fraction": 0.15, "split_seed": 0, "preprocess": "standardize"}
    try:
        data = SCHEMAS[name](name=name, **split, **options)
    except TypeError as exc:
        raise ConfigError(f"data set {name!r} does not take these options: {exc}") from None
    return load_set(data)
