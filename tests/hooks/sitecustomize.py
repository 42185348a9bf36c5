"""A test hook for SLURM jobs, imported by every Python process that has tests/hooks on its
PYTHONPATH (Python imports `sitecustomize` at start-up); the trainer has no hooks of its own.

With TRAINER_TEST_SCANCEL_AT=N, a process inside a SLURM job (SLURM_JOB_ID set) cancels its own job
with `scancel` at its N-th write of checkpoints/last.pt, and waits there until SLURM's SIGTERM has
reached the trainer's handler: the cancel lands at an exact moment of the run, not at a time.
"""

import os

if os.environ.get("TRAINER_TEST_SCANCEL_AT") and os.environ.get("SLURM_JOB_ID"):
    import signal
    import subprocess
    import time
    from pathlib import Path

    import trainer.checkpoint

    _at, _writes = int(os.environ["TRAINER_TEST_SCANCEL_AT"]), [0]
    _save = trainer.checkpoint.save_checkpoint

    def _save_or_cancel(state: dict, path: os.PathLike, **kwargs) -> None:
        if Path(path).name == "last.pt":
            _writes[0] += 1
            if _writes[0] == _at:
                stop = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)  # trainer's StopOnSignal
                subprocess.run(["scancel", os.environ["SLURM_JOB_ID"]], check=True, timeout=30)
                deadline = time.monotonic() + 60
                while stop is not None and stop.received is None and time.monotonic() < deadline:
                    time.sleep(0.05)
        _save(state, path, **kwargs)

    trainer.checkpoint.save_checkpoint = _save_or_cancel
