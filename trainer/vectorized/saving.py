"""The group's checkpoints: one file per epoch for all its running members, written in the background.

A job alone writes `checkpoints/last.pt` every epoch, each write fsynced on its own. A group of M
members writing M such files per epoch spent 5.7 s of a 24 s group on them at M = 64 digits nets
(this project's 2-core CPU: the fsyncs do not overlap). So a group writes its running members'
epoch-end states into one file, `GROUP_FILE` in its first member's `checkpoints/` (one atomic write,
one fsync), on a background thread while the next epoch trains. Each member's folder gets once a
`POINTER` to it (with the member's unchanging checkpoint entries: config, preprocessing, data
fingerprint, version). A member's ordinary `last.pt` is written when it leaves the group: at its end,
on a signal, or when the group fails; its `best.pt` at every improvement as a run alone writes it,
before the group file, so that the best epoch a member's newest state records is on disk first.

A sweep killed without warning (SIGKILL, power loss) leaves members whose newest state is in the
group file: `recover(out)`, which `Member.open` runs on `resume=true`, writes it out as that member's
`last.pt`, and the ordinary resume goes on from there.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from trainer.checkpoint import load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)

GROUP_FILE = "group.pt"  # in the group's first member's checkpoints/: every running member's last state
OWN_THREADS = 8  # threads writing members' own files at once
T = TypeVar("T")
POINTER = "in_group.pt"  # in each member's checkpoints/: where its group file is, and its fixed entries


class GroupSaver:
    """Writes a group's checkpoints in order on one background thread."""

    def __init__(self, folders: Mapping[str, Path], extras: Mapping[str, dict[str, Any]]) -> None:
        """`folders`: each member's checkpoints folder by member name (the first holds the group file);
        `extras`: each member's checkpoint entries that never change during the run."""
        first = next(iter(folders.values()))
        self.path, self.token = first / GROUP_FILE, uuid.uuid4().hex
        self.path.unlink(missing_ok=True)  # a file of an earlier group: never taken for this one's
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="group-checkpoints")
        self.own = ThreadPoolExecutor(max_workers=OWN_THREADS, thread_name_prefix="member-files")
        self.folders = dict(folders)
        pointers = {name: {"group": os.path.relpath(self.path, folder), "token": self.token, "name": name,
                           "extras": extras[name]} for name, folder in folders.items()}
        self.pending: Future | None = self.pool.submit(self._point, pointers)

    def _point(self, pointers: dict[str, dict[str, Any]]) -> None:
        for name, pointer in pointers.items():
            save_checkpoint(pointer, self.folders[name] / POINTER)

    def wait(self) -> None:
        """Until everything submitted is on disk (raises what the writes raised)."""
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.result()

    def submit(self, bests: Mapping[str, dict[str, Any]], lasts: Mapping[str, dict[str, Any]],
               epoch: int) -> None:
        """Write the members' new best.pt files, then the group file of `lasts` (without the fixed
        entries), after what was submitted before."""
        self.wait()
        self.pending = self.pool.submit(self._write, dict(bests), dict(lasts), epoch)

    def _write(self, bests: dict[str, dict[str, Any]], lasts: dict[str, dict[str, Any]], epoch: int) -> None:
        for name, ckpt in bests.items():
            save_checkpoint(ckpt, self.folders[name] / "best.pt")
        if lasts:
            save_checkpoint({"token": self.token, "epoch": epoch, "members": lasts}, self.path)

    def each(self, work: Callable[[T], Any], items: Iterable[T]) -> None:
        """`work(item)` for every item on several threads, after what was submitted before: the
        members' own files and ends (each fsynced: 64 members' last.pt and best.pt took 16 ms a file
        one after another on this project's busy 2-core CPU, their waits overlap on threads)."""
        self.wait()
        for future in [self.own.submit(work, item) for item in items]:
            future.result()

    def left(self, name: str) -> None:
        """A member's own last.pt is written: its pointer goes (the group file no longer speaks for it)."""
        (self.folders[name] / POINTER).unlink(missing_ok=True)

    def close(self) -> None:
        """After every member has left: the group file goes, the folders hold ordinary checkpoints."""
        self.wait()
        self.pool.shutdown()
        self.own.shutdown()
        self.path.unlink(missing_ok=True)


def recover(out: Path) -> bool:
    """Write the newest state of the member in `out` from its group file into its `last.pt`, when
    the group file holds a later step than `last.pt` (a group killed without warning). True if so."""
    pointer_path = out / "checkpoints" / POINTER
    if not pointer_path.is_file():
        return False
    pointer = load_checkpoint(pointer_path)
    group_path = (pointer_path.parent / pointer["group"]).resolve()
    group = load_checkpoint(group_path) if group_path.is_file() else None
    if group is None or group["token"] != pointer["token"] or pointer["name"] not in group["members"]:
        return False
    entry = group["members"][pointer["name"]]
    last = out / "checkpoints" / "last.pt"
    if last.is_file() and load_checkpoint(last)["fit"]["step"] >= entry["fit"]["step"]:
        return False
    save_checkpoint({**entry, **pointer["extras"]}, last)
    log.info("%s: its newest state (epoch %d) was in the group file %s: written to %s", out.name,
             group["epoch"], group_path, last)
    return True
