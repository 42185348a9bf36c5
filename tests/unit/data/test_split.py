import numpy as np
import pytest
import torch

from trainer.data import Source, fit_preprocessor, load_source, make_splits
from trainer.data.preprocess import load_preprocessor
from trainer.runtime.errors import ConfigError, DataError


def toy_source(n=100, d=3, task="classification", **own_splits):
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 3.0, size=(n, d)).astype(np.float32)
    y = rng.integers(0, 4, size=n) if task == "classification" else rng.normal(size=n)
    return Source(x=x, y=y, task=task, **own_splits)


def test_split_sizes_disjoint_and_reproducible():
    src = toy_source(200)
    src.x[:, 0] = np.arange(200)  # an id column to check disjointness
    s = make_splits(src, val_fraction=0.1, test_fraction=0.2, seed=3)
    assert s.sizes() == {"train": 140, "val": 20, "test": 40}
    ids = [set(t[:, 0].int().tolist()) for t in (s.x_train, s.x_val, s.x_test)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert set().union(*ids) == set(range(200))
    again = make_splits(src, val_fraction=0.1, test_fraction=0.2, seed=3)
    assert torch.equal(again.x_val, s.x_val)
    other = make_splits(src, val_fraction=0.1, test_fraction=0.2, seed=4)
    assert not torch.equal(other.x_val, s.x_val)


def test_own_test_split_is_used():
    src = toy_source(100, x_test=np.zeros((7, 3), np.float32), y_test=np.zeros(7, np.int64))
    s = make_splits(src, val_fraction=0.2, test_fraction=0.5, seed=0)
    assert s.sizes() == {"train": 80, "val": 20, "test": 7}
    assert s.x_test.abs().sum() == 0


def test_bad_fractions_and_empty_split(cfg_factory, tmp_path):
    from trainer.run import run  # fractions are config values, checked before any data is read

    with pytest.raises(ConfigError, match="val_fraction"):
        run(cfg_factory("data.val_fraction=0.6", "data.test_fraction=0.5"), out_dir=tmp_path)
    with pytest.raises(DataError, match="validation split is empty"):
        make_splits(toy_source(10), val_fraction=0.01, test_fraction=0.2, seed=0)


def test_standardize_uses_train_statistics_only():
    s = make_splits(toy_source(300), val_fraction=0.2, test_fraction=0.2, seed=0)
    x_val_raw = s.x_val.clone()
    prep = fit_preprocessor("standardize", s.x_train)
    z = prep(s.x_train)
    assert torch.allclose(z.mean(0), torch.zeros(3), atol=1e-5)
    # The lectures' sigma is the population std (1/N).
    assert torch.allclose(z.std(0, correction=0), torch.ones(3), atol=1e-5)
    mean, std = s.x_train.mean(0), s.x_train.std(0, correction=0)
    assert torch.allclose(prep(x_val_raw), (x_val_raw - mean) / std, atol=1e-5)
    # Val statistics did not leak: standardized val is not exactly centred.
    assert prep(x_val_raw).mean(0).abs().max() > 1e-3
    restored = load_preprocessor(prep.state_dict())
    assert torch.equal(restored(x_val_raw), prep(x_val_raw))


def test_constant_feature_does_not_become_nan():
    x = torch.tensor([[1.0, 2.0], [1.0, 4.0]])
    assert torch.isfinite(fit_preprocessor("standardize", x)(x)).all()


def test_digits_source():
    from sklearn.datasets import load_digits

    src = load_source("digits")
    assert src.x.shape == (1797, 64) and src.task == "classification"
    assert set(np.unique(src.y)) == set(range(10))
    bunch = load_digits()  # the table read without importing scikit-learn is scikit-learn's data
    assert (src.x == bunch.data).all() and (src.y == bunch.target).all()
    assert src.x.dtype == np.float32 and src.y.dtype == np.int64
    with pytest.raises(ConfigError, match="not a known data set"):
        load_source("digitz")
