"""trainer.runtime.job: Hydra's runtime config is read once per job, at the entry point (the command
line, the vectorized launcher), and passed down as a `JobContext`."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hydra.core.hydra_config import HydraConfig

from tests.conftest import cli_in_process, composed, job_dirs
from trainer.logs.dashboard import command_line
from trainer.runtime.job import JobContext

# Hydra calls these resolvers while it sets a job up, before the job runs (configs/config.yaml's
# hydra.output_subdir and hydra.sweep.subdir): they read its runtime config themselves.
RESOLVERS = {"trainer.sweeps.jobs"}


@pytest.fixture
def readers(monkeypatch) -> list[str]:
    """The modules that call `HydraConfig.get()`, one entry per call."""
    calls: list[str] = []
    original = HydraConfig.get

    def counted():
        calls.append(sys._getframe(1).f_globals.get("__name__", ""))
        return original()

    monkeypatch.setattr(HydraConfig, "get", staticmethod(counted))
    return calls


def ours(calls: list[str]) -> list[str]:
    return [c for c in calls if c.startswith("trainer") and c not in RESOLVERS]


@pytest.mark.slow  # a few seconds on 2 cores
@pytest.mark.parametrize("launcher", ["basic", "vectorized"])
def test_hydras_runtime_config_is_read_once_per_job(tmp_path, readers, launcher):
    sweep = tmp_path / "sweep"
    done = cli_in_process("-m", f"hydra/launcher={launcher}", "data=gaussians", "seed=0,1", "epochs=1",
                          "progress=false", f"hydra.sweep.dir={sweep}")
    assert done.returncode == 0, done.stderr
    assert len(job_dirs(sweep)) == 2
    assert ours(readers) == ["trainer.runtime.job"] * 2, readers
    for folder in job_dirs(sweep).values():  # what the context carried reached the job's files
        assert (folder / "metrics.json").is_file() and not list((folder / ".hydra").glob("pending-*"))


@pytest.mark.slow
def test_a_single_run_reads_it_once(tmp_path, readers):
    done = cli_in_process("data=gaussians", "epochs=1", f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 0, done.stderr
    assert ours(readers) == ["trainer.runtime.job"], readers


def test_the_context_of_a_composed_job():
    cfg = composed(("optimizer=adam", "seed=3"), hydra=True)
    HydraConfig.instance().set_config(cfg)
    job = JobContext.from_hydra(cfg.hydra)
    assert job.hydra and not job.multirun and job.overrides == ("optimizer=adam", "seed=3")
    assert job.choices["optimizer"] == "adam" and not any(k.startswith("hydra/") for k in job.choices)
    assert job.output_dir is None and job.staged_dir is None  # Hydra sets the folder when the job runs
    with pytest.raises(TypeError):
        job.choices["optimizer"] = "sgd"  # frozen, to the values
    assert command_line(job).startswith("python -m trainer ")


def test_the_pending_folder_is_the_staged_one():
    out = Path("/runs/a")
    assert JobContext(output_dir=out, output_subdir=".hydra/pending-x").staged_dir == out / ".hydra/pending-x"
    assert JobContext(output_dir=out, output_subdir=".hydra").staged_dir is None
    assert JobContext(output_dir=out).staged_dir is None


def test_outside_hydra_the_context_comes_from_the_arguments(tmp_path):
    job = JobContext.outside_hydra(tmp_path)
    assert not job.hydra and job.output_dir == tmp_path and job.staged_dir is None and job.choices == {}
    assert command_line(job).startswith("run(cfg) called from Python: ")


def test_run_called_inside_a_users_hydra_app_trains_into_its_job_folder(tmp_path):
    """`run(cfg)` without a context or a folder, inside a `@hydra.main` of the user's: that job's
    folder and choices; given a folder, a run of its own outside Hydra."""
    cfg = composed(("optimizer=adam",), hydra=True)
    cfg = cfg.copy()
    cfg.hydra.runtime.output_dir = str(tmp_path / "job")
    HydraConfig.instance().set_config(cfg)
    try:
        job = JobContext.of_caller()
        assert job.output_dir == tmp_path / "job" and job.choices["optimizer"] == "adam"
        other = JobContext.of_caller(tmp_path / "mine")
        assert other.output_dir == tmp_path / "mine" and not other.hydra
    finally:
        HydraConfig.instance().cfg = None
