"""Shared fixtures: compose the real configs, run the real CLI, read real TensorBoard events."""

from __future__ import annotations

import os

# Before torch is imported: one torch thread per test process. The suite runs a pytest-xdist worker
# per core, and their `python -m trainer` subprocesses inherit this; two threads each would
# oversubscribe the cores (threads=auto keeps torch's default for larger steps, trainer/runtime/device.py).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import copy
import functools
import gc
import importlib.util
import io
import json
import logging
import runpy
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from types import ModuleType

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra._internal.defaults_list import Overrides
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, open_dict

from trainer.config.validate import config_dir
from trainer.logs.events import read_scalars  # noqa: F401  (tests import it from here)
from trainer.sweeps.jobs import job_number

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"  # HEAVY_FIRST names files from here


# The files that take the longest, heaviest first, as measured (`make test` with --durations=0: the
# seconds of each file's tests summed, their subprocesses included; 2026-12-07). `make test` runs a
# file per worker (--dist loadfile) in collection order (--no-loadscope-reorder): starting these
# first keeps one of them from running alone at the end. Paths from tests/.
HEAVY_FIRST = ("cli/test_cluster_slurm.py", "cli/test_cluster_postgres.py",  # servers, then their tests
               "cli/test_optuna.py", "docs/test_docs.py", "cli/test_signals.py",
               "unit/config/test_validate.py", "cli/test_vectorized.py", "cli/test_packaging.py",
               "unit/logs/test_dashboard.py", "unit/runtime/test_device.py", "unit/storage/test_rundir.py",
               "cli/test_main.py", "unit/report/test_stats.py", "unit/sweeps/test_objective.py",
               "unit/vectorized/test_group.py", "unit/storage/test_resume.py",
               "unit/landscape/test_paths.py", "cli/test_multirun_resume.py", "cli/test_terminal.py",
               "integration/test_configs.py", "unit/training/test_accel.py",
               "unit/training/test_backprop.py", "integration/test_experiments.py",
               "unit/ensemble/test_model.py", "scripts/test_bench.py", "docs/test_config_reference.py",
               "integration/test_reliability.py", "integration/test_data.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    # stable: the rest keep their order
    items.sort(key=lambda item: rank.get(item.path.relative_to(TESTS).as_posix(), len(rank)))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Python's cyclic garbage collector, tuned for a test process: torch, Hydra, the trainer and the
    collected tests are frozen out of its passes (gc.freeze), and it runs after 20,000 new objects
    instead of 700. Each full pass scanned them all again: ~9% of a worker's CPU (Hydra's
    compositions make and drop many small objects), about half of that after."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 10, 10)


@functools.cache
def composed(overrides: tuple[str, ...], hydra: bool = False) -> DictConfig:
    """The real config composed with these overrides (with Hydra's node: `hydra`), once per test
    process. Read it, or deepcopy it to change it (make_cfg).

    As the vectorized launcher composes a job (hydra_plugins/trainer_vectorized_launcher/_compose.py,
    equal to Hydra's own composition: tests/cli/test_vectorized_compose.py): the choices of config
    groups (`data=spirals`) are composed once, and the values (`epochs=2`) applied to a copy by
    Hydra's own last step of a composition (~0.01 CPU s instead of ~0.1: most tests differ only in
    values). What this split does not cover, or fails on, Hydra composes whole (its error included)."""
    try:
        parsed, groups = split_overrides(overrides)
        if len(groups) < len(parsed):
            return with_values(composed(tuple(o.input_line for o in groups), hydra), parsed, groups)
    except Exception:  # Hydra's composition: its config, or its error for the test to see
        pass
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra)


@functools.cache
def _repository() -> object:
    """Hydra's repository of the config folder, to tell a group's choice from a value."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        return loader._parse_overrides_and_create_caching_repo("config", [])[1]


def split_overrides(overrides: tuple[str, ...]) -> tuple[list, list]:
    """The overrides parsed, and those of them that choose configs of a group, by Hydra's own split
    (`defaults_list.Overrides`). A sweep, or a Hydra key read before or after the overrides are
    applied (its search path, the environment it copies), is Hydra's to compose (ValueError)."""
    parsed = OverridesParser.create().parse_overrides(overrides=list(overrides))
    if any(o.is_sweep_override() or o.key_or_group.startswith(("hydra.searchpath", "hydra.job.env_copy"))
           for o in parsed):
        raise ValueError("composed by Hydra")
    values = Overrides(_repository(), parsed).config_overrides
    return parsed, [o for o in parsed if all(o is not v for v in values)]


