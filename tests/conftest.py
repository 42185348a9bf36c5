"""Shared fixtures: compose the real configs, run the real CLI, read real TensorBoard events."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from trainer.config import config_dir
from trainer.tb import read_scalars  # noqa: F401  (tests import it from here)

ROOT = Path(__file__).resolve().parent.parent


def make_cfg(*overrides: str) -> DictConfig:
    """The real config composed with command-line style overrides."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name="config", overrides=["progress=false", *overrides])


@pytest.fixture
def cfg_factory() -> Callable[..., DictConfig]:
    return make_cfg


def read_metrics(run_dir: str | Path) -> dict:
    return json.loads((Path(run_dir) / "metrics.json").read_text())


def cli(*args: str, cwd: str | Path = ROOT, env: dict | None = None,
        timeout: float = 300, module: str = "trainer") -> subprocess.CompletedProcess:
    """Run `python -m trainer ARGS` (or another `module`) in a subprocess, as a user would."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
