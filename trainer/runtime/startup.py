"""What trainer sets when it is first imported, before anything here imports torch: OpenMP's wait
policy, and the package version. Imported by trainer/__init__.py; imports nothing of trainer."""

import os
import sys

__version__ = "0.1.0"

# OpenMP's wait policy, before anything here imports torch: OpenMP (libgomp) reads OMP_WAIT_POLICY
# once, when torch loads it. Its default spins a while at every barrier, which makes two torch
# threads 10-35x slower than one when another process keeps a core busy; PASSIVE threads sleep
# instead (docs/guides/speed.md, scripts/bench_threads.py). A user's own value is kept. Processes started
# from this one (joblib's workers, `python -m trainer` subprocesses) inherit it. A process that
# imported torch before trainer keeps the policy it had then (trainer.runtime.device.wait_policy says which).
TORCH_FIRST = "torch" in sys.modules
WAIT_POLICY_AT_LOAD = os.environ.get("OMP_WAIT_POLICY")  # what torch's OpenMP read, if TORCH_FIRST
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
if not TORCH_FIRST:
    WAIT_POLICY_AT_LOAD = os.environ["OMP_WAIT_POLICY"]
