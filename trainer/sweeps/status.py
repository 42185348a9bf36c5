"""Whether a sweep's job that has no metrics.json yet is still running or has failed: from the record
of the process that runs it (trainer.sweeps.jobs.record_process), its log and its files' times."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from trainer.sweeps.jobs import PROCESS_FILE


def read_process(job_dir: Path) -> dict[str, Any] | None:
    """The job's process record, or None (older folders, or a job that never started)."""
    try:
        record = json.loads((job_dir / PROCESS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("pid"), int) else None


def process_alive(record: dict[str, Any]) -> bool | None:
    """Whether the recorded process still exists; None when it ran on another machine."""
    return pid_alive(record["pid"]) if record.get("host") == socket.gethostname() else None


def pid_alive(pid: int) -> bool:
    """Whether process `pid` of this machine exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def unfinished_status(job_dir: Path, now: float, stale_s: float, superseded: bool = False) -> str:
    """`running` or `failed` for a job folder without metrics.json.

    failed: its log has an ERROR line; or its recorded process has ended (same machine), or went
    on to a later job (Hydra's basic launcher runs the jobs one after another in one process); or,
    without a record (older folders), the process that wrote its events has ended; or none of its
    files changed for `stale_s` seconds (a job on another machine). Running otherwise.
    """
    for path in job_dir.glob("*.log"):
        if "][ERROR]" in path.read_text(errors="replace"):
            return "failed"
    record = read_process(job_dir)
    alive = process_alive(record) if record is not None else None
    if alive is False or (alive and superseded):
        return "failed"
    if alive:
        return "running"
    if record is None and writer_gone(job_dir):
        return "failed"
    newest = max((p.stat().st_mtime for p in job_dir.rglob("*") if p.is_file()), default=0.0)
    return "running" if now - newest < stale_s else "failed"


def superseded(job_dir: Path, others: list[Path]) -> bool:
    """Whether the process that ran this job started another job after it (a sequential launcher)."""
    mine = read_process(job_dir)
    if mine is None:
        return False
    records = [r for d in others if (r := read_process(d)) is not None]
    return any((r.get("host"), r["pid"]) == (mine.get("host"), mine["pid"])
               and r.get("started", 0) > mine.get("started", 0) for r in records)


def writer_gone(job_dir: Path) -> bool:
    """Whether an event file was written by a process on this machine that no longer exists.

    TensorBoard names event files `events.out.tfevents.TIME.HOST.PID.N`.
    """
    files = list(job_dir.glob("events.out.tfevents.*"))
    for path in files:
        parts = path.name.split(".")
        host, pid = ".".join(parts[4:-2]), parts[-2]
        if not pid.isdigit() or process_alive({"host": host, "pid": int(pid)}) is not False:
            return False
    return bool(files)
