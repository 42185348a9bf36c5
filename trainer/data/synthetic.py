"""Toy problems generated on the fly from a seed, to watch an optimizer at work."""

from __future__ import annotations

import numpy as np

from trainer.data.base import Source


def _rng(seed: int) -> np.random.Generator:
    # A stream of its own: independent of the split's default_rng(split_seed) even for the same seed.
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))


def _classes(n_samples: int, classes: int) -> np.ndarray:
    """Balanced labels 0..classes-1 (sizes differ by at most one)."""
    return np.arange(n_samples) % classes


def _source(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> Source:
    order = rng.permutation(len(x))  # interleave the classes
    return Source(x=x[order].astype(np.float32), y=y[order].astype(np.int64), task="classification")


def spirals(n_samples: int = 1000, classes: int = 2, noise: float = 0.03, seed: int = 0) -> Source:
    """`classes` interleaved spiral arms of 1.5 turns in the unit disc, plus Gaussian noise."""
    rng = _rng(seed)
    y = _classes(n_samples, classes)
    t = np.sqrt(rng.uniform(size=n_samples))  # radius in (0, 1), denser outside like the area
    angle = 2 * np.pi * (1.5 * t + y / classes)
    x = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1)
    return _source(x + noise * rng.normal(size=x.shape), y, rng)


def circles(n_samples: int = 1000, noise: float = 0.1, factor: float = 0.5, seed: int = 0) -> Source:
    """Two concentric circles, radii 1 (class 0) and `factor` (class 1), plus Gaussian noise."""
    rng = _rng(seed)
    y = _classes(n_samples, 2)
    angle = rng.uniform(0, 2 * np.pi, size=n_samples)
    radius = np.where(y == 0, 1.0, factor)
    x = radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return _source(x + noise * rng.normal(size=x.shape), y, rng)


def xor(n_samples: int = 1000, noise: float = 0.1, seed: int = 0) -> Source:
    """Points in [-1, 1]^2, class 1 where x1 * x2 > 0 (the XOR of the signs), plus Gaussian noise."""
    rng = _rng(seed)
    x = rng.uniform(-1, 1, size=(n_samples, 2))
    y = (x[:, 0] * x[:, 1] > 0).astype(np.int64)
    return _source(x + noise * rng.normal(size=x.shape), y, rng)


def gaussians(n_samples: int = 1000, classes: int = 3, noise: float = 1.5, seed: int = 0) -> Source:
    """`classes` Gaussian blobs of std `noise`, centred on a circle of radius 3."""
    rng = _rng(seed)
    y = _classes(n_samples, classes)
    angle = 2 * np.pi * y / classes
    centres = 3 * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return _source(centres + noise * rng.normal(size=centres.shape), y, rng)


def regression(n_samples: int = 1000, dim: int = 1, noise: float = 0.1, seed: int = 0) -> Source:
    """y = sum_j sin(pi x_j) / sqrt(dim) + noise * N(0, 1), x uniform in [-2, 2]^dim."""
    rng = _rng(seed)
    x = rng.uniform(-2, 2, size=(n_samples, dim))
    y = np.sin(np.pi * x).sum(axis=1) / np.sqrt(dim) + noise * rng.normal(size=n_samples)
    return Source(x=x.astype(np.float32), y=y.astype(np.float32), task="regression")


SYNTHETIC = {"spirals": spirals, "circles": circles, "xor": xor, "gaussians": gaussians,
             "regression": regression}
