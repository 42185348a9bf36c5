"""Single-run speed as a user experiences it: `python -m trainer` against a bare PyTorch loop, both
timed from outside the process.

For each batch size, each contender runs as its own process for E epochs and for 1 epoch, in
interleaved rounds; its epoch time is (best wall time of E epochs - best of 1 epoch) / (E - 1), so
start-up (imports, data loading) cancels and everything done per epoch counts: for the trainer its
validation, checkpoints, TensorBoard and progress bookkeeping, as in a default run. The ratio is
the bare loop's epoch time over the trainer's (above 1: the trainer is faster); the bare loop runs
with torch's default CPU threads and with one thread, and the faster of the two is the yardstick
(the trainer picks its thread count itself: `threads=auto`).

    python scripts/bench_process.py [--repeats 3] [--batches 1 64 1024] [--output FILE]

The net is 784-256-10 trained with plain SGD on random data (MNIST-sized: 784 features, 10
classes; 10,000 training samples at batch size 1, 60,000 otherwise, 10,000 validation samples).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# batch size -> (training samples, epochs E): the settings, seconds per process, not minutes
SETTINGS = {1: (10_000, 3), 64: (60_000, 5), 1024: (60_000, 9)}
LR = 0.01

# The hand-written loop, as a user writes it: the data on the device, index batches of a randperm,
# F.cross_entropy, zero_grad(set_to_none=True), backward, step. Inputs standardized once.
BARE = """
import sys, numpy as np, torch
from torch import nn
from torch.nn import functional as F
path, batch, epochs, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
if threads:
    torch.set_num_threads(threads)
d = np.load(path)
x, y = torch.as_tensor(d["x"]), torch.as_tensor(d["y"])
x = (x - x.mean(0)) / x.std(0, correction=0).clamp_min(1e-12)
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
opt = torch.optim.SGD(model.parameters(), lr=LR)
for _ in range(epochs):
    perm = torch.randperm(len(x))
    for i in range(0, len(x), batch):
        idx = perm[i : i + batch]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
print(float(loss))
""".replace("LR", repr(LR))


def write_data(folder: Path, n_train: int, n_val: int = 10_000) -> Path:
    """Random MNIST-sized data with its own validation and test splits (so training is n_train)."""
    rng = np.random.default_rng(0)
    path = folder / f"random_{n_train}.npz"
    arrays = {}
    for split, n in (("", n_train), ("_val", n_val), ("_test", n_val)):
        arrays["x" + split] = rng.normal(size=(n, 784)).astype(np.float32)
        arrays["y" + split] = rng.integers(0, 10, size=n).astype(np.int64)
    np.savez(path, **arrays)
    return path


def trainer_command(data: Path, batch: int, epochs: int, out: Path) -> list[str]:
    return [sys.executable, "-m", "trainer", "data=npz", f"data.path={data}", "model.depth=1",
            "model.width=256", "optimizer=sgd", f"optimizer.lr={LR}", f"batch_size={batch}",
            f"epochs={epochs}", "progress=false", f"hydra.run.dir={out}"]


def bare_command(data: Path, batch: int, epochs: int, out: Path, threads: int = 0) -> list[str]:
    """The bare loop with torch's default threads (0), or `threads`."""
    return [sys.executable, "-c", BARE, str(data), str(batch), str(epochs), str(threads)]


def bare_one_thread(data: Path, batch: int, epochs: int, out: Path) -> list[str]:
    return bare_command(data, batch, epochs, out, threads=1)


def wall(command: list[str]) -> float:
    """Seconds from start to exit of a process; a failed one stops the benchmark."""
    t0 = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"benchmark process failed ({proc.returncode}): {' '.join(command[:4])} ...\n"
                 f"{proc.stderr[-2000:]}")
    return seconds


