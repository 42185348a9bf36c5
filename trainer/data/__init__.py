"""Data: load a source, split it into train/val/test, preprocess with train statistics only. The
names below load on first use: `trainer.data.sets`, which Hydra registers first, needs no torch."""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "Source": "trainer.data.base",
    "load_source": "trainer.data.sources",
    "Splits": "trainer.data.split",
    "make_splits": "trainer.data.split",
    "prepare_data": "trainer.data.prepare",
    "Standardizer": "trainer.data.preprocess",
    "Whitener": "trainer.data.preprocess",
    "check_compatible": "trainer.data.preprocess",
    "fit_preprocessor": "trainer.data.preprocess",
    "load_preprocessor": "trainer.data.preprocess",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
