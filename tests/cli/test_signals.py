"""Signals, kills, divergence and concurrent launches against the real command line."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, cli_in_process, make_cfg, outside, read_metrics, subprocess_env
from trainer.config.build import build_data
from trainer.data import prepare_data
from trainer.run import run
from trainer.runtime.errors import FolderRefused
from trainer.storage.checkpoint import load_checkpoint
from trainer.sweeps.callbacks import check_writable
from trainer.training.curves import LR_TAG

pytestmark = pytest.mark.slow

# Where the data set does not matter: a small generated one (no digits to load, short epochs).
TINY_DATA = ("data=spirals", "data.n_samples=300")
TINY = (*TINY_DATA, "model.width=16")


def start(*args: str, cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "trainer", *args], cwd=cwd or outside(),
                            env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(predicate, timeout: float = 120.0, every: float = 0.001) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(every)


def test_sigterm_mid_epoch_saves_and_resume_completes(tmp_path):
    # 350 updates an epoch (as many as the digits' 315): SIGTERM at the 500th update, inside epoch 2
    # (at an exact update, tests/kill_at.py: a signal sent after a sleep could land after the end).
    args = ("epochs=3", "data=spirals", "data.n_samples=2000", "batch_size=4", "progress=false",
            f"hydra.run.dir={tmp_path}")
    proc = kill_run("sigterm_update", "-", 500, *args)
    stderr = proc.stderr
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "SIGTERM" in stderr and "resume=true" in stderr and "Traceback" not in stderr
    metrics = read_metrics(tmp_path)
    assert metrics["status"] == "interrupted" and metrics["signal"] == "SIGTERM"
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert ckpt["fit"]["step"] == metrics["steps"]

    # Resumed in-process: the command line's resume is tested after a SIGKILL below and after a
    # refused resume (the run folder Hydra made); here the point is the checkpoint SIGTERM left.
    run(make_cfg(*args[:-1], "resume=true"), out_dir=tmp_path)
    metrics = read_metrics(tmp_path)
    assert metrics["status"] == "completed" and metrics["epochs"] == 3
    n_train = len(prepare_data(build_data(make_cfg(*args[1:3]).data))[0].x_train)
    assert metrics["steps"] == 3 * -(-n_train // 4)  # no update lost or repeated


def test_sigkill_during_a_checkpoint_write_leaves_a_readable_checkpoint(tmp_path):
    # A wide model makes each checkpoint write long enough to be caught in the middle; few samples
    # make the epochs between writes short.
    args = ("epochs=40", *TINY_DATA, "model.depth=3", "model.width=1536", "progress=false",
            f"hydra.run.dir={tmp_path}")
    proc = start(*args)
    ckpts = tmp_path / "checkpoints"

    def writing_after_first() -> bool:
        return (ckpts / "last.pt").exists() and any(ckpts.glob(".last.pt.*.tmp"))

    wait_for(writing_after_first)
    proc.kill()
    proc.wait(timeout=30)
    assert any(ckpts.glob(".*.tmp")), "the kill did not land during a write"
    ckpt = load_checkpoint(ckpts / "last.pt")  # the previous checkpoint is intact
    assert ckpt["fit"]["epoch"] >= 1
    assert not (tmp_path / "metrics.json").exists()

    done = cli_in_process(*args[1:-2], "epochs=" + str(ckpt["fit"]["epoch"] + 1), "progress=false",
                          f"hydra.run.dir={tmp_path}", "resume=true")
    assert done.returncode == 0, done.stderr
    metrics = read_metrics(tmp_path)
    assert metrics["status"] == "completed" and metrics["epochs"] == ckpt["fit"]["epoch"] + 1
    assert not any(ckpts.glob(".*.tmp"))


def test_divergence_exits_with_message_and_a_sweep_goes_on(tmp_path):
    proc = cli_in_process(*TINY, "optimizer=sgd", "optimizer.lr=1e12", "nan_check_every_n_steps=1",
                          f"hydra.run.dir={tmp_path / 'single'}")
    assert proc.returncode == 3
    assert "diverged" in proc.stderr and "optimizer.lr" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert read_metrics(tmp_path / "single")["status"] == "diverged"

    sweep = tmp_path / "sweep"
    proc = cli_in_process("-m", *TINY, "optimizer=sgd", "optimizer.lr=1e12,0.05", "epochs=2",
                          f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr
    assert read_metrics(sweep / "0_optimizer.lr=1000000000000.0")["status"] == "diverged"
    assert read_metrics(sweep / "1_optimizer.lr=0.05")["status"] == "completed"
    # a diverged job is a result of the sweep: a warning in its log, never an ERROR line
    log = (sweep / "0_optimizer.lr=1000000000000.0" / "trainer.log").read_text()
    assert "[WARNING] - 0_optimizer.lr=1000000000000.0: the run diverged" in log and "[ERROR]" not in log


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> list[Path]:
    """Two runs of TINY for 1 epoch started at the same moment from one folder, without a run dir."""
    cwd = tmp_path_factory.mktemp("together")
    procs = [start(*TINY, "epochs=1", "progress=false", cwd=cwd) for _ in range(2)]
    for proc in procs:
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
    return sorted(p.parent for p in cwd.glob("outputs/*/*/metrics.json"))


def test_two_runs_started_together_get_their_own_directories(two_runs):
    assert len(two_runs) == 2 and two_runs[0] != two_runs[1]


def kill_run(moment: str, name: str, n: int, *args: str) -> subprocess.CompletedProcess:
    """The CLI, signalled at the n-th write of checkpoints/`name` (see tests/kill_at.py)."""
    return subprocess.run([sys.executable, str(ROOT / "tests" / "kill_at.py"), moment, name, str(n), "--",
                           *args], cwd=outside(), env=subprocess_env(), capture_output=True, text=True,
                          timeout=300)


def steps_of(run_dir: Path) -> dict[str, list[int]]:
    from trainer.logs.events import read_scalars

    return {tag: [s for s, _ in points] for tag, points in read_scalars(run_dir).items()}


@pytest.mark.parametrize("moment,name,n", [("before", "last.pt", 3), ("mid", "last.pt", 2),
                                           ("before", "best.pt", 3)])
def test_sigkill_at_a_checkpoint_write_then_resume_logs_each_step_once(tmp_path, moment, name, n):
    args = ("epochs=4", *TINY_DATA, "model.width=16", "batch_size=32", "log_every_n_steps=1")
    killed = kill_run(moment, name, n, *args, "progress=false", f"hydra.run.dir={tmp_path}")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert any((tmp_path / "checkpoints").glob(".*.tmp")) == (moment == "mid")
    # Resumed in-process: the command line's resume after a SIGKILL is tested above.
    run(make_cfg(*args, "resume=true"), out_dir=tmp_path)
    assert not any((tmp_path / "checkpoints").glob(".*.tmp"))
    metrics = read_metrics(tmp_path)
    assert metrics["status"] == "completed" and metrics["epochs"] == 4
    steps = steps_of(tmp_path)
    assert steps["train/loss"] == steps["val/loss"] == [1, 2, 3, 4]
    assert steps[LR_TAG] == list(range(1, metrics["steps"] + 1))
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert best["fit"]["epoch"] == metrics["best_epoch"]


def test_a_second_ctrl_c_during_a_checkpoint_write_exits_cleanly(tmp_path):
    args = (*TINY, "epochs=3", "progress=false", f"hydra.run.dir={tmp_path}")
    proc = kill_run("sigint2", "last.pt", 2, *args)
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr and "resume=true" in proc.stderr
    metrics = read_metrics(tmp_path)
    assert metrics["status"] == "interrupted" and metrics["signal"] == "SIGINT"
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["fit"]["epoch"] == 1


def test_a_refused_resume_changes_nothing_in_the_run_folder(two_runs):
    # One of the two runs above: TINY for 1 epoch, made by the command line (.hydra/ included).
    run_dir = two_runs[0]
    args = (*TINY, "epochs=1", "progress=false", f"hydra.run.dir={run_dir}")
    records = ("trainer.log", "process.json")  # logs of each start, not the run's results
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and p.name not in records}
    proc = cli_in_process(*args, "resume=true", "optimizer.lr=0.5")
    assert proc.returncode == 2 and "optimizer.lr: 0.001 -> 0.5" in proc.stderr
    assert "Traceback" not in proc.stderr
    after = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and p.name not in records}
    assert after == before  # .hydra/config.yaml included
    ok = cli_in_process(*args, "resume=true", "epochs=2")  # an allowed change: accepted and recorded
    assert ok.returncode == 0, ok.stderr
    assert "epochs: 2" in (run_dir / ".hydra" / "config.yaml").read_text()
    assert not list((run_dir / ".hydra").glob("pending-*"))


def test_a_second_process_on_a_run_folder_stops_at_once(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path\n"
         "from trainer.storage.rundir import RunFolder\n"
         "with RunFolder(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)",
         str(tmp_path)], cwd=outside(), env=subprocess_env(), stdout=subprocess.PIPE,
        text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        # The trainer in this process (the command line prints a ConfigError as any other: exit 2).
        with pytest.raises(FolderRefused, match=rf"another process \(pid {holder.pid}\)"):
            run(make_cfg(*TINY, "epochs=1", "resume=true"), out_dir=tmp_path)
        assert not (tmp_path / "checkpoints").exists()
    finally:
        holder.kill()
        holder.wait()
    # The OS released the dead holder's lock: the folder is free again.
    assert run(make_cfg(*TINY, "epochs=1"), out_dir=tmp_path)["status"] == "completed"


def test_an_output_folder_that_cannot_be_written_is_a_clear_error(tmp_path, capsys):
    target = tmp_path / "a_file"
    target.write_text("not a folder")
    proc = cli_in_process("epochs=1", f"hydra.run.dir={target}")
    assert proc.returncode == 2, proc.stderr
    assert f"hydra.run.dir={target}" in proc.stderr and "Traceback" not in proc.stderr
    # A folder that cannot be made (under /proc): the same check the command line's Hydra callback
    # (trainer.sweeps.callbacks.OutputDirCheck) makes before Hydra touches it, called in-process.
    with pytest.raises(SystemExit) as exc:
        check_writable(Path("/proc/trainer-run"), "hydra.run.dir")
    assert exc.value.code == 2 and "hydra.run.dir=/proc/trainer-run" in capsys.readouterr().err
