"""A run's hyperparameters for TensorBoard's HParams dashboard: its config flattened
(trainer.config.flat), with the same keys in every job of a sweep (from the schema)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from trainer.config.flat import HParamValue, flatten_hparams


def known_hparams() -> dict[str, HParamValue]:
    """Every key that an option of a config group can set (from the schema), with a neutral value of
    its type: so sgd and adam jobs both have `optimizer.momentum` and `optimizer.betas` columns."""
    from trainer.config.schema import GROUP_SCHEMAS
    from trainer.runtime.checks import Flag

    known: dict[str, HParamValue] = {}
    for group, schemas in GROUP_SCHEMAS.items():
        known[group] = "none"  # the group's own column names its `_target_`
        for schema in schemas.values():
            for f in fields(schema):
                if f.name.startswith("_"):
                    continue
                check, default = f.metadata.get("check"), f.default
                number = f.metadata.get("number") or (isinstance(default, int | float)
                                                      and not isinstance(default, bool))
                neutral = False if isinstance(check, Flag) or isinstance(default, bool) else (
                    float("nan") if number else "")
                known.setdefault(f"{group}.{f.name}", neutral)
    return known


def run_hparams(resolved: Mapping[str, Any], choices: Mapping[str, str] | None = None
                ) -> dict[str, HParamValue]:
    """A job's hyperparameters with the same keys in every job of a sweep: its own flattened
    config, plus every key that another option of its config groups has, with a neutral value.
    `choices` (Hydra's `runtime.choices`: `optimizer: momentum`) names each group's column by the
    config chosen, which tells `sgd` from `momentum` where the class (`SGD`) would not."""
    flat = flatten_hparams(resolved)
    for group, choice in (choices or {}).items():
        if group in flat and choice is not None:
            flat[group] = str(choice)
    known = known_hparams()
    for key, value in flat.items():
        if value is None:  # null: the column's "not set", a NaN in a numeric column (cosine's T_max)
            flat[key] = known[key] if isinstance(known.get(key), float) else ""
    for key, neutral in known.items():
        flat.setdefault(key, neutral)
    return dict(sorted(flat.items()))
