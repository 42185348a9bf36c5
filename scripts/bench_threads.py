"""Adam steps of small MLPs on the CPU with 1 torch thread against N, interleaved; prints medians.

    python scripts/bench_threads.py [--threads 2] [--repeats 5] [--steps 30]

What `threads=auto` is based on (trainer/device.py): the work per step, parameters x batch size,
below which one thread beats several. Run it on the machine in question, idle or busy.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn


def step_time(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    """Seconds per Adam step (forward, cross-entropy, backward, update)."""
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    t0 = time.perf_counter()
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="against 1 thread")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=30)
    args = p.parse_args()
    torch.manual_seed(0)
    for d_in, width in ((64, 128), (784, 512), (784, 1024), (784, 2048)):
        for batch in (64, 512):
            model = nn.Sequential(nn.Linear(d_in, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                                  nn.Linear(width, 10))
            x, y = torch.randn(batch, d_in), torch.randint(0, 10, (batch,))
            times: dict[int, list[float]] = {1: [], args.threads: []}
            for rep in range(args.repeats):
                for n in (1, args.threads) if rep % 2 else (args.threads, 1):  # alternate the order
                    torch.set_num_threads(n)
                    times[n].append(step_time(model, x, y, args.steps))
            params = sum(q.numel() for q in model.parameters())
            one, many = statistics.median(times[1]), statistics.median(times[args.threads])
            print(f"{params:>9,} parameters, batch {batch:4d} (work {params * batch:.1e}): 1 thread "
                  f"{one * 1e3:7.2f} ms, {args.threads} threads {many * 1e3:7.2f} ms, ratio {many / one:.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
