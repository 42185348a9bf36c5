"""A source's task: whole-number targets read as classes or as a regression, and a single class refused."""

import logging

import numpy as np
import pytest

from tests.conftest import write_values
from trainer.data import load_source
from trainer.runtime.errors import DataError


def test_many_whole_numbers_are_read_as_regression(tmp_path, caplog):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2))
    counts = np.round(100 + 40 * x[:, 0])  # ~100 distinct whole numbers in 200 rows
    with caplog.at_level(logging.WARNING):
        src = load_source("csv", path=str(write_values(tmp_path / "c.csv", np.c_[x, counts])))
    assert src.task == "regression"
    assert "data.task=classification" in caplog.text and "distinct values" in caplog.text
    labels = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0)  # 3 classes
    path = write_values(tmp_path / "l.csv", np.c_[x, labels])
    assert load_source("csv", path=str(path)).task == "classification"


def test_a_single_class_is_refused(tmp_path):
    path = write_values(tmp_path / "one.csv", np.c_[np.ones((20, 2)), np.zeros(20)])
    with pytest.raises(DataError, match="single class"):
        load_source("csv", path=str(path))
