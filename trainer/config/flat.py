"""A config as flat keys (`model.width: 128`), and what differs between two configs: the columns of
the HParams dashboard (trainer.logs.writer), the vectorized launcher's groups, and what a resume
compares (trainer.storage.resume). Plain dictionaries in and out: no torch, no TensorBoard."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

HParamValue = int | float | str | bool
SKIPPED = ("_partial_", "progress")  # not hyperparameters
ABSENT = "<absent>"  # a key one of two configs lacks


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


def config_changes(saved: Mapping[str, Any], now: Mapping[str, Any],
                   added: Mapping[str, Any] | None = None) -> dict[str, tuple[Any, Any]]:
    """{key: (saved, now)} for the flat keys whose values differ, or that one config lacks (another
    group option: scheduler=none has no scheduler.gamma; `ABSENT` stands for the missing value). A
    top-level key that only `now` has is an option added by a later version, not a change; `added`
    gives the value that keys added inside existing nodes had before they existed."""
    a, b = flatten_hparams(saved), flatten_hparams(now)
    keys = sorted(k for k in a.keys() | b.keys()
                  if k in a or "." in k or any(o.startswith(f"{k}.") for o in b))
    for key, value in (added or {}).items():
        a.setdefault(key, value)
    return {k: (a.get(k, ABSENT), b.get(k, ABSENT)) for k in keys if a.get(k, ABSENT) != b.get(k, ABSENT)}
