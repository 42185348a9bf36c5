"""trainer: train multilayer perceptrons from Hydra configs, on CUDA when available."""

# Neither imports torch: startup sets OpenMP's wait policy before torch loads (see there).
from trainer.runtime.resolvers import register_resolvers
from trainer.runtime.startup import __version__  # noqa: F401

register_resolvers()  # the resolvers configs/config.yaml names, before any config is composed


def __getattr__(name: str):  # `from trainer import Trainer` without loading torch on `import trainer`
    if name in ("Trainer", "FitResult"):
        from trainer import api

        return getattr(api, name)
    raise AttributeError(f"module 'trainer' has no attribute {name!r}")
