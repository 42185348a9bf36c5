"""The OmegaConf resolvers that configs/ names (`${run_id:}`, `${trainer_job_dir:...}`, ...),
registered when trainer is first imported: every process has them before Hydra composes a config."""

from __future__ import annotations

import importlib
import secrets
from collections.abc import Callable
from typing import Any

from omegaconf import OmegaConf

# A random token per process: two runs started in one second never share an output directory
# (Hydra's `${now:...}` has one-second resolution); also names a run's pending `.hydra` folder.
RUN_ID = secrets.token_hex(3)

# The others, by name -> "module:function". Named, not imported, as a config's `_target_` is: this
# module is imported first by every process (a joblib or submitit worker included) and sits under
# every other layer; the function's module is imported when a config first uses the resolver.
RESOLVERS = {
    "trainer_hydra_subdir": "trainer.sweeps.jobs:hydra_subdir",  # .hydra, or a pending folder
    "trainer_job_dir": "trainer.sweeps.jobs:job_dir_name",  # a sweep job's folder name
    "trainer_fixed_keys": "trainer.sweeps.jobs:fixed_keys",  # what the folder name leaves out
    "trainer_direction": "trainer.sweeps.objective:direction_of",  # a search's, from `monitor`
}


def by_name(where: str) -> Callable[..., Any]:
    """A resolver that calls the function `where` names, imported on its first call."""
    module, name = where.split(":")

    def resolve(*args: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args)

    return resolve


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("run_id"):
        OmegaConf.register_new_resolver("run_id", lambda: RUN_ID)
    for name, where in RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, by_name(where))
