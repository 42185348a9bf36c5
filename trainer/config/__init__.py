"""The configs: the schema, the checks every config passes (`validate`), the command line's override
checks, and `build`, the one place that makes objects. `config_dir`: loaded on first use."""

from __future__ import annotations

from typing import Any

__all__ = ["config_dir"]


def __getattr__(name: str) -> Any:  # `from trainer.config import config_dir` without loading torch
    if name != "config_dir":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from trainer.config.validate import config_dir

    return config_dir
