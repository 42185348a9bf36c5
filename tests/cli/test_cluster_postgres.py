"""An Optuna study shared through a real PostgreSQL server by processes with their own sweep
folders and host names, as on machines that share no disk (docs/guides/distributed.md "Running on a cluster").

The server starts once for this file (tests/services.py), which `make test` hands to one worker
(--dist loadfile); it is stopped and removed at the end, also when a test fails. Without the
binaries the tests skip with the reason (`.ci/run` installs them, and makes a skip a failure).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests import services
from tests.conftest import ROOT, job_dirs, read_metrics, subprocess_env
from tests.services import HOOKS, report, unavailable
from trainer.runtime.errors import ConfigError

pytestmark = [pytest.mark.services, pytest.mark.slow]

# A small search: the digits search's space with the model and batch fixed, on a tiny data set.
SEARCH = ("+hparams_search=digits_optuna", "data=spirals", "model.width=16", "batch_size=128",
          "hydra/sweeper/sampler=random", "hydra.sweeper.heartbeat_interval=1", "progress=false")


@pytest.fixture(scope="module")
def pg() -> services.Postgres:
    yield from services.postgres()


def can_set_hostname() -> bool:
    unshare = shutil.which("unshare")
    return unshare is not None and subprocess.run(
        [unshare, "--uts", "true"], capture_output=True).returncode == 0


def on_machine(host: str, args: list[str], log: Path, cwd: Path, env: dict | None = None) -> subprocess.Popen:
    """`python ARGS` as on another machine: its own hostname (a UTS namespace, as root), so the
    sweepers cannot tell a dead process by its pid and must go by its heartbeats."""
    prefix = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', host]
    env = {**subprocess_env(), **(env or {})}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.Popen([*prefix, sys.executable, *args], cwd=cwd, env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)


def search_args(pg: services.Postgres, sweep: Path, study: str, seed: int, *more: str) -> list[str]:
    return ["-m", "trainer", "-m", *SEARCH, f"hydra.sweep.dir={sweep}", f"hydra.sweeper.storage={pg.url}",
            f"hydra.sweeper.study_name={study}", f"hydra.sweeper.sampler.seed={seed}", *more]


def owner_host(trial: optuna.trial.FrozenTrial) -> str:
    return trial.user_attrs["sweeper_process"].rpartition(":")[0]


@pytest.fixture(scope="module")
def machines():
    if not can_set_hostname():
        unavailable("second hostname", RuntimeError("unshare --uts is not allowed here (it needs root)"))


def test_processes_take_turns_under_a_lock_in_the_database(pg):
    """The sweepers' turn to count and ask trials is a PostgreSQL advisory lock: held, another
    connection (another machine) cannot take it; released, it can. A server that cannot be reached
    is one message."""
    import zlib

    import sqlalchemy

    from hydra_plugins.trainer_optuna_sweeper._search import database_locked

    engine = sqlalchemy.create_engine(pg.url)
    key = zlib.crc32(b"trainer_optuna_sweeper:turns")

    def free() -> bool:
        with engine.connect() as conn:
            taken = conn.execute(sqlalchemy.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
            if taken:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            return bool(taken)

    assert free()
    with database_locked(pg.url, "turns"):
        assert not free()
    assert free()
    engine.dispose()
    with pytest.raises(ConfigError, match="cannot be opened"):
        with database_locked(f"postgresql+psycopg://trainer@127.0.0.1:{services.free_port()}/x", "turns"):
            pass


def test_two_machines_share_one_postgresql_study(pg, machines, tmp_path):
    """Two searches with their own sweep folders (no shared disk) and seeds: exactly n_trials between
    them, each job folder on the machine that ran it, the whole study in either folder's report."""
    sweeps = {host: tmp_path / host / "search" for host in ("machine-a", "machine-b")}
    other = {"machine-a": sweeps["machine-b"], "machine-b": sweeps["machine-a"]}
    # Each machine's first trial waits until the other's has begun (a hook): neither runs them all.
    procs = {host: on_machine(host, search_args(pg, sweep, "shared", seed, "hydra.sweeper.n_trials=4",
                                                "epochs=2"), tmp_path / f"{host}.log", tmp_path,
                              env={**HOOKS, "TRAINER_TEST_WAIT_FOR_JOB": str(other[host])})
             for seed, (host, sweep) in enumerate(sweeps.items(), 1)}
    for host, proc in procs.items():
        assert proc.wait(timeout=300) == 0, (tmp_path / f"{host}.log").read_text()[-3000:]
    trials = optuna.load_study(study_name="shared", storage=pg.url).trials
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    for host, sweep in sweeps.items():  # a trial's folder is on the machine that ran it, and only there
        ran = sorted(t.number for t in trials if owner_host(t) == host)
        assert sorted(job_dirs(sweep)) == ran
        for n in ran:
            assert read_metrics(job_dirs(sweep)[n])["val/loss"] == pytest.approx(trials[n].value)
    shown = report(sweeps["machine-a"], tmp_path)
    assert "study shared in postgresql+psycopg://" in shown and "4 trials (4 complete)" in shown
    others = [t for t in trials if owner_host(t) == "machine-b"]
    owner = others[0].user_attrs["sweeper_process"]  # machine-b:PID
    assert (f"trials of another sweep folder, run by {owner}: "
            + ", ".join(f"{t.number} complete" for t in others)) in shown


def test_a_killed_machines_trial_is_failed_after_its_heartbeat_and_rerun_by_the_other(pg, machines, tmp_path):
    """machine-b is SIGKILLed in its first trial (at its 2nd checkpoint write); machine-a, which
    cannot see machine-b's processes, fails that trial once its heartbeat is 2 intervals old and
    runs its values again; the study ends with n_trials complete."""
    sweep_a, sweep_b = tmp_path / "a" / "search", tmp_path / "b" / "search"
    killed = on_machine("machine-b", [str(ROOT / "tests" / "kill_at.py"), "before", "last.pt", "2", "--",
                                      *search_args(pg, sweep_b, "killed", 2, "hydra.sweeper.n_trials=4",
                                                   "epochs=3")[2:]], tmp_path / "b.log", tmp_path)
    # machine-a starts once machine-b runs its first trial (before, it might run all 4 trials alone)
    services.wait_for(lambda: 0 in job_dirs(sweep_b) or killed.poll() is not None, "machine-b's trial 0", 120)
    survivor = on_machine("machine-a", search_args(pg, sweep_a, "killed", 1, "hydra.sweeper.n_trials=4",
                                                   "epochs=3"), tmp_path / "a.log", tmp_path)
    assert killed.wait(timeout=300) == -9, (tmp_path / "b.log").read_text()[-3000:]
    assert list(job_dirs(sweep_b)) == [0]
    assert survivor.wait(timeout=300) == 0, (tmp_path / "a.log").read_text()[-3000:]
    trials = optuna.load_study(study_name="killed", storage=pg.url).trials
    assert [t.number for t in trials if t.state == TrialState.FAIL] == [0]
    retry = next(t for t in trials if t.system_attrs.get("retry_history") == [0])
    assert retry.params == trials[0].params and retry.state == TrialState.COMPLETE
    assert owner_host(retry) == "machine-a" and owner_host(trials[0]) == "machine-b"
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 4 and sorted(job_dirs(sweep_a)) == [t.number for t in complete]
    shown = report(sweep_b, tmp_path)  # the killed machine's folder shows the study as it ended
    assert "5 trials (1 fail, 4 complete)" in shown


