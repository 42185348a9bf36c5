"""`JobContext`: what a run needs to know of the Hydra job it is, read once from Hydra's runtime config
(`from_hydra`, in trainer/__main__.py and the vectorized launcher) and passed down as plain values;
a run started from Python without Hydra gets `outside_hydra()`.

Nothing below the entry points reads `HydraConfig` itself, except the config resolvers that Hydra
calls while it sets a job up (`${trainer_hydra_subdir:}`, `${trainer_job_dir:}`), before any run.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class JobContext:
    """One job of Hydra's: its folder, its place in a sweep, how it was started."""

    output_dir: Path | None = None  # Hydra's runtime.output_dir; None outside Hydra
    output_subdir: str | None = None  # where Hydra wrote the job's config files (hydra.output_subdir)
    multirun: bool = False
    num: int | None = None  # the job's number in its sweep
    name: str | None = None  # hydra.job.name (its log file's name)
    sweep_dir: Path | None = None
    overrides: tuple[str, ...] = ()  # the job's own overrides (hydra.overrides.task)
    choices: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))  # group: option
    sweeper: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))  # hydra.sweeper
    argv: tuple[str, ...] = ()  # the command line that started the process
    hydra: bool = False  # whether Hydra runs the job

    @classmethod
    def from_hydra(cls, node: Any = None) -> JobContext:
        """The context of the current Hydra job, or of the job whose `hydra` config node is `node`."""
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode
        from omegaconf import OmegaConf

        hydra = node if node is not None else HydraConfig.get()
        runtime = hydra.runtime
        out = None if OmegaConf.is_missing(runtime, "output_dir") else Path(str(runtime.output_dir))
        choices = {str(k): str(v) for k, v in runtime.choices.items()
                   if v is not None and not str(k).startswith("hydra/")}
        sweeper = OmegaConf.to_container(hydra.sweeper, resolve=True, throw_on_missing=False)
        sub = hydra.get("output_subdir")
        return cls(output_dir=out, output_subdir=None if sub is None else str(sub),
                   multirun=hydra.mode == RunMode.MULTIRUN,
                   num=int(hydra.job.num) if _set(hydra.job, "num") else None,
                   name=str(hydra.job.name) if _set(hydra.job, "name") else None,
                   sweep_dir=Path(str(hydra.sweep.dir)) if _set(hydra.sweep, "dir") else None,
                   overrides=tuple(str(o) for o in hydra.overrides.task),
                   choices=MappingProxyType(choices), sweeper=MappingProxyType(sweeper),
                   argv=tuple(sys.argv), hydra=True)

    @classmethod
    def outside_hydra(cls, output_dir: str | Path | None = None) -> JobContext:
        """`run(cfg)` called from Python: no Hydra job, the folder it was given (if any)."""
        return cls(output_dir=None if output_dir is None else Path(output_dir), argv=tuple(sys.argv))

    @classmethod
    def of_caller(cls, output_dir: str | Path | None = None) -> JobContext:
        """`run(cfg)` called without a context: given a folder, a run outside Hydra; else, inside a
        user's own `@hydra.main`, that Hydra job (it trains into the job's folder); else outside Hydra."""
        from hydra.core.hydra_config import HydraConfig

        if output_dir is None and HydraConfig.initialized():
            return cls.from_hydra()
        return cls.outside_hydra(output_dir)

    @property
    def staged_dir(self) -> Path | None:
        """Where Hydra wrote this job's config files when that is a pending folder inside `.hydra`
        (a run that may be refused: trainer.storage.rundir); None otherwise."""
        if self.output_dir is None or self.output_subdir in (None, ".hydra"):
            return None
        return self.output_dir / self.output_subdir


def _set(node: Any, key: str) -> bool:
    """Whether `node.key` has a value (Hydra leaves some `???` outside a sweep)."""
    from omegaconf import OmegaConf

    try:
        return key in node and not OmegaConf.is_missing(node, key) and node[key] is not None
    except Exception:  # an interpolation that cannot resolve here
        return False
