"""What every data source returns, and the checks a source passes before any training starts."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from trainer.runtime.errors import DataError

log = logging.getLogger(__name__)

TASKS = ("classification", "regression")
PAIRS = (("x", "y"), ("x_val", "y_val"), ("x_test", "y_test"))


@dataclass
class Source:
    """Features and targets as numpy arrays, with the data set's own splits where it has them.

    Images stay uint8 (a quarter of the memory of float32); the features are `x * x_scale`.
    """

    x: np.ndarray  # (N, D) float, or uint8 pixels
    y: np.ndarray  # (N,) int64 labels 0..K-1, or (N,) / (N, K) float targets
    task: str
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    x_scale: float = 1.0

    def pairs(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """(name, x, y) of every split the source has: its data, then its own val and test."""
        return [(xn, getattr(self, xn), getattr(self, yn)) for xn, yn in PAIRS
                if getattr(self, xn) is not None]


def first_bad(a: np.ndarray) -> tuple[int, int]:
    """(row, column) of the first NaN or infinite value of a 1-D or 2-D array."""
    row, *col = np.argwhere(~np.isfinite(a))[0]
    return int(row), int(col[0]) if col else 0


# Whole-number targets with more distinct values than this, and more than one per
# SAMPLES_PER_CLASS samples, are quantities (counts, scores), not class labels.
MAX_AUTO_CLASSES = 20
SAMPLES_PER_CLASS = 10


def infer_task(y: np.ndarray, where: str, name: str = "y", text: bool = False) -> str:
    """`data.task=auto`: whole numbers are class labels, unless they take so many distinct values for
    the number of samples that they are a quantity (scikit-learn's diabetes: 214 values in 442
    rows); anything else is regression. A quantity read as regression is said in the log.

    Whole numbers are an integer dtype, or, for `text` read from a file without dtypes (CSV),
    finite floats without a fractional part."""
    whole = y.dtype.kind in "iub" or (text and y.ndim == 1 and bool(np.isfinite(y).all())
                                      and bool((y == np.round(y)).all()))
    if not whole or y.ndim != 1:
        return "regression"
    distinct = len(np.unique(y))
    if distinct > MAX_AUTO_CLASSES and distinct * SAMPLES_PER_CLASS > len(y):
        log.warning("%s: %s holds whole numbers with %d distinct values in %d samples (more than %d, "
                    "and more than one per %d samples), so it is read as a quantity: regression. "
                    "Set data.task=classification if they are class labels", where, name, distinct,
                    len(y), MAX_AUTO_CLASSES, SAMPLES_PER_CLASS)
        return "regression"
    return "classification"


def resolve_task(y: np.ndarray, task: str, where: str, name: str = "y",
                 text: bool = False) -> tuple[np.ndarray, str]:
    """Targets converted for `task` (classification: int64 labels; regression: float32).

    `task="auto"` infers it with `infer_task`.
    """
    if task == "auto":
        task = infer_task(y, where, name, text)
    if task == "regression":
        return y.astype(np.float32), task
    if y.ndim != 1:
        raise DataError(f"{where}: classification needs one label per sample, but {name} has shape "
                        f"{y.shape}; set data.task=regression for several targets per sample")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all():
            row, _ = first_bad(y)
            raise DataError(f"{where}: {name} has NaN or infinite values (first at row {row}); "
                            "remove those samples or fill them in")
        if not (y == np.round(y)).all():
            raise DataError(f"{where}: data.task=classification needs whole-number labels, but {name} "
                            f"has values such as {y[y != np.round(y)][0]}; "
                            "set data.task=regression to predict a quantity")
    return y.astype(np.int64), task


def check_source(source: Source, where: str) -> None:
    """Raise `DataError` naming `where` for anything that would fail or mislead training."""
    if source.task not in TASKS:
        raise DataError(f"{where}: task {source.task!r} is not one of {list(TASKS)}")
    dims = set()
    for xn, x, y in source.pairs():
        yn = "y" + xn[1:]
        if y is None:
            raise DataError(f"{where}: {xn} has no {yn}; give both arrays or neither")
        if x.ndim != 2:
            raise DataError(f"{where}: {xn} must be a 2-D array (samples, features), not shape {x.shape}")
        if len(x) != len(y):
            raise DataError(f"{where}: {xn} has {len(x)} samples but {yn} has {len(y)}; "
                            "they must have one target per sample")
        dims.add(x.shape[1])
        for name, a in ((xn, x), (yn, y)):
            if a.dtype.kind == "f" and not np.isfinite(a).all():
                row, col = first_bad(a)
                raise DataError(f"{where}: {name} has {int((~np.isfinite(a)).sum())} NaN or infinite "
                                f"values (first at row {row}, column {col}); remove those samples or "
                                "fill them in")
    for xn, yn in PAIRS[1:]:
        if getattr(source, xn) is None and getattr(source, yn) is not None:
            raise DataError(f"{where}: {yn} has no {xn}; give both arrays or neither")
    if len(dims) > 1:
        raise DataError(f"{where}: the splits have different numbers of features {sorted(dims)}; "
                        "every split needs the same columns")
    if source.task == "classification":
        _check_labels(source, where)


def _check_labels(source: Source, where: str) -> None:
    """Labels are 0..K-1, all K present in the training data; val/test labels are among them."""
    labels = np.unique(source.y)
    if len(labels) == 1:  # a 1-output model would score accuracy 1.0 without learning anything
        raise DataError(f"{where}: every training label is {labels[0]}, a single class: there is "
                        "nothing to classify. Check data.target names the column to predict, or add "
                        "samples of the other classes (set data.task=regression if y is a quantity)")
    k = int(labels.max()) + 1 if len(labels) else 0
    if len(labels) and (labels.min() < 0 or len(labels) != k):
        raise DataError(
            f"{where}: classification labels must be 0..K-1 with every class present, but y has the "
            f"{len(labels)} labels {_show(labels)}; renumber them 0..{len(labels) - 1} (e.g. with "
            "numpy.unique(y, return_inverse=True)), or set data.task=regression if y is a quantity")
    for name in ("y_val", "y_test"):
        y = getattr(source, name)
        if y is not None and len(y) and (y.min() < 0 or y.max() >= k):
            bad = np.unique(y[(y < 0) | (y >= k)])
            raise DataError(f"{where}: {name} has labels {_show(bad)} that the training labels "
                            f"0..{k - 1} do not have; a model cannot predict a class it never saw")


def _show(labels: np.ndarray, most: int = 8) -> str:
    items = ", ".join(str(v) for v in labels[:most])
    return f"[{items}{', ...' if len(labels) > most else ''}]"

