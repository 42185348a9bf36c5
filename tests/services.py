"""Throw-away servers for tests/cli/test_cluster_*.py: a PostgreSQL server and a one-node SLURM cluster on
localhost, started from Debian's packages (`.ci/run` installs them) and stopped and removed after.

Each start waits for its server with a deadline and raises `Unavailable` (the tests skip with its
reason) when the binaries are missing; anything started is stopped by the caller's finalizer, also
when a start fails halfway.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOOKS = {"PYTHONPATH": str(ROOT / "tests" / "hooks")}  # tests/hooks/sitecustomize.py
PG_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)  # Debian's layout, newest first
PG_USER = "nobody"  # PostgreSQL refuses to run as root; its data folder belongs to this user


class Unavailable(Exception):
    """A server's binaries are missing or it cannot start here: the tests skip, saying why."""


def unavailable(what: str, exc: Exception) -> None:
    """Skip, saying why; in CI (TRAINER_REQUIRE_SERVICES=1, set by .ci/run) fail instead."""
    import pytest

    (pytest.fail if os.environ.get("TRAINER_REQUIRE_SERVICES") == "1" else pytest.skip)(f"no {what}: {exc}")


def report(sweep: Path, cwd: Path) -> str:
    """`python -m trainer.report SWEEP` (in this process), its output."""
    from tests.conftest import cli_in_process

    done = cli_in_process(str(sweep), cwd=cwd, module="trainer.report")
    assert done.returncode == 0, done.stderr
    return done.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not ready after {timeout:.0f} s")
        time.sleep(0.1)


def binary(name: str, *dirs: Path) -> str:
    found = shutil.which(name) or next((str(d / name) for d in dirs if (d / name).is_file()), None)
    if found is None:
        raise Unavailable(f"{name} is not installed (apt-get install postgresql slurm-wlm munge; .ci/run "
                          "does it)")
    return found


def as_user(user: str) -> list[str]:
    """The prefix that runs a command as `user` when this process is root (it is unchanged otherwise)."""
    if os.geteuid() != 0:
        return []
    return [binary("setpriv"), f"--reuid={user}", f"--regid={pwd.getpwnam(user).pw_gid}", "--clear-groups"]


@dataclass
class Postgres:
    """A PostgreSQL server on 127.0.0.1:port, its data in `folder`, with a database `optuna`."""

    folder: Path
    port: int = field(default_factory=free_port)
    database: str = "optuna"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://trainer@127.0.0.1:{self.port}/{self.database}"

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*as_user(PG_USER), *args], capture_output=True, text=True, timeout=60,
                              cwd="/")

    def start(self) -> None:
        initdb, pg_ctl = binary("initdb", *PG_DIRS), binary("pg_ctl", *PG_DIRS)
        if os.geteuid() == 0:
            shutil.chown(self.folder, PG_USER)
        data = self.folder / "data"
        # trust: anyone on this machine may connect, acceptable for a server that lives a test run
        done = self.run(initdb, "-D", str(data), "-U", "trainer", "--auth=trust", "-E", "UTF8", "--no-sync")
        if done.returncode:
            raise Unavailable(f"initdb failed: {done.stderr.strip()}")
        # TCP on localhost only, the socket in the data folder (not /var/run/postgresql); no fsync
        options = f"-h 127.0.0.1 -p {self.port} -k {data} -c fsync=off -c full_page_writes=off"
        done = self.run(pg_ctl, "-D", str(data), "-o", options, "-l", str(self.folder / "server.log"),
                        "-w", "-t", "30", "start")
        if done.returncode:
            log = (self.folder / "server.log").read_text() if (self.folder / "server.log").is_file() else ""
            raise Unavailable(f"pg_ctl start failed: {done.stderr.strip()} {log[-2000:]}")
        createdb = binary("createdb", *PG_DIRS)
        done = self.run(createdb, "-h", "127.0.0.1", "-p", str(self.port), "-U", "trainer", self.database)
        if done.returncode:
            raise RuntimeError(f"createdb failed: {done.stderr.strip()}")

    def stop(self) -> None:
        data = self.folder / "data"
        if (data / "postmaster.pid").is_file():
            self.run(binary("pg_ctl", *PG_DIRS), "-D", str(data), "-m", "immediate", "-w", "-t", "30", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)


def serve(server: Postgres | Slurm, what: str) -> Iterator[Postgres | Slurm]:
    """A pytest fixture's body: the server started, yielded, then stopped and removed, whatever
    happened; a server that cannot start here skips its tests (fails them in CI: `unavailable`)."""
    try:
        try:
            server.start()
            yield server
        finally:
            server.stop()
    except Unavailable as exc:
        unavailable(what, exc)


