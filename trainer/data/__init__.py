"""Data: load a source, split it into train/val/test, preprocess with train statistics only."""

from trainer.data.preprocess import Standardizer, fit_preprocessor
from trainer.data.sources import SOURCES, Source, load_source
from trainer.data.split import Splits, make_splits

__all__ = [
    "SOURCES",
    "Source",
    "Splits",
    "Standardizer",
    "fit_preprocessor",
    "load_source",
    "make_splits",
]
