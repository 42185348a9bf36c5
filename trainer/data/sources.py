"""Loading a data set by its name outside a config (tests, notebooks): the same classes the
configs' `_target_` names (trainer.data.sets), with the split keys left at their defaults."""

from __future__ import annotations

from typing import Any

from trainer.data.base import Source, check_source
from trainer.data.digits import load_digits
from trainer.data.sets import SCHEMAS, DataSet
from trainer.runtime.errors import ConfigError

__all__ = ["Source", "load_digits", "load_set", "load_source"]


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