def postgres() -> Iterator[Postgres]:
    """A PostgreSQL server for a fixture (its folder in /tmp: the server's user must be able to
    reach it, which pytest's root-only tmp folders do not allow)."""
    return serve(Postgres(Path(tempfile.mkdtemp(prefix="trainer-pg-"))), "PostgreSQL server")


SLURM_CONF = """\
ClusterName=trainer-test
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/munge
AuthInfo=socket={folder}/munge.socket
CredType=cred/munge
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
# schedule a submitted job at once (the default waits up to 3 s to batch submissions; ~1 s remains)
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# a cancelled job gets SIGTERM, then SIGKILL after KillWait: time for its checkpoint
KillWait=30
InactiveLimit=0
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=30
SlurmctldParameters=enable_configless
{node} State=UNKNOWN
PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


@dataclass
class Slurm:
    """A one-node SLURM cluster on localhost (munged, slurmctld, slurmd as root), its files in
    `folder`; commands reach it through SLURM_CONF in `env`."""

    folder: Path
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.folder / "slurm.conf")}

    def command(self, *args: str, check: bool = True, timeout: float = 30) -> str:
        done = subprocess.run(list(args), env={**os.environ, **self.env}, capture_output=True, text=True,
                              timeout=timeout)
        if check and done.returncode:
            raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def daemon(self, *args: str) -> None:
        log = (self.folder / f"{Path(args[0]).name}.out").open("w")
        self.procs.append(subprocess.Popen(list(args), env={**os.environ, **self.env}, stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True))

    def start(self) -> None:
        if os.geteuid() != 0:
            raise Unavailable("a test SLURM cluster runs its daemons as root, and these tests do not")
        dirs = (Path("/usr/sbin"), Path("/usr/bin"))
        munged, mungekey = binary("munged", *dirs), binary("mungekey", *dirs)
        slurmctld, slurmd = binary("slurmctld", *dirs), binary("slurmd", *dirs)
        binary("sbatch", *dirs)
        for sub in ("state", "spool"):
            (self.folder / sub).mkdir()
        key = self.folder / "munge.key"
        subprocess.run([mungekey, "--create", f"--keyfile={key}"], check=True, timeout=30)
        # munged in the foreground, its socket, key and files here: the machine's own munge is untouched
        self.daemon(munged, "--foreground", "--force", f"--socket={self.folder / 'munge.socket'}",
                    f"--key-file={key}", f"--pid-file={self.folder / 'munged.pid'}",
                    f"--log-file={self.folder / 'munged.log'}", f"--seed-file={self.folder / 'munged.seed'}")
        wait_for(lambda: (self.folder / "munge.socket").exists(), "munged", 30)
        host = socket.gethostname()
        # this machine's CPUs and memory, as slurmd sees them: "NodeName=HOST CPUs=2 ... RealMemory=M"
        node = subprocess.run([slurmd, "-C"], capture_output=True, text=True, timeout=30).stdout
        node = node.split("\n")[0] + " NodeAddr=127.0.0.1"  # reached on localhost, whatever DNS says
        (self.folder / "slurm.conf").write_text(SLURM_CONF.format(
            host=host, folder=self.folder, ctld_port=free_port(), d_port=free_port(), node=node))
        self.daemon(slurmctld, "-D", "-i", "-f", str(self.folder / "slurm.conf"))
        self.daemon(slurmd, "-D", "-f", str(self.folder / "slurm.conf"), "-N", host)
        wait_for(lambda: self.node_state() == "idle", "the SLURM node idle in sinfo", 60)

    def node_state(self) -> str:
        for proc in self.procs:
            if proc.poll() is not None:
                logs = "\n".join(p.read_text()[-1500:] for p in self.folder.glob("*.log"))
                raise Unavailable(f"{proc.args[0]} exited with {proc.returncode}: {logs}")
        return self.command("sinfo", "-h", "-o", "%T", check=False).strip()

    def stop(self) -> None:
        if self.procs:
            self.command("scancel", "--full", "--partition=test", check=False)
        for proc in reversed(self.procs):  # slurmd, slurmctld, then munged
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=15)
        shutil.rmtree(self.folder, ignore_errors=True)


def slurm() -> Iterator[Slurm]:
    """A one-node SLURM cluster for a fixture."""
    return serve(Slurm(Path(tempfile.mkdtemp(prefix="trainer-slurm-"))), "SLURM cluster")
