"""The package as users install it: every command from any folder, with `make`'s editable install, and
with a wheel in a fresh virtual environment; the build itself without a warning."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import ROOT, cli, job_dirs, read_metrics, subprocess_env

SOURCES = ("trainer", "models", "hydra_plugins", "configs")  # what the wheel is built from, with:
FILES = ("pyproject.toml", "README.md")


def test_pyproject_lists_every_package_and_config_folder():
    """A folder left out of `packages` is left out of `pip install .` and the wheel (setuptools warns
    about a config folder, with its YAML files, only while building)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    expected = {".".join(p.parent.relative_to(ROOT).parts) for tree in ("trainer", "models", "hydra_plugins")
                for p in (ROOT / tree).rglob("__init__.py")}
    expected |= {".".join(("trainer", *p.relative_to(ROOT).parts)) for p in (ROOT / "configs").rglob("*")
                 if p.is_dir() and p.name != "__pycache__"}
    assert sorted(listed) == sorted(expected | {"trainer.configs"})


# The commands of the issue that found the bug (Hydra did not find our plugins outside the
# checkout): a vectorized sweep, an Optuna search (in the wheel's venv: its trials through the
# vectorized launcher, both plugins in one command), a lecture-claim experiment; sweep folders
# relative to the folder they run in.
VECTORIZED = ("-m", "hydra/launcher=vectorized", "data=gaussians", "epochs=2", "optimizer.lr=0.1,0.01",
              "hydra.sweep.dir=vectorized")
SEARCH = ("-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=2", "hydra.sweeper.study_name=tiny",
          "data=spirals", "monitor=val/loss", "optimizer=sgd", "model.width=16", "batch_size=128", "epochs=2",
          "hydra.sweep.dir=search", "hydra/launcher=vectorized")
EXPERIMENT = ("-m", "+experiment=digits_lr", "epochs=2", "seed=0", "hydra.sweep.dir=lr")  # 6 rates, 1 seed


def check_vectorized(proc: subprocess.CompletedProcess, folder: Path) -> None:
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Launching 2 jobs: 1 stacked groups (2 members)" in proc.stdout + proc.stderr
    jobs = job_dirs(folder / "vectorized")
    assert sorted(jobs) == [0, 1]
    assert all(read_metrics(job)["status"] == "completed" for job in jobs.values())


@pytest.mark.slow
def test_a_vectorized_sweep_runs_from_another_folder_in_the_editable_install(tmp_path, monkeypatch):
    """The editable install of `make` (trainer/runtime/cli.py expose_hydra_plugins): from the repository root
    Hydra found the plugins through the current folder; elsewhere it failed with `Unknown plugin
    class : 'hydra_plugins.trainer_vectorized_launcher.vectorized_launcher.VectorizedLauncher'`.

    The same fresh process shows what tests/unit/runtime/test_device.py checks for the other
    launchers: with no policy set by the user, each job records OpenMP's passive wait policy
    (the jobs run in the sweep's own process, where nothing loads torch before trainer)."""
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)  # this test process's trainer import set it
    check_vectorized(cli(*VECTORIZED, cwd=tmp_path), tmp_path)
    jobs = job_dirs(tmp_path / "vectorized")
    assert [read_metrics(jobs[n])["omp_wait_policy"] for n in (0, 1)] == ["passive", "passive"]


