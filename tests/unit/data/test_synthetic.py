"""Synthetic sets: generated from a seed, the shapes and classes they promise, the documented formula."""

import numpy as np
import pytest

from trainer.data import load_source
from trainer.data.synthetic import SYNTHETIC

CLASSES = {"spirals": 2, "circles": 2, "xor": 2, "gaussians": 3}


@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_reproducible_from_the_seed(name):
    a, b = load_source(name, n_samples=300, seed=1), load_source(name, n_samples=300, seed=1)
    c = load_source(name, n_samples=300, seed=2)
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    assert not np.array_equal(a.x, c.x)
    assert len(a.x) == 300 and a.x.dtype == np.float32


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_classification_sets_are_2d_and_balanced(name):
    src = load_source(name, n_samples=301)
    assert src.task == "classification" and src.x.shape == (301, 2)
    counts = np.bincount(src.y)
    assert len(counts) == CLASSES[name] and counts.max() - counts.min() <= (1 if name != "xor" else 60)


def test_classes_option():
    assert set(load_source("spirals", classes=4).y) == {0, 1, 2, 3}
    assert set(load_source("gaussians", classes=5).y) == set(range(5))


def test_circles_and_xor_follow_their_definitions():
    circles = load_source("circles", noise=0.0, factor=0.3)
    radius = np.linalg.norm(circles.x, axis=1)
    assert np.allclose(radius, np.where(circles.y == 0, 1.0, 0.3), atol=1e-6)
    xor = load_source("xor", noise=0.0)
    assert np.array_equal(xor.y, (xor.x[:, 0] * xor.x[:, 1] > 0).astype(np.int64))


@pytest.mark.parametrize("dim", [1, 4])
def test_regression_formula(dim):
    src = load_source("regression", n_samples=500, dim=dim, noise=0.0)
    assert src.task == "regression" and src.x.shape == (500, dim) and src.y.shape == (500,)
    assert np.allclose(src.y, np.sin(np.pi * src.x).sum(1) / np.sqrt(dim), atol=1e-5)
    assert src.x.min() >= -2 and src.x.max() <= 2
    noisy = load_source("regression", n_samples=5000, dim=dim, noise=0.5)
    residual = noisy.y - np.sin(np.pi * noisy.x).sum(1) / np.sqrt(dim)
    assert residual.std() == pytest.approx(0.5, rel=0.05)


def test_seed_defaults_to_the_split_seed(cfg_factory):
    assert cfg_factory("data=spirals").data.seed == 0
    assert cfg_factory("data=spirals", "data.split_seed=5").data.seed == 5
    assert cfg_factory("data=spirals", "data.split_seed=5", "data.seed=2").data.seed == 2
