"""The group's checkpoints: one file per epoch for all its running members, written in the background.

A job alone writes `checkpoints/last.pt` every epoch and `best.pt` at every improvement, each write
fsynced on its own. A group of M members writing those files spent 5.7 s of a 24 s group on them at
M = 64 digits nets on this project's 2-core CPU (the fsyncs of small files barely overlap). So a
group writes its running members' epoch-end states, and the states of their best epochs, into one
file, `group_file()` beside its members' folders (one atomic write, one fsync), on a
background thread while the next epoch trains, at most every `GROUP_SECONDS`. Each member's folder
gets once a `POINTER` to it (with the member's unchanging checkpoint entries: config,
preprocessing, data fingerprint, version).
A member's own `best.pt` and `last.pt` are written when it leaves the group: at its end, on a signal,
or when the group fails (from the states kept in memory, newer than the file).

A sweep killed without warning (SIGKILL, power loss) leaves members whose newest state is in the
group file: `recover(out)`, which `Member.open` and `run` call on `resume=true`, writes it out as that
member's `best.pt` and `last.pt` (in that order, as a run writes them), and the resume goes on as
from any checkpoint.
"""

from __future__ import annotations

import copy
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

from trainer.storage.checkpoint import load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)

# The group file is written at the first epoch's end, then at the first epoch end at least this many
# seconds after the last write. At M = 64 digits nets the file is 29 MB (every member's last and best
# state) and writing it every epoch took 6 to 12 s of a 26 s group on this project's busy 2-core CPU;
# every 30 s it costs a write or two, and a sweep killed without warning loses at most 30 s and an
# epoch of training. Signals and crashes are not affected: then every member's own files are written.
GROUP_SECONDS = 30.0
OWN_THREADS = 8  # threads writing members' own files at once
T = TypeVar("T")
POINTER = "in_group.pt"  # in each member's checkpoints/: where its group file is, and its fixed entries


class Member(Protocol):
    """What the group file needs of a member (trainer.vectorized.member.Member, the layer above)."""

    key: str  # its name in the group file
    out: Path  # its run folder
    save: Any  # its Checkpointer: `extras`, `due(state)`
    state: Any  # its FitState: `status`
    logger: Any  # its RunLogger: `flush()`

    def pruned_stop(self) -> None: ...


class GroupSaver:
    """A group's checkpoints: the group file on one background thread, the members' own files on
    several threads when they leave."""

    def __init__(self, members: Sequence[Member]) -> None:
        self.folders = {m.key: m.out / "checkpoints" for m in members}
        self.extras = {m.key: m.save.extras for m in members}
        self.path, self.token = group_file(members[0].out), uuid.uuid4().hex
        self.path.unlink(missing_ok=True)  # a file of an earlier group: never taken for this one's
        self.lasts: dict[str, dict[str, Any]] = {}  # each running member's newest checkpoint
        self.bests: dict[str, dict[str, Any]] = {}  # and the one of its best epoch
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="group-checkpoints")
        self.own = ThreadPoolExecutor(max_workers=OWN_THREADS, thread_name_prefix="member-files")
        pointers = {key: {"group": os.path.relpath(self.path, folder), "token": self.token, "name": key,
                          "extras": self.extras[key]} for key, folder in self.folders.items()}
        self.pending: Future | None = self.pool.submit(self._point, pointers)
        self.written_at: float | None = None  # when the last group file was submitted

    def _point(self, pointers: dict[str, dict[str, Any]]) -> None:
        for key, pointer in pointers.items():
            save_checkpoint(pointer, self.folders[key] / POINTER)

    def wait(self) -> None:
        """Until everything submitted is on disk (raises what the writes raised)."""
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.result()

    def epoch_end(self, members: Sequence[Member], epoch: int) -> None:
        """The epoch's checkpoints, as each member's Checkpointer decides them (and then a search's
        pruning, as fit() does): a member that ends writes its own files now, the others' states go
        into the group file."""
        leaving = []
        for m in members:
            if m.state.status == "diverged":  # no checkpoint, as fit() writes none
                continue
            files = m.save.due(m.state)
            m.pruned_stop()
            if m.state.status != "running":
                leaving.append((m, files))
                continue
            for name, entries in (("best.pt", self.bests), ("last.pt", self.lasts)):
                if name in files:
                    entries[m.key] = snapshot(files[name], self.extras[m.key])
            if files:
                m.logger.flush()  # its events never lag its checkpoint (a resume truncates them there)
        self.each(lambda pair: self.own_files(*pair), leaving)
        if self.written_at is None or time.monotonic() - self.written_at >= GROUP_SECONDS:
            self.wait()
            self.written_at = time.monotonic()
            self.pending = self.pool.submit(self._write, dict(self.bests), dict(self.lasts), epoch)

    def _write(self, bests: dict[str, dict[str, Any]], lasts: dict[str, dict[str, Any]], epoch: int) -> None:
        if lasts:
            save_checkpoint({"token": self.token, "epoch": epoch, "members": lasts, "bests": bests},
                            self.path)

    def own_files(self, m: Member, files: dict[str, dict[str, Any]] | None = None) -> None:
        """Member m's own checkpoint files as it leaves the group: what its Checkpointer decides now
        (`files`, or decided here), with its best epoch's file first where only the group file held it."""
        files = m.save.due(m.state) if files is None else files
        best = self.bests.get(m.key)
        if "best.pt" not in files and best is not None:
            files = {"best.pt": {**best, **self.extras[m.key]}, **files}
        m.logger.flush()
        for name, ckpt in files.items():
            save_checkpoint(ckpt, self.folders[m.key] / name)

    def stored_files(self, m: Member) -> None:
        """The files a run alone would hold after its last validated epoch (its best and last
        states, kept for the group file): for a member that diverged, or a group that failed."""
        for name, entries in (("best.pt", self.bests), ("last.pt", self.lasts)):
            if m.key in entries:
                save_checkpoint({**entries[m.key], **self.extras[m.key]}, self.folders[m.key] / name)

    def each(self, work: Callable[[T], Any], items: Iterable[T]) -> None:
        """`work(item)` for every item on several threads, after what was submitted before: the
        members' own files and ends (each fsynced: 64 members' last.pt and best.pt took 16 ms a file
        one after another on this project's busy 2-core CPU, their waits overlap on threads)."""
        self.wait()
        for future in [self.own.submit(work, item) for item in items]:
            future.result()

    def left(self, key: str) -> None:
        """Member `key` has left with its own files: the group file no longer speaks for it."""
        self.lasts.pop(key, None)
        self.bests.pop(key, None)
        (self.folders[key] / POINTER).unlink(missing_ok=True)

    def close(self) -> None:
        """After every member has left: the group file goes, the folders hold ordinary checkpoints."""
        self.wait()
        self.pool.shutdown()
        self.own.shutdown()
        self.path.unlink(missing_ok=True)


