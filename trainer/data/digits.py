"""The 8x8 handwritten digits that scikit-learn ships, read without importing scikit-learn."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from trainer.data.base import Source


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
