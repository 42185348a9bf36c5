"""Files written atomically: into a temporary file beside the target, fsynced, then renamed over
it, so that a crash mid-write leaves the previous file intact; a failed write is one paragraph."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainer.runtime.errors import StorageError

ADVICE = {
    errno.ENOSPC: "the disk is full: free space (or point hydra.run.dir at another disk)",
    errno.EDQUOT: "the disk quota is used up: free space (or point hydra.run.dir at another disk)",
    errno.EROFS: "the file system is read-only: point hydra.run.dir at a folder you can write to",
    errno.EACCES: "permission denied: point hydra.run.dir at a folder you can write to",
    errno.EPERM: "permission denied: point hydra.run.dir at a folder you can write to",
}


def storage_error(path: Path, exc: OSError) -> StorageError:
    """An OSError while writing `path`, as the one-paragraph error the user reads."""
    advice = ADVICE.get(exc.errno, "check that the folder exists and can be written to")
    return StorageError(f"cannot write {path}: {exc.strerror or exc} (errno {exc.errno}); {advice}. "
                        "Files written before are intact: continue with the same arguments plus "
                        "resume=true once the problem is fixed")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    """Write through `write(file)` into a temporary file beside `path`, fsync, then rename."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise storage_error(path, exc) from exc
        raise


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete temporary files that a run killed in the middle of a write left in `folder`."""
    stale = list(Path(folder).glob(".*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def write_json(data: dict[str, Any], path: str | os.PathLike) -> None:
    """Write `data` as indented JSON, atomically."""
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    atomic_write(Path(path), lambda f: f.write(text.encode()))
