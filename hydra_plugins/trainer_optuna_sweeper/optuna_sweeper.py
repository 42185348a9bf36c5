"""The Hydra side of the Optuna sweeper: keeps the config and the launcher; `_search` does the work.

Optuna is imported only when a search starts (Hydra imports this module at every start).
"""

from __future__ import annotations

import os
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class OptunaSweeper(Sweeper):
    """Asks an Optuna study for `n_jobs` trials at a time and runs them as one launcher batch."""

    def __init__(self, **options: Any) -> None:
        self.options = options  # the fields of config.OptunaSweeperConf, the sampler instantiated
        self.config: DictConfig | None = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> None:
        from hydra_plugins.trainer_optuna_sweeper._search import Search
        from trainer.cli import fail
        from trainer.errors import UserError

        assert self.config is not None and self.launcher is not None
        try:
            Search(self.config, self.launcher, **self.options).run(arguments)
        except UserError as exc:  # a bad search setting: one paragraph, as for a bad run setting
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            fail(str(exc), 2)
