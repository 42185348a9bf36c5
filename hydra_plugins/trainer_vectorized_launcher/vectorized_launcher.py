"""The Hydra side of the vectorized launcher: keeps the config; `_launch` does the work.

Hydra imports this module at every start (plugin discovery): it must not import torch. The config
is `configs/hydra/launcher/vectorized.yaml`; no `from __future__ import annotations`, as in the
Optuna sweeper's config module.
"""

from collections.abc import Sequence
from typing import Any

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class VectorizedLauncher(Launcher):
    """Groups the jobs of each batch it is given and trains every group as one stacked model."""

    def __init__(self, max_members: int | None = None) -> None:
        self.max_members = max_members  # members per stacked model; None: what fits in memory
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from hydra_plugins.trainer_vectorized_launcher._launch import launch

        assert self.config is not None and self.hydra_context is not None
        assert self.task_function is not None
        return launch(self, job_overrides, initial_job_idx)

    def __repr__(self) -> str:  # shown by `--info plugins`
        return f"VectorizedLauncher(max_members={self.max_members!r})"


__all__: Any = ["VectorizedLauncher"]