def with_values(base: DictConfig, parsed: list, groups: list) -> DictConfig:
    """A copy of `base` (the composition of `groups`) with the other overrides applied, and named
    in Hydra's node (`hydra.overrides`, `hydra.job.override_dirname`) as Hydra names them."""
    cfg = copy.deepcopy(base)
    ConfigLoaderImpl._apply_overrides_to_config([o for o in parsed if all(o is not g for g in groups)], cfg)
    if "hydra" in cfg:
        task = [o for o in parsed if not o.is_hydra_override()]
        cfg.hydra.overrides.hydra = [o.input_line for o in parsed if o.is_hydra_override()]
        cfg.hydra.overrides.task = [o.input_line for o in task]
        settings = cfg.hydra.job.config.override_dirname
        cfg.hydra.job.override_dirname = get_overrides_dirname(
            overrides=task, kv_sep=settings.kv_sep, item_sep=settings.item_sep,
            exclude_keys=settings.exclude_keys)
    return cfg


def make_cfg(*overrides: str) -> DictConfig:
    """The real config composed with command-line style overrides (a copy of its own to change)."""
    return copy.deepcopy(composed(("progress=false", *overrides)))


def make_job_cfg(*overrides: str) -> DictConfig:
    """make_cfg with Hydra's config of the job set, as Hydra sets it for each job it runs: an
    experiment's `${hydra:runtime.choices.optimizer}` (its per-arm rates) resolves."""
    cfg = copy.deepcopy(composed(("progress=false", *overrides), hydra=True))
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


def write_values(path: Path, values, header: str | None = "a,b,y", delimiter: str = ",") -> Path:
    """A CSV file of these numbers (rows of an array), under this header (None: none)."""
    import numpy as np

    np.savetxt(path, values, delimiter=delimiter, header=header or "", comments="", fmt="%g")
    return path


def read_metrics(run_dir: str | Path) -> dict:
    return json.loads((Path(run_dir) / "metrics.json").read_text())


_SESSION_TMP: list[Path] = []  # a folder of pytest's temporary folder for this test process


@pytest.fixture(scope="session", autouse=True)
def _session_tmp(tmp_path_factory: pytest.TempPathFactory) -> None:
    _SESSION_TMP.append(tmp_path_factory.mktemp("cwd"))


def outside() -> Path:
    """A fresh empty folder outside the repository: where the CLI helpers run a command unless told
    (`cwd=`), as a user runs it from a folder of their own. From the repository root, the current
    folder on sys.path would find the checkout's packages and Hydra plugins, and hide a broken
    installation."""
    return Path(tempfile.mkdtemp(prefix="run-", dir=_SESSION_TMP[0]))


def subprocess_env(env: dict | None = None) -> dict:
    """The environment of a CLI subprocess: this one's, without HYDRA_FULL_ERROR (as a user has it)
    and without PYTHONPATH, so that the installed package (the editable install of `make`) runs."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None)
    if "PYTHONPATH" not in (env or {}):
        full_env.pop("PYTHONPATH", None)
    return full_env


def cli(*args: str, cwd: str | Path | None = None, env: dict | None = None,
        timeout: float = 300, module: str = "trainer") -> subprocess.CompletedProcess:
    """Run `python -m trainer ARGS` (or another `module`) in a subprocess, as a user would, in `cwd`
    (a fresh folder outside the repository unless given)."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd or outside(),
                          env=subprocess_env(env), capture_output=True, text=True, timeout=timeout)


