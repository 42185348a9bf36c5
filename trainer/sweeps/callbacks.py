"""Hydra callbacks: checks that must run before Hydra itself touches the output folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from trainer.runtime.cli import fail, probe_folder


def check_writable(path: Path, key: str) -> None:
    """Exit with one paragraph when `path` cannot become a folder that this process writes into.

    Creates the folders it needs to try, then removes those it created: nothing is left behind.
    """
    created = [p for p in (path, *path.parents) if not p.exists()]
    try:
        probe_folder(path)
    except OSError as exc:
        fail(f"{key}={path} cannot hold the run's files: {exc.strerror or exc}. Choose a folder "
             f"you can write to, e.g. {key}=outputs/my_run", 2)
    finally:
        for folder in created:  # deepest first
            try:
                folder.rmdir()
            except OSError:
                pass


class OutputDirCheck(Callback):
    """A bad `hydra.run.dir` / `hydra.sweep.dir` (a file, a read-only or virtual folder) is a clear
    error before Hydra's own traceback."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_writable(Path(str(config.hydra.run.dir)).expanduser().absolute(), "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_writable(Path(str(config.hydra.sweep.dir)).expanduser().absolute(), "hydra.sweep.dir")
