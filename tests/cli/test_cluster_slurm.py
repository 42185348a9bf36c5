"""The SLURM launchers on a real one-node SLURM cluster on localhost: hydra/launcher=slurm, a job
cancelled with scancel, the GPU check, `srun --ntasks=2` against one process, and the vectorized
launcher's groups as SLURM jobs (docs/guides/distributed.md "Running on a cluster").

The cluster starts once for this file (tests/services.py), which `make test` hands to one worker
(--dist loadfile); it is shut down and removed at the end, also when a test fails. Without the
binaries the tests skip with the reason (`.ci/run` installs them, and makes a skip a failure).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests import services
from tests.conftest import cli_in_process, job_dirs, make_cfg, read_metrics, subprocess_env
from tests.services import HOOKS, report
from trainer.config.overrides import check_launcher
from trainer.runtime.errors import ConfigError

pytestmark = [pytest.mark.services, pytest.mark.slow]

# CPU jobs small enough for any machine's one node: 1 CPU, 1 GB each.
CPU_JOB = ("hydra/launcher=slurm", "hydra.launcher.gpus_per_node=0", "hydra.launcher.cpus_per_task=1",
           "hydra.launcher.mem_gb=1", "device=cpu", "data=spirals", "progress=false")


@pytest.fixture(scope="module")
def cluster() -> services.Slurm:
    yield from services.slurm()


def on_cluster(cluster: services.Slurm, *args: str, cwd: Path, env: dict | None = None,
               timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m trainer ARGS` on the cluster's login node (here: this machine), as a user runs it."""
    full = {**subprocess_env(), **cluster.env, **(env or {})}
    full.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, "-m", "trainer", *args], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=timeout)


def submitit_jobs(sweep: Path) -> dict[str, str]:
    """The SLURM job ids of a sweep's jobs (submitit's log folders) and the log each job wrote."""
    return {folder.name: "".join(p.read_text() for p in sorted(folder.glob("*_log.*")))
            for folder in (sweep / ".submitit").iterdir() if any(folder.glob("*_log.*"))}


