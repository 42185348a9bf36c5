"""Shared fixtures: compose the real configs, run the real CLI, read real TensorBoard events."""

from __future__ import annotations

import os

# Before torch is imported: one torch thread per test process. The suite runs a pytest-xdist worker
# per core, and their `python -m trainer` subprocesses inherit this; two threads each would
# oversubscribe the cores (threads=auto keeps torch's default for larger steps, trainer/device.py).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import importlib.util
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from trainer.config import config_dir
from trainer.jobs import job_number
from trainer.tb import read_scalars  # noqa: F401  (tests import it from here)

ROOT = Path(__file__).resolve().parent.parent


# The files that take the most CPU (real command lines in subprocesses), heaviest first, as measured
# (CPU seconds of each file's tests and their subprocesses). `make test` runs a file per worker
# (--dist loadfile) in collection order (--no-loadscope-reorder): starting these first keeps one of
# them from running alone at the end.
HEAVY_FIRST = ("test_reliability_cli.py", "test_optuna.py", "test_vectorized_cli.py", "test_readme.py",
               "test_dashboards.py", "test_bad_values.py", "test_cli.py", "test_landscape.py",
               "test_speed.py", "test_report_stats.py", "test_sweeps.py", "test_multirun_resume.py",
               "test_resume_guarantees.py", "test_vectorized.py", "test_experiments_13.py",
               "test_configs.py", "test_ensembles.py", "test_claim_figures.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


def make_cfg(*overrides: str) -> DictConfig:
    """The real config composed with command-line style overrides."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name="config", overrides=["progress=false", *overrides])


def make_job_cfg(*overrides: str) -> DictConfig:
    """make_cfg with Hydra's config of the job set, as Hydra sets it for each job it runs: an
    experiment's `${hydra:runtime.choices.optimizer}` (its per-arm rates) resolves."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["progress=false", *overrides],
                      return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


@pytest.fixture
def cfg_factory() -> Callable[..., DictConfig]:
    return make_cfg


def script(name: str) -> ModuleType:
    """scripts/NAME.py imported as a module, to call its functions or its main(argv) in-process."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def read_metrics(run_dir: str | Path) -> dict:
    return json.loads((Path(run_dir) / "metrics.json").read_text())


def cli(*args: str, cwd: str | Path = ROOT, env: dict | None = None,
        timeout: float = 300, module: str = "trainer") -> subprocess.CompletedProcess:
    """Run `python -m trainer ARGS` (or another `module`) in a subprocess, as a user would."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def cli_popen(args: list[str], log: Path) -> subprocess.Popen:
    """Start `python -m trainer ARGS` in the background, its output into `log` (to kill it midway)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.Popen([sys.executable, "-m", "trainer", *args], cwd=ROOT, env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)


def job_dirs(sweep: Path) -> dict[int, Path]:
    """A sweep's job folders by job number: `3`, or `3_optimizer.lr=0.01` (names with the values)."""
    if not sweep.is_dir():
        return {}
    found = {job_number(p.name): p for p in sweep.iterdir() if (p / ".hydra").is_dir()}
    return {n: p for n, p in found.items() if n is not None}


def kill_sweep_at_job(proc: subprocess.Popen, sweep: Path, job: int, timeout: float = 300) -> None:
    """SIGKILL a sweep once job number `job` has written its first checkpoint (killed midway)."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        jobs = job_dirs(sweep)
        if job in jobs and (jobs[job] / "checkpoints" / "last.pt").is_file():
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