def cli_in_process(*args: str, cwd: str | Path | None = None,
                   module: str = "trainer") -> subprocess.CompletedProcess:
    """`python -m trainer ARGS` (or another `module`) run in this process, as cli() runs it in its own:
    the module's `__main__` code with sys.argv set (Hydra's entry point, its sweepers, launchers and
    job folders), without paying the imports again (~3 CPU s a command). Its exit status, stdout and
    stderr come back as cli()'s do; what a run changes in the process is put back (process_kept).

    Where the process itself is tested (signals, kills, concurrent processes, the process record of
    a job, nothing else on stderr at exit), tests use cli() or cli_popen()."""
    out, err = io.StringIO(), io.StringIO()
    with process_kept(cwd or outside()):
        sys.argv = [module, *args]
        try:
            with redirect_stdout(out), redirect_stderr(err):
                runpy.run_module(module, run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exc:  # as the interpreter turns it into the exit status
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
            if exc.code is not None and not isinstance(exc.code, int):
                print(exc.code, file=err)
        except Exception:  # uncaught: the interpreter would print the traceback and exit 1
            traceback.print_exc(file=err)
            code = 1
    return subprocess.CompletedProcess([sys.executable, "-m", module, *args], code, out.getvalue(),
                                       err.getvalue())


@contextmanager
def process_kept(cwd: str | Path) -> Iterator[None]:
    """Run in `cwd`, then put back what a command line changes in its process: the folder, sys.argv,
    the environment, the SIGINT/SIGTERM handlers, torch's threads, the logging configuration
    (Hydra's, of each job), the warning filters and Hydra's global state."""
    import torch

    folder, argv, environ = os.getcwd(), sys.argv, dict(os.environ)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    threads, hydra_cfg = torch.get_num_threads(), HydraConfig.instance().cfg
    loggers = logging_state()
    os.environ.pop("HYDRA_FULL_ERROR", None)  # as cli() leaves it out
    GlobalHydra.instance().clear()
    os.chdir(cwd)
    try:
        with warnings.catch_warnings():
            # runpy's note on a module imported before (trainer.__main__ by a test): harmless here
            warnings.filterwarnings("ignore", r".* found in sys\.modules", RuntimeWarning)
            yield
    finally:
        os.chdir(folder)
        sys.argv = argv
        os.environ.clear()
        os.environ.update(environ)
        for s, handler in handlers.items():
            signal.signal(s, handler)
        torch.set_num_threads(threads)
        GlobalHydra.instance().clear()
        HydraConfig.instance().cfg = hydra_cfg
        restore_logging(loggers)


LoggingState = dict[str, tuple[list[logging.Handler], int, bool, bool]]


def logging_state() -> LoggingState:
    """Each logger's handlers, level, propagation and whether it is disabled ("" is the root)."""
    named = {name: lg for name, lg in logging.root.manager.loggerDict.items()
             if isinstance(lg, logging.Logger)}
    return {name: (list(lg.handlers), lg.level, lg.propagate, lg.disabled)
            for name, lg in {"": logging.root, **named}.items()}


def restore_logging(before: LoggingState) -> None:
    """Loggers as `before`; those made since as a new logger is; handlers added since, closed."""
    kept = {id(h) for handlers, *_ in before.values() for h in handlers}
    now = logging_state()
    for name, (handlers, *_) in now.items():
        for handler in handlers:
            if id(handler) not in kept:
                handler.close()
        lg = logging.root if name == "" else logging.getLogger(name)
        lg.handlers[:] = before[name][0] if name in before else []
        lg.level, lg.propagate, lg.disabled = before.get(name, ([], logging.NOTSET, True, False))[1:]
    logging.root.setLevel(logging.root.level)  # and the loggers' cached levels cleared


def cli_popen(args: list[str], log: Path, cwd: str | Path | None = None) -> subprocess.Popen:
    """Start `python -m trainer ARGS` in the background, its output into `log` (to kill it midway), in
    `cwd` (a fresh folder outside the repository unless given)."""
    return subprocess.Popen([sys.executable, "-m", "trainer", *args], cwd=cwd or outside(),
                            env=subprocess_env(), stdout=log.open("w"), stderr=subprocess.STDOUT)


def job_dirs(sweep: Path) -> dict[int, Path]:
    """A sweep's job folders by job number: `3`, or `3_optimizer.lr=0.01` (names with the values)."""
    try:  # a sweep starting up: its folder is made, probed and removed again (hydra_callbacks)
        found = {job_number(p.name): p for p in sweep.iterdir() if (p / ".hydra").is_dir()}
    except (FileNotFoundError, NotADirectoryError):
        return {}
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
