"""The Hydra side of the Optuna sweeper: keeps the config and the launcher; `_search` does the work.

Optuna is imported only when a search starts (Hydra imports this module at every start).
"""

from __future__ import annotations

import os
from pathlib import Path
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
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> None:
        from hydra_plugins.trainer_optuna_sweeper._search import Search
        from trainer.runtime.cli import fail
        from trainer.runtime.errors import UserError

        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        try:
            Search(self.config, self.launcher, **self.options,
                   config_loader=self.hydra_context.config_loader).run(arguments)
        except UserError as exc:  # a bad search setting: one paragraph, as for a bad run setting
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            remove_own_events(Path(str(self.config.hydra.sweep.dir)))
            fail(str(exc), 2)


def remove_own_events(sweep_dir: Path) -> None:
    """Take back the sweep's HParams file that this process wrote at the start (trainer.sweeps.jobs'
    callback, before the sweeper saw its settings), and the folder if nothing else is in it: a
    search refused before its first trial leaves nothing behind."""
    from trainer.logs.dashboard import HPARAMS_RUN

    experiment = sweep_dir / HPARAMS_RUN
    if not experiment.is_dir():
        return
    files = list(experiment.iterdir())
    own = [f for f in files if f.name.startswith("events.out.tfevents.")
           and f.name.split(".")[-2:-1] == [str(os.getpid())]]
    for f in own:
        f.unlink()
    if len(own) == len(files):
        experiment.rmdir()
        if not any(sweep_dir.iterdir()):
            sweep_dir.rmdir()
