"""trainer: train multilayer perceptrons from Hydra configs, on CUDA when available."""

import os
import sys

# OpenMP's wait policy, before anything here imports torch: OpenMP (libgomp) reads OMP_WAIT_POLICY
# once, when torch loads it. Its default spins a while at every barrier, which makes two torch
# threads 10-35x slower than one when another process keeps a core busy; PASSIVE threads sleep
# instead (README "Speed", scripts/bench_threads.py). A user's own value is kept. Processes started
# from this one (joblib's workers, `python -m trainer` subprocesses) inherit it. A process that
# imported torch before trainer keeps the policy it had then (trainer.runtime.device.wait_policy says which).
TORCH_FIRST = "torch" in sys.modules
WAIT_POLICY_AT_LOAD = os.environ.get("OMP_WAIT_POLICY")  # what torch's OpenMP read, if TORCH_FIRST
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
if not TORCH_FIRST:
    WAIT_POLICY_AT_LOAD = os.environ["OMP_WAIT_POLICY"]

__version__ = "0.1.0"

from trainer.sweeps import jobs as _jobs  # noqa: E402,F401  registers the resolvers configs/config.yaml names


def __getattr__(name: str):  # `from trainer import Trainer` without loading torch on `import trainer`
    if name in ("Trainer", "FitResult"):
        from trainer import api

        return getattr(api, name)
    raise AttributeError(f"module 'trainer' has no attribute {name!r}")
