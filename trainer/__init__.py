"""trainer: train multilayer perceptrons from Hydra configs, on CUDA when available."""

__version__ = "0.1.0"
