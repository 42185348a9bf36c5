"""Device resolved once, from a string."""

from __future__ import annotations

import torch

from trainer.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when available, else the CPU; `cuda` without CUDA is a config error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device={name} was asked for but CUDA is not available on this machine; "
                "use device=auto (CUDA when present, else CPU) or device=cpu"
            )
        return torch.device(name)
    raise ConfigError(f"device={name!r} is not known; choose one of {list(DEVICES)} (or cuda:N)")
