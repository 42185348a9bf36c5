"""Who may ask trials, and which trials are still running: the locks and the heartbeat of a search
shared by several processes (trainer_optuna_sweeper._search).

A lock file in the sweep folder serializes the processes of one machine (or of machines that share
the disk); a study in PostgreSQL adds an advisory lock in the database (machines that share no disk).
"""

from __future__ import annotations

import fcntl
import functools
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from trainer.runtime.errors import ConfigError


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Only one process of the search counts and asks trials at a time."""
    with open(folder / ".optuna.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@functools.cache
def lock_engine(url: str) -> Any:
    import sqlalchemy

    return sqlalchemy.create_engine(url, pool_size=1)


@contextmanager
def database_locked(url: str, study_name: str) -> Iterator[None]:
    """With a study in PostgreSQL, only one process of the search, on any machine, counts and asks
    trials at a time: a session advisory lock, which the server drops when a killed process's
    connection goes. Other databases rely on the sweep folder's lock file alone."""
    if not url.startswith("postgresql"):
        yield
        return
    from sqlalchemy import text

    key = zlib.crc32(f"trainer_optuna_sweeper:{study_name}".encode())
    try:
        conn = lock_engine(url).connect()
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
    except Exception as exc:  # a missing driver, a server that cannot be reached
        raise ConfigError(f"hydra.sweeper.storage={url} cannot be opened ({type(exc).__name__}: {exc}); "
                          "give an SQLAlchemy URL such as postgresql+psycopg://user:password@host/db "
                          "(with its driver installed: pip install '.[postgres]')") from None
    try:
        yield
    finally:
        conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
        conn.close()


class Heartbeat:
    """Records a heartbeat for the running trials every `interval` seconds, in a thread."""

    def __init__(self, storage: Any, trial_ids: list[int], interval: int) -> None:
        self.storage, self.trial_ids, self.interval = storage, trial_ids, interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while not self.stop.wait(self.interval):
            for trial_id in self.trial_ids:
                self.storage.record_heartbeat(trial_id)

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
