"""Device resolved once, from a string."""

from __future__ import annotations

import torch

from trainer.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")


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
# 3-epoch default run: 0.31 s on one thread, 1.34 s on two, at a load average of 4).
ONE_THREAD_WORK = 4e6

# torch's count before any run changed it: the cores, or OMP_NUM_THREADS where set (pytest's workers
# and joblib's loky workers set it so that processes sharing the cores don't oversubscribe them).
DEFAULT_THREADS = torch.get_num_threads()


def set_threads(threads: int | str, params: int, batch_size: int, device: torch.device) -> int:
    """Set torch's intra-op CPU threads: `N`, or `auto` (1 for a small step on the CPU, else torch's
    default, also after an earlier job of the same process took 1). Returns the count in use."""
    if threads != "auto":
        torch.set_num_threads(int(threads))
    elif device.type == "cpu" and params * batch_size <= ONE_THREAD_WORK:
        torch.set_num_threads(1)
    else:
        torch.set_num_threads(DEFAULT_THREADS)
    return torch.get_num_threads()
