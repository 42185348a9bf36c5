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

`--stacked` times a vectorized group's step instead (`trainer.vectorized.group.Group.step`'s work:
the gather, the gradient by hand of `trainer.training.stacked_backprop`, one fused Adam through
`MemberwiseOptimizer`), µs of the process's CPU time (the wall time on an idle machine with one
thread, and robust to other processes on a busy one) per member and update, for M members of the
digits net (64-128-128-10, batch 64) and the issue's large net (784-256-256-10, batch 128), in
three variants:

- seed sweep: each member its own batches (M, b, D), one learning rate (the update in place);
- lr sweep, batched: one seed, M learning rates, the same rows gathered M times (M, b, D): the
  group's step before issue 31 item 3 for such a sweep;
- lr sweep, shared: the same rows gathered once (b, D) and broadcast to every member's first layer
  (`trainer.training.stacked.stacked_linear`).

    python scripts/bench_step.py --stacked [--members 16 64] [--nets digits large] [--repeats 5] [--threads 1]
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


NETS = {"digits": (64, [128, 128], 64, 1797), "large": (784, [256, 256], 128, 60_000)}  # D, widths, b, rows


def stacked_variants(net: str, members: int) -> dict[str, Callable[[], Callable[[int], object]]]:
    """name -> a builder of `step(i)`: the group's i-th update of `members` members of `net`."""
    from trainer.training.stacked import MemberwiseOptimizer, StackedParams
    from trainer.training.stacked_backprop import StackedBackprop

    dim, widths, batch, rows = NETS[net]
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(rows, dim, generator=g), torch.randint(0, 10, (rows,), generator=g)
    own = torch.stack([torch.randperm(rows, generator=g) for _ in range(members)])  # (M, rows)
    same = own[:1].expand(members, rows)
    loss = Loss("cross_entropy", "classification")

    def build(perms: torch.Tensor, lrs: list[float], shared: bool) -> Callable[[int], object]:
        torch.manual_seed(0)
        stacked = StackedParams([MLP(dim, 10, widths) for _ in range(members)])
        backprop = StackedBackprop(stacked, loss)
        optimizer = MemberwiseOptimizer(lambda p: torch.optim.Adam(p, lr=1.0, fused=True), stacked)
        steps = rows // batch

        def step(i: int) -> object:
            idx = perms[:, (i % steps) * batch:(i % steps + 1) * batch]
            yb = y.index_select(0, idx.reshape(-1)).view(idx.shape)
            xb = (x.index_select(0, idx[0]) if shared
                  else x.index_select(0, idx.reshape(-1)).view(*idx.shape, dim))
            optimizer.zero_grad()
            backprop(xb, yb)
            optimizer.step(lrs, [0.0] * members)
        step.stacked = stacked  # type: ignore[attr-defined]  # (the test compares the variants' weights)
        return step

    one = [1e-3] * members
    sweep = [1e-3 * (1 + k / members) for k in range(members)]
    return {"seed sweep": lambda: build(own, one, False),
            "lr sweep, batched": lambda: build(same, sweep, False),
            "lr sweep, shared": lambda: build(same, sweep, True)}


def measure_stacked(net: str, members: int, repeats: int, steps: int | None = None) -> dict[str, float]:
    """µs per member and update of each variant, best of `repeats` rotating rounds of `steps`."""
    builders = stacked_variants(net, members)
    steps = steps or max(5, 4000 // members if net == "digits" else 400 // members)
    best = {name: float("inf") for name in builders}
    for r in range(repeats):
        names = list(best)
        for name in names[r % len(names):] + names[: r % len(names)]:
            step = builders[name]()
            step(0)  # the optimizer's lazy state, the allocator
            t0 = time.process_time()  # CPU time: robust to other processes on a busy machine
            for i in range(1, steps + 1):
                step(i)
            best[name] = min(best[name], (time.process_time() - t0) / steps / members * 1e6)
    return best


def stacked_main(args: argparse.Namespace) -> None:
    print(f"torch {torch.__version__}, stacked group step, µs per member and update (best of "
          f"{args.repeats}); in brackets lr sweep batched / variant")
    for threads in dict.fromkeys(args.threads):
        torch.set_num_threads(threads)
        for net in args.nets:
            for members in args.members:
                best = measure_stacked(net, members, args.repeats)
                base = best["lr sweep, batched"]
                cells = [f"{name} {us:,.1f} ({base / us:.2f})" for name, us in best.items()]
                print(f"threads {threads}, {net}, M = {members}: " + "; ".join(cells), flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stacked", action="store_true", help="a vectorized group's step (see above)")
    p.add_argument("--members", type=int, nargs="+", default=[16, 64])
    p.add_argument("--nets", nargs="+", default=["digits", "large"], choices=sorted(NETS))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batches", type=int, nargs="+", default=sorted(STEPS))
    p.add_argument("--threads", type=int, nargs="+", default=[1, torch.get_num_threads()])
    args = p.parse_args(argv)
    if args.stacked:
        stacked_main(args)
        return
    print(f"torch {torch.__version__}, µs per step (best of {args.repeats}); in brackets bare / variant")
    for threads in dict.fromkeys(args.threads):
        torch.set_num_threads(threads)
        for batch in args.batches:
            best = measure(batch, args.repeats)
            cells = [f"{name} {us:,.1f} ({best['bare'] / us:.2f})" for name, us in best.items()]
            print(f"threads {threads}, batch {batch}: " + "; ".join(cells), flush=True)


if __name__ == "__main__":
    main()
