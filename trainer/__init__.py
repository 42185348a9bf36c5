"""trainer: train multilayer perceptrons from Hydra configs, on CUDA when available."""

__version__ = "0.1.0"

from trainer import jobs as _jobs  # noqa: E402,F401  registers the resolvers configs/config.yaml names


def __getattr__(name: str):  # `from trainer import Trainer` without loading torch on `import trainer`
    if name in ("Trainer", "FitResult"):
        from trainer import api

        return getattr(api, name)
    raise AttributeError(f"module 'trainer' has no attribute {name!r}")
