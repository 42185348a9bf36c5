"""Test hooks, imported by every Python process that has tests/hooks on its PYTHONPATH (Python
imports `sitecustomize` at start-up); the trainer has no hooks of its own. Each waits for an event,
never for a time, so that a fault or an overlap lands at an exact moment of the run:

- TRAINER_TEST_SCANCEL_AT=N: a process inside a SLURM job (SLURM_JOB_ID set) cancels its own job
  with `scancel` at its N-th write of checkpoints/last.pt, and waits there until SLURM's SIGTERM
  has reached the trainer's handler.
- TRAINER_TEST_WAIT_FOR_JOB=FOLDER: at its first write of checkpoints/last.pt, the process waits
  until FOLDER holds a job folder (another process's sweep has started a job), at most 2 minutes.
"""

import os

if os.environ.get("TRAINER_TEST_WAIT_FOR_JOB") or (os.environ.get("TRAINER_TEST_SCANCEL_AT")
                                                    and os.environ.get("SLURM_JOB_ID")):
    import signal
    import subprocess
    import time
    from pathlib import Path

    import trainer.storage.checkpoint

    _save, _writes = trainer.storage.checkpoint.save_checkpoint, [0]

    def _until(done, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not done() and time.monotonic() < deadline:
            time.sleep(0.05)

    def _save_with_hooks(state: dict, path: os.PathLike, **kwargs) -> None:
        if Path(path).name == "last.pt":
            _writes[0] += 1
            other = os.environ.get("TRAINER_TEST_WAIT_FOR_JOB")
            if other and _writes[0] == 1:
                _until(lambda: any((p / ".hydra").is_dir() for p in Path(other).glob("*")), 120)
            cancel_at = int(os.environ.get("TRAINER_TEST_SCANCEL_AT", "0"))
            if os.environ.get("SLURM_JOB_ID") and _writes[0] == cancel_at:
                stop = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)  # trainer's StopOnSignal
                subprocess.run(["scancel", os.environ["SLURM_JOB_ID"]], check=True, timeout=30)
                _until(lambda: stop is None or stop.received is not None, 60)
        _save(state, path, **kwargs)

    trainer.storage.checkpoint.save_checkpoint = _save_with_hooks
