"""trainer: train multilayer perceptrons from Hydra configs, on CUDA when available."""

__version__ = "0.1.0"

from trainer import jobs as _jobs  # noqa: E402,F401  registers the resolvers configs/config.yaml names