def group_file(first: Path) -> Path:
    """The group file of the group whose first member writes into `first`: a hidden file beside the
    members' folders (in the sweep's folder), so that the job folders hold only ordinary files."""
    return first.parent / f".group-{first.name}.pt"


def snapshot(ckpt: dict[str, Any], extras: dict[str, Any]) -> dict[str, Any]:
    """A member's checkpoint for the group file, which another thread writes while training goes on:
    without the entries that never change, and with copies of those that may still refer to live
    objects (the averaged weights, the schedule); the weights, optimizer state and random states are
    copies already."""
    fresh = ("model", "optimizer", "rng")
    return {k: v if k in fresh else copy.deepcopy(v) for k, v in ckpt.items() if k not in extras}


def recover(out: Path) -> bool:
    """Write the newest state of the member in `out` from its group file into its `best.pt` and
    `last.pt`, when the group file holds a later step than `last.pt` (a group killed without warning).
    True if so."""
    pointer_path = out / "checkpoints" / POINTER
    if not pointer_path.is_file():
        return False
    pointer = load_checkpoint(pointer_path)
    group_path = (pointer_path.parent / pointer["group"]).resolve()
    group = load_checkpoint(group_path) if group_path.is_file() else None
    if group is None or group["token"] != pointer["token"] or pointer["name"] not in group["members"]:
        return False
    entry, best = group["members"][pointer["name"]], group["bests"].get(pointer["name"])
    last = out / "checkpoints" / "last.pt"
    if last.is_file() and load_checkpoint(last)["fit"]["step"] >= entry["fit"]["step"]:
        pointer_path.unlink()
        release(group_path, pointer["token"])
        return False
    if best is not None:
        save_checkpoint({**best, **pointer["extras"]}, out / "checkpoints" / "best.pt")
    save_checkpoint({**entry, **pointer["extras"]}, last)
    pointer_path.unlink()  # its own files speak for it now
    log.info("%s: its newest state (epoch %d) was in the group file %s: written to %s", out.name,
             group["epoch"], group_path, last)
    release(group_path, pointer["token"])
    return True


def release(group_path: Path, token: str) -> None:
    """Remove the group file once no member's pointer names it any more (each member's `recover`
    removes its own): a group resumed job by job (the basic launcher) leaves none behind."""
    for pointer_path in group_path.parent.glob(f"*/checkpoints/{POINTER}"):
        pointer = load_checkpoint(pointer_path)
        if pointer["token"] == token and (pointer_path.parent / pointer["group"]).resolve() == group_path:
            return
    group_path.unlink(missing_ok=True)