def copy_sources(target: Path) -> Path:
    """What the wheel is built from, copied (a build writes build/ and trainer.egg-info beside it)."""
    for name in SOURCES:
        shutil.copytree(ROOT / name, target / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in FILES:
        shutil.copy(ROOT / name, target / name)
    return target


def fresh_venv(folder: Path) -> Path:
    """A new virtual environment that sees this one's packages (torch, Hydra, Optuna: nothing to
    download) through a .pth line, but not our editable install: a .pth file in a folder that a .pth
    line adds is not read, so its import hook is not installed. Its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    (Path(site) / "test_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


@pytest.mark.slow
def test_a_wheel_in_a_fresh_venv_runs_sweeps_searches_and_experiments_from_any_folder(tmp_path):
    """The wheel ships every module and config file (configs inside the package), and its copy runs
    from a folder of the user's: a search through the vectorized launcher, an experiment and a run
    with choices.
    (One wheel for all: a build and an install cost ~5 CPU s.)"""
    env = subprocess_env()
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # else setuptools warns that it does not byte-compile
    # --isolated: no pip configuration of this machine; -v: the build backend's output, its warnings
    built = subprocess.run([sys.executable, "-m", "pip", "--isolated", "wheel", "-v", "--no-deps",
                            "--no-build-isolation", "--no-index", "--wheel-dir", str(tmp_path / "dist"),
                            str(copy_sources(tmp_path / "src"))],
                           env=env, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    output = built.stdout + built.stderr
    assert [line for line in output.splitlines() if "warn" in line.lower()] == []
    wheel, = (tmp_path / "dist").glob("trainer-*.whl")

    python = fresh_venv(tmp_path / "venv")
    subprocess.run([str(python), "-m", "pip", "--isolated", "install", "--quiet", "--no-deps", "--no-index",
                    "--ignore-installed", str(wheel)], check=True, capture_output=True, env=env)
    code = ("import trainer, hydra_plugins.trainer_vectorized_launcher as v, "
            "hydra_plugins.trainer_optuna_sweeper as o; print(trainer.__file__, v.__file__, o.__file__)")
    where = subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True, env=env,
                           cwd=tmp_path)
    for module in where.stdout.split():  # the wheel's copy runs, not the checkout
        assert Path(module).is_relative_to(tmp_path / "venv"), where.stdout
    check_shipped(Path(where.stdout.split()[0]).parent.parent)

    work = tmp_path / "work"
    work.mkdir()

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(python), "-m", "trainer", *args], cwd=work, env=subprocess_env(),
                              capture_output=True, text=True, timeout=300)

    search = run(*SEARCH)
    assert search.returncode == 0, search.stderr[-3000:]
    assert (search.stdout + search.stderr).count("1 jobs as one stacked") == 2  # a trial a group
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{work / 'search' / 'optuna.db'}")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    jobs = job_dirs(work / "search")
    assert sorted(jobs) == [0, 1]
    for trial in study.trials:
        assert read_metrics(jobs[trial.number])["val/loss"] == pytest.approx(trial.value)

    experiment = run(*EXPERIMENT)
    assert experiment.returncode == 0, experiment.stderr[-3000:]
    statuses = [read_metrics(job)["status"] for _, job in sorted(job_dirs(work / "lr").items())]
    assert statuses == ["completed"] * 4 + ["diverged"] * 2  # rates 0.001 to 1.0; 10 and 30 diverge
    assert sorted(p.name for p in work.iterdir()) == ["lr", "search"]  # nothing else written
    check_choices(run(*CHOICES, f"hydra.run.dir={tmp_path / 'run'}"), tmp_path / "run")


def check_shipped(site: Path) -> None:
    """Every module and config file of the checkout is installed (configs inside the package)."""
    for tree, installed in (("configs", "trainer/configs"), ("trainer", "trainer"), ("models", "models"),
                            ("hydra_plugins", "hydra_plugins")):
        for path in (ROOT / tree).rglob("*"):
            if path.suffix in (".py", ".yaml"):
                assert (site / installed / path.relative_to(ROOT / tree)).is_file(), path


# A run of the installed copy takes the choices a user types.
CHOICES = ("epochs=2", "optimizer=nesterov", "optimizer.lr=0.05", "model.depth=3", "model.width=[32,16,8]",
           "model.activation=tanh", "model.init=xavier", "model.dropout=0.1", "batch_size=32",
           "scheduler=step", "seed=3", "device=cpu")


def check_choices(proc: subprocess.CompletedProcess, run_dir: Path) -> None:
    assert proc.returncode == 0, proc.stderr
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed"
    assert metrics["params"] == 64 * 32 + 32 + 32 * 16 + 16 + 16 * 8 + 8 + 8 * 10 + 10
    assert metrics["val/acc"] > 0.3
