"""The run folder: one process at a time, never a run trained over another, and nothing written
into a folder that holds a run before the new run is accepted there.

Hydra writes `.hydra/config.yaml` (and hydra.yaml, overrides.yaml) and opens the job's log file
before the run starts. For a run that could be refused (a resume, or a folder that holds a run),
`hydra.output_subdir` points it at `.hydra/pending-TOKEN` instead (see configs/config.yaml and
`trainer.sweeps.jobs.hydra_subdir`), and `RunFolder` holds back the log lines meant for the folder's log
file. `RunFolder.commit` moves those config files over the old ones and writes the held lines once
the run is accepted; a refused or finished run discards them, leaving the folder as it was.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from trainer.runtime.errors import ConfigError, FolderRefused
from trainer.runtime.files import storage_error

log = logging.getLogger(__name__)

LOCK = ".lock"
# `RUN/.overwritten-TIME/`: the files of the run that `overwrite=true` replaced. Inside the folder,
# so the old run stays with its folder and a sweep folder gains no job-like sibling;
# `trainer.report.sweep` skips these folders.
MOVED = ".overwritten-"


def run_files(out: Path) -> list[str]:
    """What in `out` shows that a run trained there: checkpoints, metrics.json, event files."""
    found = []
    ckpts = out / "checkpoints"
    if ckpts.is_dir() and any(ckpts.iterdir()):
        found.append("checkpoints/")
    if (out / "metrics.json").is_file():
        found.append("metrics.json")
    if any(out.glob("events.out.tfevents.*")):
        found.append("TensorBoard event files")
    return found


def continues_in(out: Path, resume: bool, ckpt: str | None) -> bool:
    """Whether the run continues the one in `out`: `resume=true`, or `ckpt=` a checkpoint of `out`."""
    if resume:
        return True
    if not ckpt:
        return False
    path = Path(ckpt).expanduser()
    folder = path if path.is_dir() else path.parent.parent
    return folder.resolve() == out.resolve()


def move_aside(out: Path) -> Path:
    """Move every file of the run in `out` into a new `out/.overwritten-TIME/` (the lock and the
    staged `.hydra/pending-*` of the new run stay) and return that folder."""
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    dest, n = out / f"{MOVED}{stamp}", 1
    while dest.exists():
        n += 1
        dest = out / f"{MOVED}{stamp}-{n}"
    try:
        dest.mkdir()
        for entry in sorted(out.iterdir()):
            if entry.name == LOCK or entry.name.startswith(MOVED):
                continue
            if entry.name == ".hydra" and entry.is_dir():
                (dest / ".hydra").mkdir()
                for item in entry.iterdir():
                    if not item.name.startswith("pending-"):
                        os.replace(item, dest / ".hydra" / item.name)
                continue
            os.replace(entry, dest / entry.name)
    except OSError as exc:
        raise storage_error(dest, exc) from None
    return dest


class _Buffer(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class HeldLog:
    """The log files Hydra opened inside `out` (the job's `trainer.log`), held back: their lines are
    kept in memory until `release` writes them, or dropped by `drop` (the console still shows them).
    Made by `hold_log`, once per folder."""

    def __init__(self, out: Path) -> None:
        root, where = logging.getLogger(), out.resolve()
        self.where = where
        self.files = [h for h in root.handlers
                      if isinstance(h, logging.FileHandler) and Path(h.baseFilename).parent == where]
        self.buffer = _Buffer()
        for handler in self.files:
            root.removeHandler(handler)
        root.addHandler(self.buffer)

    def release(self) -> None:
        _HELD.pop(self.where, None)
        root = logging.getLogger()
        root.removeHandler(self.buffer)
        for handler in self.files:
            for record in self.buffer.records:
                if record.levelno >= handler.level:  # as the logger would have filtered it
                    handler.handle(record)
            root.addHandler(handler)
        self.files = []

    def reopen(self) -> None:
        """Close the files, so that the next line opens them again (after the old one moved)."""
        for handler in self.files:
            handler.close()

    def drop(self) -> None:
        _HELD.pop(self.where, None)
        logging.getLogger().removeHandler(self.buffer)
        for handler in self.files:
            handler.close()
            path = Path(handler.baseFilename)
            if path.is_file() and path.stat().st_size == 0:  # opened (created) by Hydra for this run
                path.unlink()
        self.files = []


def discard_staged(staged: Path | None) -> None:
    """Remove the config files Hydra staged (`staged`: trainer.runtime.job.JobContext.staged_dir) for a
    run that stopped before reaching its folder."""
    if staged is not None:
        shutil.rmtree(staged, ignore_errors=True)


def staged_hydra_dir(out: Path) -> Path | None:
    """Where Hydra wrote this job's config files, when that is a pending folder inside `.hydra`."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    if not HydraConfig.initialized() or OmegaConf.is_missing(HydraConfig.get().runtime, "output_dir"):
        return None  # no job: Hydra's config composed, e.g. by a test, but nothing run with it
    sub = HydraConfig.get().output_subdir
    if sub is None or Path(sub) == Path(".hydra"):
        return None
    return Path(HydraConfig.get().runtime.output_dir) / sub


_HELD: dict[Path, HeldLog] = {}


def hold_log(out: Path) -> HeldLog:
    """Hold back the log files opened inside `out` until the run there is accepted: the one
    `HeldLog` of that folder (a launcher may hold a job's before the job opens its folder)."""
    key = out.resolve()
    if key not in _HELD:
        _HELD[key] = HeldLog(out)
    return _HELD[key]


def settle(out: Path, staged: Path | None) -> bool:
    """A job that no run took (its group stopped before it, or it failed before opening its folder):
    its held log lines are written where the folder holds no run and dropped where it does, and the
    config files Hydra staged for it (`staged`) are removed. True if its lines were written."""
    held = _HELD.get(out.resolve())
    fresh = held is not None and not run_files(out)
    if held is not None:
        held.release() if fresh else held.drop()
    if staged is not None:
        shutil.rmtree(staged, ignore_errors=True)
    return fresh


class RunFolder:
    """`with RunFolder(out):` holds an exclusive lock on the run folder (released by the OS when
    the process dies, however it dies); a second process stops at once, naming the first.

    A folder that holds a run is trained into only by a run that continues it (`resume`, or `ckpt`
    in that folder: accepted by `commit` once its checks pass), or after `overwrite` moved the old
    run's files aside; otherwise `FolderRefused`, with the folder left byte for byte as it was.
    An empty folder is accepted at once. `on_accept` runs once the run is accepted (the process
    record of a sweep job). `staged`: where Hydra wrote the job's config files, when that is a
    pending folder (trainer.runtime.job.JobContext.staged_dir).
    """

    def __init__(self, out: Path, lock: bool = True, *, resume: bool = False, ckpt: str | None = None,
                 overwrite: bool = False, on_accept: Callable[[], None] | None = None,
                 staged: Path | None = None) -> None:
        self.out, self.lock = out, lock
        self.resume, self.ckpt, self.overwrite, self.on_accept = resume, ckpt, overwrite, on_accept
        self.staged = staged
        self.moved: Path | None = None  # where overwrite=true put the old run's files
        self.accepted = False
        self._fd: int | None = None
        self._log: HeldLog | None = None

    def __enter__(self) -> RunFolder:
        if self.lock:  # rank 0 speaks for the folder
            self._log = hold_log(self.out)
        try:
            self._hold()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _hold(self) -> None:
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            if self.lock:
                new_lock = not (self.out / LOCK).exists()
                self._fd = os.open(self.out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise storage_error(self.out / LOCK, exc) from None
        if self._fd is None:
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(self._fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(self._fd)
            self._fd = None
            raise FolderRefused(f"another process (pid {other}) is already training in {self.out}; "
                                f"wait for it to end, or stop it (kill {other}) and then continue "
                                "with resume=true; to train both, give this one another "
                                "hydra.run.dir") from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"{os.getpid()}\n".encode())
        try:
            self._check()
        except (FolderRefused, ConfigError):
            if new_lock:  # the folder as it was: without a lock file, if it had none
                (self.out / LOCK).unlink(missing_ok=True)
            raise

    def _check(self) -> None:
        """Refuse a folder that holds a run this one does not continue; accept an empty one."""
        found = run_files(self.out)
        if found and continues_in(self.out, self.resume, self.ckpt):
            if self.overwrite:  # resume=true with it is refused by trainer.config.validate
                raise ConfigError(f"ckpt={self.ckpt} is a checkpoint of {self.out} itself, whose files "
                                  "overwrite=true would move aside: pass one of them")
            return  # accepted by commit(), once the resume's checks pass
        if found and not self.overwrite:
            raise FolderRefused(
                f"{self.out} holds a run ({', '.join(found)}), and a new run would train over it. "
                "Continue it with resume=true, train into another folder (another hydra.run.dir, "
                f"or hydra.sweep.dir for a sweep), or pass overwrite=true to move its files into "
                f"{self.out}/{MOVED}TIME/ first")
        if found:
            if self._log is not None:
                self._log.reopen()
            self.moved = move_aside(self.out)
            log.warning("overwrite=true: the files of the run that was in %s are now in %s", self.out,
                        self.moved)
        self.commit()

    def commit(self) -> None:
        """Accept the run: Hydra's config files for it replace the previous ones, its held log lines
        are written, `on_accept` runs. Once; later calls do nothing."""
        if self.accepted:
            return
        self.accepted = True
        if self.staged is not None and self.staged.is_dir():
            for path in sorted(self.staged.iterdir()):
                target = self.staged.parent / path.name
                try:
                    os.replace(path, target)
                except OSError as exc:
                    raise storage_error(target, exc) from None
        self.discard()
        if self._log is not None:
            self._log.release()
            self._log = None
        if self.on_accept is not None:
            self.on_accept()

    def discard(self) -> None:
        if self.staged is not None:
            shutil.rmtree(self.staged, ignore_errors=True)
            self.staged = None

    def __exit__(self, *exc: object) -> None:
        self.discard()  # still there: the run stopped before its checks passed
        if self._log is not None:  # refused, or a finished run: its folder's log is not written
            self._log.drop()
            self._log = None
        if self._fd is not None:
            for stale in (self.out / ".hydra").glob("pending-*"):  # held: a refused or killed process's
                shutil.rmtree(stale, ignore_errors=True)
            os.ftruncate(self._fd, 0)  # the pid names the holder only while it holds the lock
            os.close(self._fd)
            self._fd = None
