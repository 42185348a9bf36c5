"""What a run records about where it ran: version, commit, output folder, OpenMP's wait policy."""

from __future__ import annotations

import secrets
import subprocess
import time
from pathlib import Path

from trainer.runtime.device import wait_policy
from trainer.runtime.startup import __version__


def git_commit() -> str:
    """The source checkout's commit, or 'unknown' (installed package, no git)."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5, cwd=Path(__file__).parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def new_output_dir() -> Path:
    """A new `outputs/DATE/TIME-ID` for a run from Python given no folder (as the command line makes
    one; never the current folder)."""
    return Path("outputs") / time.strftime("%Y-%m-%d") / f"{time.strftime('%H-%M-%S')}-{secrets.token_hex(3)}"


def run_meta(device: object) -> dict[str, str]:
    """Recorded in metrics.json and every checkpoint. `omp_wait_policy`: how the CPU threads waited
    (trainer.runtime.device.wait_policy), which decides a multi-threaded run's speed on a busy machine."""
    return {"version": __version__, "git_commit": git_commit(), "device": str(device),
            "omp_wait_policy": wait_policy()}
