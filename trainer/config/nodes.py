"""`check_node`: a config node's keys against its schema, and each value against its key's check."""

from __future__ import annotations

from dataclasses import fields, is_dataclass

from omegaconf import DictConfig

from trainer.config.schema import declared
from trainer.runtime.checks import did_you_mean
from trainer.runtime.errors import ConfigError


def check_node(node: DictConfig, schema: type, prefix: str, strict: bool = True) -> None:
    """Every key of `node` is declared by `schema` (unless not `strict`: an optimizer's or scheduler's
    other arguments are for torch to accept), and every value passes its key's check."""
    known = declared(schema)
    for name in node:
        if strict and not str(name).startswith("_") and name not in known:
            where = f"{prefix}{name}"
            raise ConfigError(f"unknown config key {where}{did_you_mean(name, known, prefix)}: it is "
                              f"not one of {sorted(known)}; check its spelling in the command line or "
                              "the experiment file")
    for f in fields(schema):
        check = f.metadata.get("check")
        if check is not None and f.name in node:
            check(f"{prefix}{f.name}", node[f.name])
        elif isinstance(node.get(f.name), DictConfig) and is_dataclass(f.default_factory):
            check_node(node[f.name], f.default_factory, f"{prefix}{f.name}.")  # e.g. early_stopping
