"""The configs: their schema and value checks, the checks every config passes before any work
(`validate`), the command-line override checks, and `build`, the one place that makes objects."""

from trainer.config.validate import config_dir, validate

__all__ = ["config_dir", "validate"]
