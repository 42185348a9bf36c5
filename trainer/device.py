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


# threads=auto: one intra-op thread below this many parameters x batch samples (a step's work,
# roughly). Measured with scripts/bench_threads.py on this project's 2-core CPU with other work on
# it: a 26k-parameter MLP at batch 64 ran 3.3x faster on 1 thread than on 2, and 670k parameters
# at batch 512 4-7x faster; thread hand-offs cost more than small matrix products gain. Larger
# work keeps torch's default, which an idle machine's cores can speed up.
ONE_THREAD_WORK = 5e8


def set_threads(threads: int | str, params: int, batch_size: int, device: torch.device) -> int:
    """Set torch's intra-op CPU threads: `N`, or `auto` (1 for a small model on the CPU, else
    torch's default). Returns the count in use."""
    if threads != "auto":
        torch.set_num_threads(int(threads))
    elif device.type == "cpu" and params * batch_size <= ONE_THREAD_WORK:
        torch.set_num_threads(1)
    return torch.get_num_threads()
