"""What one training step costs, variant by variant: the attempts to beat the bare loop on the CPU.

Times a 784-256-10 SGD step in-process (µs per step, best of `--repeats` interleaved rounds, the
same random data and batch order for every variant), one variant changed at a time against the
bare loop of scripts/bench_process.py:

- bare: `x[idx]`, `F.cross_entropy`, `zero_grad(set_to_none=True)`, `backward`, torch's default SGD;
- trainer: the trainer's own step (`trainer.training.accel.make_step`, `index_select` gathers) as `run` builds
  it: `models.MLP`, the loss of `loss=cross_entropy`, and `backprop=auto`, so the gradient by hand
  and plain SGD's update without `optimizer.step()` (trainer.training.backprop);
- trainer, autograd: the same step with `backprop=autograd`: autograd's backward, then torch's
  default (per-parameter) SGD `step()`;
- trainer, autograd, fused SGD: that with torch's fused CPU kernel (`+optimizer.fused=true`);
- trainer, autograd, x[idx]: that with advanced-index gathers instead of `index_select`;
- trainer, autograd, in-place ReLU: that with `nn.ReLU(inplace=True)`;
- trainer, autograd, foreach SGD: that with `foreach=True` instead of the default update.

    python scripts/bench_step.py [--repeats 5] [--batches 1 64 1024] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from models import MLP  # noqa: E402
from trainer.training.accel import make_step  # noqa: E402
from trainer.training.losses import Loss  # noqa: E402

STEPS = {1: 4000, 64: 600, 1024: 40}  # steps a round: about a second each on this CPU


def model(inplace: bool = False) -> nn.Module:
    """784-256-10 with the same initial weights in every variant (MLP builds the same layers)."""
    torch.manual_seed(0)
    if inplace:
        return nn.Sequential(nn.Linear(784, 256), nn.ReLU(inplace=True), nn.Linear(256, 10))
    return MLP(784, 10, [256])


Step = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], object]


def variants() -> dict[str, Callable[[], tuple[Step, nn.Module]]]:
    """name -> a builder of (`step(x, y, idx)`, its model), built fresh (the same initial weights, a
    new optimizer) each round; every variant makes the same update."""

    def bare():
        net = model()
        opt = torch.optim.SGD(net.parameters(), lr=0.01)

        def step(x, y, idx):
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return step, net

    def trainer(inplace=False, gather="index_select", backprop="autograd", **sgd):
        def build():
            net = model(inplace)
            opt = torch.optim.SGD(net.parameters(), lr=0.01, **sgd)
            train = make_step(net, opt, Loss("cross_entropy", "classification"), torch.device("cpu"),
                              backprop=backprop)
            if gather == "index_select":
                return (lambda x, y, idx: train(x.index_select(0, idx), y.index_select(0, idx))), net
            return (lambda x, y, idx: train(x[idx], y[idx])), net
        return build

    return {"bare": bare, "trainer": trainer(backprop="auto"), "trainer, autograd": trainer(),
            "trainer, autograd, fused SGD": trainer(fused=True),
            "trainer, autograd, x[idx]": trainer(gather="index"),
            "trainer, autograd, in-place ReLU": trainer(inplace=True),
            "trainer, autograd, foreach SGD": trainer(foreach=True)}


def measure(batch: int, repeats: int) -> dict[str, float]:
    steps = STEPS.get(batch, 100)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(max(steps * batch, 10_000), 784, generator=g)
    y = torch.randint(0, 10, (len(x),), generator=g)
    batches = torch.randperm(len(x), generator=g)[: steps * batch].split(batch)
    best = {name: float("inf") for name in variants()}
    for r in range(repeats):
        names = list(best)
        for name in names[r % len(names):] + names[: r % len(names)]:  # rotating order
            step, _ = variants()[name]()
            step(x, y, batches[0])  # lazy state, allocator warm-up
            t0 = time.perf_counter()
            for idx in batches:
                step(x, y, idx)
            best[name] = min(best[name], (time.perf_counter() - t0) / len(batches) * 1e6)
    return best


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batches", type=int, nargs="+", default=sorted(STEPS))
    p.add_argument("--threads", type=int, nargs="+", default=[1, torch.get_num_threads()])
    args = p.parse_args(argv)
    print(f"torch {torch.__version__}, µs per step (best of {args.repeats}); in brackets bare / variant")
    for threads in dict.fromkeys(args.threads):
        torch.set_num_threads(threads)
        for batch in args.batches:
            best = measure(batch, args.repeats)
            cells = [f"{name} {us:,.1f} ({best['bare'] / us:.2f})" for name, us in best.items()]
            print(f"threads {threads}, batch {batch}: " + "; ".join(cells), flush=True)


if __name__ == "__main__":
    main()
