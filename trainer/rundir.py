"""The run folder: one process at a time, and Hydra's record of a resumed run replaced only once
the resume is accepted.

Hydra writes `.hydra/config.yaml` (and hydra.yaml, overrides.yaml) before the run starts. For a
resume that could be refused, `hydra.output_subdir` points it at `.hydra/pending-TOKEN` instead
(see configs/config.yaml); `RunFolder.commit` moves those files over the old ones after the checks
pass, and a refused resume discards them, leaving the folder as it was.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
from pathlib import Path

from trainer.checkpoint import storage_error
from trainer.errors import ConfigError

log = logging.getLogger(__name__)

LOCK = ".lock"


def staged_hydra_dir(out: Path) -> Path | None:
    """Where Hydra wrote this job's config files, when that is a pending folder inside `.hydra`."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    sub = HydraConfig.get().output_subdir
    if sub is None or Path(sub) == Path(".hydra"):
        return None
    return Path(HydraConfig.get().runtime.output_dir) / sub


class RunFolder:
    """`with RunFolder(out):` holds an exclusive lock on the run folder (released by the OS when
    the process dies, however it dies); a second process stops at once, naming the first."""

    def __init__(self, out: Path, lock: bool = True) -> None:
        self.out, self.lock = out, lock
        self.staged = staged_hydra_dir(out)
        self._fd: int | None = None

    def __enter__(self) -> RunFolder:
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            if self.lock:
                self._fd = os.open(self.out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            self.discard()
            raise storage_error(self.out / LOCK, exc) from None
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                other = os.read(self._fd, 32).decode(errors="replace").strip() or "unknown"
                os.close(self._fd)
                self._fd = None
                self.discard()
                raise ConfigError(f"another process (pid {other}) is already training in {self.out}; "
                                  f"wait for it to end, or stop it (kill {other}) and then continue "
                                  "with resume=true; to train both, give this one another "
                                  "hydra.run.dir") from None
            os.ftruncate(self._fd, 0)
            os.write(self._fd, f"{os.getpid()}\n".encode())
        return self

    def commit(self) -> None:
        """Put the config files Hydra wrote for this run in place of the previous ones."""
        if self.staged is None or not self.staged.is_dir():
            return
        for path in sorted(self.staged.iterdir()):
            target = self.staged.parent / path.name
            try:
                os.replace(path, target)
            except OSError as exc:
                raise storage_error(target, exc) from None
        self.discard()

    def discard(self) -> None:
        if self.staged is not None:
            shutil.rmtree(self.staged, ignore_errors=True)
            self.staged = None

    def __exit__(self, *exc: object) -> None:
        self.discard()  # still there: the run stopped before its checks passed
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # the pid names the holder only while it holds the lock
            os.close(self._fd)
            self._fd = None
