"""Device resolved once, from a string."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import torch

from trainer.runtime import startup
from trainer.runtime.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")
EVAL_BATCH = 8192  # rows an evaluation forward pass takes at once (trainer.training.loop.evaluate)

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when available, else the CPU; `cuda` without CUDA is a config error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device={name} was asked for but CUDA is not available on this machine; "
                "use device=auto (CUDA when present, else CPU) or device=cpu"
            )
        return torch.device(name)
    raise ConfigError(f"device={name!r} is not known; choose one of {list(DEVICES)} (or cuda:N)")


# threads=auto: one intra-op thread up to this many parameters x batch samples (a step's work,
# roughly), torch's default above it. Measured on this project's idle 2-core CPU (SGD steps, µs per
# step, 1 thread vs 2): 784-256-10 at batch 1 (work 2e5) 158 vs 174, at batch 16 (3e6) 309 vs 260,
# at batch 64 (1.3e7) 732 vs 465, at 1024 9,997 vs 5,355; a 26k-parameter net at batch 64 (1.7e6)
# 259 vs 238, at 256 (6.7e6) 638 vs 532. The line sits above the digits-sized steps, which two
# threads speed up by at most 16% on idle cores but slow down 3-4x when other work shares them (a
# 3-epoch default run: 0.31 s on one thread, 1.34 s on two, at a load average of 4). Measured under
# OpenMP's spinning default; trainer now sets OMP_WAIT_POLICY=PASSIVE (trainer/runtime/startup.py), which
# keeps two threads from stalling on shared cores but pays a wake-up per parallel op on idle ones:
# rerun `make bench-threads` on an idle machine before moving the line (BENCHMARKS.md).
ONE_THREAD_WORK = 4e6

# torch's count before any run changed it: the cores, or OMP_NUM_THREADS where set (pytest's workers
# and joblib's loky workers set it so that processes sharing the cores don't oversubscribe them).
DEFAULT_THREADS = torch.get_num_threads()


def wait_policy() -> str:
    """OpenMP's wait policy in this process, as its environment had it when torch loaded: `passive`
    (trainer/runtime/startup.py's default), `active`, or `default` (libgomp: spin a while, then sleep)."""
    value = (startup.WAIT_POLICY_AT_LOAD or "").strip().lower()
    return value if value in ("active", "passive") else "default"


def auto_threads(params: int, batch_size: int, device: torch.device) -> int:
    """threads=auto's count for a forward (and backward) pass of this size: 1 for a small one on the
    CPU, else torch's default."""
    return 1 if device.type == "cpu" and params * batch_size <= ONE_THREAD_WORK else DEFAULT_THREADS


def set_threads(threads: int | str, params: int, batch_size: int, device: torch.device) -> int:
    """Set torch's intra-op CPU threads: `N`, or `auto` (1 for a small step on the CPU, else torch's
    default, also after an earlier job of the same process took 1). Returns the count in use."""
    torch.set_num_threads(threads_for(threads, params, batch_size, device))
    n = torch.get_num_threads()
    if n > 1 and startup.TORCH_FIRST and wait_policy() == "default":
        log.debug("torch was imported before trainer, so OpenMP keeps its default wait policy (spin, "
                  "then sleep): %d threads can be much slower than one while other work shares the cores "
                  "(set OMP_WAIT_POLICY=PASSIVE before torch is imported, or threads=1)", n)
    return n


def threads_for(threads: int | str, params: int, batch_size: int, device: torch.device) -> int:
    """The count `set_threads` sets: `N`, or threads=auto's (auto_threads)."""
    return auto_threads(params, batch_size, device) if threads == "auto" else int(threads)


def eval_threads(threads: int | str, params: int, rows: int, device: torch.device) -> int | None:
    """Under threads=auto, validation's count where it differs from the training step's (set by
    set_threads): up to EVAL_BATCH rows at once is more work than a step of a few samples."""
    if threads != "auto":
        return None
    n = auto_threads(params, min(rows, EVAL_BATCH), device)
    return None if n == torch.get_num_threads() else n


@contextlib.contextmanager
def num_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op CPU threads set to `n` inside the block (None: left as they are)."""
    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