def test_slurm_launcher_runs_every_job_as_a_slurm_job(cluster, tmp_path):
    sweep = tmp_path / "sweep"
    done = on_cluster(cluster, "-m", *CPU_JOB, "optimizer=sgd,adam", "epochs=2", f"hydra.sweep.dir={sweep}",
                      cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = submitit_jobs(sweep)
    assert len(jobs) == 2  # an array job of 2 tasks: ARRAYID_0, ARRAYID_1
    for job_id, log in jobs.items():
        assert f"Starting with JobEnvironment(job_id={job_id}" in log, log[-2000:]
    folders = job_dirs(sweep)
    assert sorted(folders) == [0, 1] and "sgd" in folders[0].name and "adam" in folders[1].name
    for folder in folders.values():
        metrics = read_metrics(folder)
        assert metrics["status"] == "completed" and metrics["epochs"] == 2
    shown = report(sweep, tmp_path)
    assert "2 jobs" in shown and "sgd" in shown and "adam" in shown, shown


def test_a_job_cancelled_with_scancel_is_interrupted_and_resumes_from_its_checkpoint(cluster, tmp_path):
    """scancel sends the job SIGTERM: the trainer's handler saves a checkpoint and marks the run
    interrupted (submitit requeues only on its own USR2 signal); the sweep still ends, and a rerun
    with resume=true continues the job from the checkpoint."""
    sweep = tmp_path / "sweep"
    args = ["-m", *CPU_JOB, "optimizer=sgd", "epochs=6", f"hydra.sweep.dir={sweep}"]
    hook = {**HOOKS, "TRAINER_TEST_SCANCEL_AT": "2"}
    first = on_cluster(cluster, *args, cwd=tmp_path, env=hook)
    assert first.returncode == 0, first.stderr[-3000:]
    (folder,) = job_dirs(sweep).values()
    metrics = read_metrics(folder)
    assert metrics["status"] == "interrupted" and metrics["signal"] == "SIGTERM", metrics
    assert "CANCELLED" in "".join(submitit_jobs(sweep).values())
    log = " ".join((folder / "trainer.log").read_text().split())
    assert f"continue it with the same arguments plus hydra.sweep.dir={sweep} resume=true" in log
    stopped_at = metrics["epochs"]
    assert stopped_at < 6

    again = on_cluster(cluster, *args, "resume=true", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    metrics = read_metrics(folder)
    assert metrics["status"] == "completed" and metrics["epochs"] == 6
    assert metrics["resume"].startswith(f"continued from {folder / 'checkpoints' / 'last.pt'}"), metrics


def test_a_gpu_request_on_a_cluster_without_gpus_is_one_message(cluster, tmp_path, monkeypatch):
    asks = [a for a in CPU_JOB if "gpus_per_node" not in a and a != "device=cpu"]
    done = on_cluster(cluster, "-m", *asks, "epochs=1", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                      cwd=tmp_path, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "hydra.launcher.gpus_per_node=1 GPU(s) per job, but no node of the default partition has a GPU" \
        in " ".join(done.stderr.split())
    assert not (tmp_path / "sweep" / ".submitit").exists()  # nothing submitted
    assert cluster.command("squeue", "--noheader").strip() == ""
    # the vectorized launcher's SLURM jobs: the same check, on its own keys (the CLI runs it as above)
    monkeypatch.setenv("SLURM_CONF", cluster.env["SLURM_CONF"])
    with pytest.raises(ConfigError, match="Pass hydra.launcher.slurm.gpus_per_node=0 device=cpu"):
        check_launcher(["-m", "hydra/launcher=vectorized", "hydra.launcher.backend=slurm"])
    check_launcher(["-m", "hydra/launcher=vectorized", "hydra.launcher.backend=slurm",
                    "hydra.launcher.slurm.gpus_per_node=0"])
    with pytest.raises(ConfigError, match="hydra.launcher.partition=gpu: the cluster has no such partition"):
        check_launcher(["-m", "hydra/launcher=slurm", "hydra.launcher.partition=gpu"])
    # SLURM installed, but no cluster to reach from here: one message too, not submitit's traceback
    monkeypatch.delenv("SLURM_CONF")
    if Path("/etc/slurm/slurm.conf").exists():  # this machine belongs to a cluster of its own
        return
    with pytest.raises(ConfigError, match="SLURM's sinfo cannot reach one from here"):
        check_launcher(["-m", "hydra/launcher=slurm", "hydra.launcher.gpus_per_node=0"])


def test_srun_with_two_tasks_trains_what_one_process_trains(cluster, tmp_path):
    """`srun --ntasks=2 python -m trainer` (SLURM's variables, turned into torchrun's): one DDP run of
    two ranks, to the weights of one process on the same settings (as torchrun's two processes:
    tests/unit/training/test_accel.py)."""
    from trainer.run import run
    from trainer.storage.checkpoint import load_checkpoint

    args = ["epochs=2", "data=spirals", "device=cpu", "drop_last=true", "batch_size=64", "progress=false"]
    env = {**subprocess_env(), **cluster.env, "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    srun = subprocess.run(["srun", "--ntasks=2", "--cpus-per-task=1", f"--chdir={tmp_path}", sys.executable,
                           "-m", "trainer", *args, f"hydra.run.dir={tmp_path / 'srun'}"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert srun.returncode == 0, srun.stderr[-3000:]
    assert srun.stdout.count("run completed") == 1  # rank 0 reports for both
    assert list(tmp_path.iterdir()) == [tmp_path / "srun"]  # one run folder: rank 0's
    by_srun = read_metrics(tmp_path / "srun")
    single = run(make_cfg(*args), out_dir=tmp_path / "single")
    assert by_srun["steps"] == single["steps"] == 2 * (700 // 64)  # 700 training samples
    for key in ("val/loss", "val/acc", "test/loss", "train/loss", "train/acc"):
        assert by_srun[key] == pytest.approx(single[key], rel=1e-4, abs=1e-5), key
    weights = [load_checkpoint(tmp_path / run_dir / "checkpoints" / "last.pt")["model"]
               for run_dir in ("srun", "single")]
    for name, w in weights[1].items():
        torch.testing.assert_close(weights[0][name], w, rtol=1e-4, atol=1e-5)


def test_vectorized_groups_run_as_slurm_jobs_with_the_local_launchers_results(cluster, tmp_path):
    """8 jobs that stack into one group, at most 4 members a model: 2 SLURM jobs of 4 members, each
    writing its members' folders as the local vectorized launcher does, to the same results."""
    sweep_args = ["-m", "hydra/launcher=vectorized", "hydra.launcher.max_members=4", "data=spirals",
                  "device=cpu", "epochs=2", "progress=false", "optimizer.lr=0.01,0.03,0.1,0.3", "seed=0,1"]
    on_slurm = on_cluster(cluster, *sweep_args, "hydra.launcher.backend=slurm",
                          "hydra.launcher.slurm.gpus_per_node=0", "hydra.launcher.slurm.cpus_per_task=1",
                          "hydra.launcher.slurm.mem_gb=1", f"hydra.sweep.dir={tmp_path / 'slurm'}",
                          cwd=tmp_path)
    assert on_slurm.returncode == 0, on_slurm.stderr[-3000:]
    local = cli_in_process(*sweep_args, f"hydra.sweep.dir={tmp_path / 'local'}", cwd=tmp_path)
    assert local.returncode == 0, local.stderr[-3000:]
    jobs = submitit_jobs(tmp_path / "slurm")
    assert len(jobs) == 2, jobs.keys()  # one SLURM job per part of the group, not one per sweep job
    logs = "\n".join(jobs.values())
    assert logs.count("4 jobs as one stacked") == 2, logs[-3000:]
    on, off = job_dirs(tmp_path / "slurm"), job_dirs(tmp_path / "local")
    assert sorted(on) == sorted(off) == list(range(8))
    for n in range(8):
        assert on[n].name == off[n].name
        assert files(on[n]) == files(off[n])
        a, b = read_metrics(on[n]), read_metrics(off[n])
        assert a["status"] == b["status"] == "completed"
        for key in ("val/loss", "val/acc", "test/loss", "train/loss"):
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-7), (n, key)
    # Every job's JobReturn came back (the launcher looks each one up: a missing one fails the sweep),
    # and the sweep prints each job's line as the local launcher does (times aside).
    def lines(out: str) -> list[str]:
        return sorted(re.sub(r" in [0-9.]+ s,", "", ln) for ln in out.splitlines() if ": completed in" in ln)

    assert lines(on_slurm.stdout) == lines(local.stdout) and len(lines(local.stdout)) == 8


def files(folder: Path) -> list[str]:
    """A run folder's files, TensorBoard's event files by kind (their names hold a time and a pid)."""
    return sorted("events" if p.name.startswith("events.out") else str(p.relative_to(folder))
                  for p in folder.rglob("*") if p.is_file())

