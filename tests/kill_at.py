"""`python tests/kill_at.py MOMENT FILE N -- ARGS`: `python -m trainer ARGS`, which signals itself at an
exact moment of its N-th write of checkpoints/FILE (last.pt or best.pt), instead of at a time.

MOMENT: `before` (SIGKILL before the write begins), `mid` (SIGKILL with the file written to its
temporary name, not yet renamed), `sigint2` (two SIGINTs before the write: a user pressing Ctrl-C
twice, the second stopping at once), or `sigterm_update` (FILE ignored: SIGTERM, as a cluster's
preemption sends it, at the N-th optimizer update, mid-epoch). A test hook from outside: the
trainer has none of its own.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
from pathlib import Path

import trainer.storage.checkpoint as resume
from trainer.training.epoch import Updates

moment, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
args = sys.argv[sys.argv.index("--") + 1:]
writes = updates = 0
save_checkpoint, replace = resume.save_checkpoint, os.replace


def save(state: dict, path: os.PathLike, **kwargs) -> None:
    global writes
    if Path(path).name == name:
        writes += 1
        if writes == n and moment == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        if writes == n and moment == "sigint2":
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
    save_checkpoint(state, path, **kwargs)


def rename(src: str, dst: str) -> None:
    if Path(dst).name == name and writes == n and moment == "mid":
        os.kill(os.getpid(), signal.SIGKILL)
    replace(src, dst)


def count(self: Updates, *a, **k):
    global updates
    updates += 1
    if updates == n:
        os.kill(os.getpid(), signal.SIGTERM)  # the handler only sets a flag: fit stops after this update
    return counted(self, *a, **k)


counted = Updates.count
if moment == "sigterm_update":
    Updates.count = count
resume.save_checkpoint = save
os.replace = rename  # atomic_write renames through it; other files pass through unchanged
sys.argv = ["trainer", *args]
runpy.run_module("trainer", run_name="__main__", alter_sys=True)
