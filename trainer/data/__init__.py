"""Data: load a source, split it into train/val/test, preprocess with train statistics only."""

from trainer.data.base import Source
from trainer.data.preprocess import (
    Standardizer,
    Whitener,
    check_compatible,
    fit_preprocessor,
    load_preprocessor,
)
from trainer.data.sources import SOURCES, load_source
from trainer.data.split import Splits, make_splits

__all__ = [
    "SOURCES",
    "Source",
    "Splits",
    "Standardizer",
    "Whitener",
    "check_compatible",
    "fit_preprocessor",
    "load_preprocessor",
    "load_source",
    "make_splits",
]
