"""From a config's data node to the three splits on the device, preprocessed with train statistics."""

from __future__ import annotations

import hashlib
from typing import Any

import torch

from trainer.data.preprocess import Preprocessor, check_compatible, fit_preprocessor, load_preprocessor
from trainer.data.sets import DataSet
from trainer.data.sources import load_set
from trainer.data.split import Splits, make_splits
from trainer.data.targets import TargetScaler


def prepare_data(data: DataSet, device: torch.device | str = "cpu", prep_state: dict | None = None,
                 target_state: dict | None = None) -> tuple[Splits, Preprocessor]:
    """Load, split, and preprocess on `device` with statistics of the train split only (or the
    saved statistics `prep_state`, `target_state` of a checkpoint). Regression targets are
    standardized too (`splits.target`), so a loss times its `factor` (trainer.training.losses.Loss)
    is in original units."""
    splits = make_splits(load_set(data), data.val_fraction, data.test_fraction, data.split_seed, device)
    splits.fingerprint = data_fingerprint(splits.x_train, splits.y_train, splits.sizes())
    if prep_state is None:
        prep = fit_preprocessor(data.preprocess, splits.x_train, eps=data.whiten_eps)
    else:
        check_compatible(prep_state, splits.x_train)
        prep = load_preprocessor(prep_state)
    splits.x_train, splits.x_val, splits.x_test = (
        prep(splits.x_train), prep(splits.x_val), prep(splits.x_test))
    if target_state is not None:
        target = TargetScaler.from_state_dict(target_state)
    elif splits.task == "regression":
        target = TargetScaler.fit(splits.y_train)
    else:
        target = TargetScaler.identity()
    splits.y_train, splits.y_val, splits.y_test = (
        target(splits.y_train), target(splits.y_val), target(splits.y_test))
    splits.target = target
    return splits, prep


def data_fingerprint(x: torch.Tensor, y: torch.Tensor, sizes: dict[str, int]) -> dict[str, Any]:
    """Shapes of the splits and a hash of the train split: equal data, equal fingerprint."""
    digest = hashlib.sha1()
    for t in (x, y):
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    return {"sizes": dict(sizes), "train_shape": list(x.shape), "train_sha1": digest.hexdigest()}
