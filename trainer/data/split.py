"""Train/validation/test splits, as tensors."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from trainer.data.base import Source
from trainer.data.targets import TargetScaler
from trainer.runtime.errors import DataError


@dataclass
class Splits:
    """The three splits as tensors, plus what the model needs to know about them."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    task: str
    num_classes: int  # 0 for regression
    # Shapes and a hash of the raw train split (trainer.storage.resume.data_fingerprint): equal data, equal
    # fingerprint, so a resume can refuse data that changed since the checkpoint.
    fingerprint: dict | None = None
    # Regression: the map that standardized the targets with train statistics (prepare_data);
    # None: targets as given.
    target: TargetScaler | None = None
    # Where each split's rows came from: split -> (part of the source, row numbers in that part), the
    # part being "data" (the data set's one table, or its training part) or the data set's own "val"
    # or "test" part. `python -m trainer.eval predictions=FILE` writes them beside each prediction.
    rows: dict[str, tuple[str, np.ndarray]] = field(default_factory=dict)

    @property
    def in_dim(self) -> int:
        return self.x_train.shape[1]

    @property
    def out_dim(self) -> int:
        if self.task == "classification":
            return self.num_classes
        return 1 if self.y_train.ndim == 1 else self.y_train.shape[1]

    def to(self, device: torch.device) -> Splits:
        moved = {k: v.to(device) for k, v in vars(self).items() if isinstance(v, torch.Tensor)}
        return replace(self, **moved)  # fingerprint, target: as they are

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.x_train), "val": len(self.x_val), "test": len(self.x_test)}


def _carve(n: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random indices split into (rest, carved) with round(fraction * n) carved."""
    perm = rng.permutation(n)
    k = int(round(fraction * n))
    return perm[k:], perm[:k]


Rows = tuple[np.ndarray, np.ndarray, np.ndarray]  # x, y, and the source rows they are


def _part(source: Source, split: str, kept: Rows, fraction: float,
          rng: np.random.Generator) -> tuple[Rows, tuple[np.ndarray, np.ndarray, tuple[str, np.ndarray]]]:
    """The source's own `split` (val or test) where it has one, else round(fraction * n) rows carved
    at random from `kept`: what stays kept, and the part's x, y and rows (Splits.rows)."""
    own = getattr(source, f"x_{split}")
    if own is not None:
        return kept, (own, getattr(source, f"y_{split}"), (split, np.arange(len(own))))
    x, y, ids = kept
    rest, part = _carve(len(x), fraction, rng)
    return (x[rest], y[rest], ids[rest]), (x[part], y[part], ("data", ids[part]))


def make_splits(source: Source, val_fraction: float, test_fraction: float, seed: int,
                device: torch.device | str = "cpu") -> Splits:
    """Use the source's own val/test splits where it has them, else carve them from its data.

    Fractions are of the whole data set: 0.8/0.1/0.1 for val_fraction=test_fraction=0.1.
    The tensors are made on `device`; compact (uint8) features travel before they become float32.
    """
    rng = np.random.default_rng(seed)
    kept = (source.x, source.y, np.arange(len(source.x)))  # ids: the rows of source.x that x holds
    kept, (x_test, y_test, test_rows) = _part(source, "test", kept, test_fraction, rng)
    # val_fraction is of the whole data, so carve val_fraction / (1 - test_fraction) of the rest.
    share = val_fraction if source.x_test is not None else val_fraction / (1 - test_fraction)
    (x, y, ids), (x_val, y_val, val_rows) = _part(source, "val", kept, share, rng)
    for name, part in (("train", x), ("validation", x_val), ("test", x_test)):
        if len(part) == 0:
            raise DataError(
                f"the {name} split is empty ({len(source.x)} samples with "
                f"data.val_fraction={val_fraction}, data.test_fraction={test_fraction}); "
                "use larger fractions or more data"
            )
    classification = source.task == "classification"
    num_classes = int(max(y.max(), y_val.max(), y_test.max())) + 1 if classification else 0

    def features(a: np.ndarray) -> torch.Tensor:
        t = torch.as_tensor(a).to(device).to(torch.float32)
        return t if source.x_scale == 1 else t * source.x_scale  # e.g. uint8 pixels -> [0, 1]

    def target(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, dtype=torch.int64 if classification else torch.float32).to(device)

    return Splits(
        x_train=features(x),
        y_train=target(y),
        x_val=features(x_val),
        y_val=target(y_val),
        x_test=features(x_test),
        y_test=target(y_test),
        task=source.task,
        num_classes=num_classes,
        rows={"train": ("data", ids), "val": val_rows, "test": test_rows},
    )
