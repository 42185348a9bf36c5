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

    def __init__(self, max_members: int | None = None, backend: str = "local",
                 slurm: DictConfig | None = None, width_ratio: float = 1) -> None:
        from trainer.runtime.errors import ConfigError

        if backend not in ("local", "slurm"):
            raise ConfigError(f"hydra.launcher.backend={backend!r} is not allowed; choose local (this "
                              "process trains the groups) or slurm (each group a SLURM job)")
        self.max_members = max_members  # members per stacked model; None: what fits in memory
        self.backend, self.slurm = backend, slurm  # slurm: submitit's options for each group's job
        self.width_ratio = width_ratio  # how far members' widths may differ (trainer.vectorized.grouping)
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from trainer.runtime.cli import fail

        problem = max_members_problem(self.max_members) or width_ratio_problem(self.width_ratio)
        if problem:  # from a config file (the command line's value is checked before Hydra starts)
            fail(problem, 2)
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function
        remember_compositions(hydra_context.config_loader)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from hydra_plugins.trainer_vectorized_launcher._launch import launch

        assert self.config is not None and self.hydra_context is not None
        assert self.task_function is not None
        return launch(self, job_overrides, initial_job_idx)

    def __repr__(self) -> str:  # shown by `--info plugins`
        return f"VectorizedLauncher(max_members={self.max_members!r}, backend={self.backend!r})"


def max_members_problem(value: object) -> str | None:
    """What is wrong with a `hydra.launcher.max_members` value, or None (null, or a whole number >= 1)."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return None
    return (f"hydra.launcher.max_members={value!r} must be a whole number >= 1 (the members of one stacked "
            "model) or null (as many as half the free memory holds)")


def width_ratio_problem(value: object) -> str | None:
    """What is wrong with a `hydra.launcher.width_ratio` value, or None (a number >= 1)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 1:
        return None
    return (f"hydra.launcher.width_ratio={value!r} must be a number >= 1: how many times wider than a "
            "member's hidden layer its group's may be (1: members of equal widths only; 4: 16 with 64)")


def remember_compositions(loader: Any) -> None:
    """Compose each job once, not twice, and cheaply: Hydra's sweepers compose every job of a batch
    to check it (`Sweeper.validate_batch_is_legal`) and drop the result; the launcher then composes
    it again. This keeps the sweeper's composition (the same call with the same arguments) for the
    launcher to take (`loader.composed.pop(...)`), which saves about 0.1 s a job on a 2-core CPU;
    and each composition is a copy of one made once per choice of config groups, with the job's
    values applied (`_compose.composer`), not a composition from scratch."""
    from hydra_plugins.trainer_vectorized_launcher._compose import compose_by_groups

    if hasattr(loader, "composed"):
        return
    compose_by_groups(loader)
    compose = loader.load_sweep_config
    loader.composed = {}

    def load_sweep_config(master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        config = compose(master_config, sweep_overrides)
        loader.composed[(id(master_config), tuple(sweep_overrides))] = config
        return config

    loader.load_sweep_config = load_sweep_config


__all__: Any = ["VectorizedLauncher"]