def measure(batch: int, repeats: int, folder: Path) -> dict:
    """Per-epoch seconds of both contenders, from outside, interleaved."""
    n_train, epochs = SETTINGS.get(batch, (60_000, 5))
    data = write_data(folder, n_train)
    contenders = {"bare": bare_command, "bare_1t": bare_one_thread, "trainer": trainer_command}
    times: dict[tuple[str, int], list[float]] = {(c, e): [] for c in contenders for e in (1, epochs)}
    order = [(c, e) for c in contenders for e in (1, epochs)]
    for r in range(repeats):
        for name, e in order[r % len(order):] + order[:r % len(order)]:  # rotating order
            out = folder / f"run_{name}_{batch}_{e}_{r}"
            times[name, e].append(wall(contenders[name](data, batch, e, out)))
    per_epoch = epoch_seconds(times, epochs, min)
    medians = epoch_seconds(times, epochs, statistics.median)
    return {"batch": batch, "samples": n_train, "epochs": epochs, **per_epoch,
            "ratio": ratio(per_epoch), "ratio_median": ratio(medians),
            "start": {c: min(times[c, 1]) - per_epoch[c] for c in per_epoch}}


def epoch_seconds(times: dict[tuple[str, int], list[float]], epochs: int,
                  pick: Callable[[list[float]], float]) -> dict[str, float]:
    """Each contender's seconds per epoch: (pick of its E-epoch walls - pick of its 1-epoch walls) / (E - 1),
    `pick` the best (min) or the median of the repeats."""
    names = sorted({name for name, _ in times})
    return {c: (pick(times[c, epochs]) - pick(times[c, 1])) / (epochs - 1) for c in names}


def ratio(per_epoch: dict[str, float]) -> float:
    """The faster bare loop (torch's threads or one) over the trainer: above 1, the trainer is faster."""
    return min(per_epoch["bare"], per_epoch["bare_1t"]) / per_epoch["trainer"]


def table(rows: list[dict], repeats: int, seconds: float) -> str:
    lines = [
        "## Outside the process: `python -m trainer` against a bare loop",
        "",
        f"Written by `python scripts/bench_process.py --repeats {repeats}` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} in {seconds / 60:.0f} min. Epoch time = "
        "(best wall time of E epochs - best of 1 epoch) / (E - 1), best of the repeats (and the same "
        "with the medians of the repeats), both run as processes; the trainer with validation, "
        "checkpoints and TensorBoard on, as by default. "
        "784-256-10, plain SGD, random data.",
        "",
        "| batch | training samples | E | bare loop, torch's threads (s/epoch) | bare loop, 1 thread "
        "(s/epoch) | trainer (s/epoch) | ratio: faster bare / trainer | ratio of the medians | "
        "start-up bare / trainer (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['batch']} | {r['samples']:,} | {r['epochs']} | {r['bare']:.3f} | "
                     f"{r['bare_1t']:.3f} | {r['trainer']:.3f} | {r['ratio']:.2f} | "
                     f"{r['ratio_median']:.2f} | "
                     f"{r['start']['bare']:.1f} / {r['start']['trainer']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the best is kept")
    p.add_argument("--batches", type=int, nargs="+", default=sorted(SETTINGS))
    p.add_argument("--output", type=Path, default=None, help="also write the table to this file")
    args = p.parse_args(argv)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="bench_process_") as tmp:
        rows = []
        for batch in args.batches:
            rows.append(measure(batch, args.repeats, Path(tmp)))
            r = rows[-1]
            print(f"batch {batch}: bare {r['bare']:.3f} / {r['bare_1t']:.3f} (1 thread) s/epoch, trainer "
                  f"{r['trainer']:.3f} s/epoch, ratio {r['ratio']:.2f} "
                  f"(of the medians {r['ratio_median']:.2f})", flush=True)
    text = table(rows, args.repeats, time.time() - started)
    print(text)
    if args.output is not None:
        args.output.write_text(text)


if __name__ == "__main__":
    main()
