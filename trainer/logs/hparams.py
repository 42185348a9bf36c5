"""A run's hyperparameters for TensorBoard's HParams dashboard: its config flattened, with the same
keys in every job of a sweep (from the schema)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

HParamValue = int | float | str | bool
SKIPPED = ("_partial_", "progress")  # not hyperparameters


def flatten_hparams(tree: Mapping[str, Any], prefix: str = "") -> dict[str, HParamValue | None]:
    """Nested config -> flat `{"model.width": 128, ...}` of values the HParams plugin accepts.

    A group's `_target_` becomes the group's own key (`optimizer: "Adam"`); `_partial_` is dropped.
    """
    flat: dict[str, HParamValue | None] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if key == "_target_" and prefix:
            flat[prefix[:-1]] = str(value).rsplit(".", 1)[-1]
        elif key in SKIPPED:
            continue
        elif isinstance(value, Mapping):
            flat.update(flatten_hparams(value, prefix=f"{name}."))
        elif isinstance(value, bool | int | float | str):
            flat[name] = value
        else:  # lists; None stays None (run_hparams gives it its column's type)
            flat[name] = None if value is None else str(value)
    return flat


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
