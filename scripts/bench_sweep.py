"""Wall time of one sweep through Hydra's basic launcher and through `hydra/launcher=vectorized`.

`make bench-sweep` (or `python scripts/bench.py --sweep [--jobs 1 4 16 64] [--nets digits mnist]
[--repeats N] [--write]`) runs the same multirun (`seed=0,...,M-1`, M jobs) through both launchers
as real `python -m trainer -m ...` processes, interleaved (the order alternates every repeat), and
for M = 1 also the plain single run `python -m trainer` (no -m); the clock covers the whole
command, start-up included, as a user waits for it. The table (medians of the repeats, and the
speed-up basic / vectorized measured side by side) goes to a new file under outputs/bench/, or with
`--write` into BENCHMARKS.md's section "Vectorized sweeps".

Nets: `digits` is the default experiment (64-128-128-10 on the 8x8 digits, batch 64, 30 epochs);
`mnist` a 784-256-10 net on MNIST-sized random data (60,000 training samples of 784 features,
10 classes, batch 64, `--mnist-epochs` epochs), saved once as an .npz file (`data=npz`).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Vectorized sweeps"


def mnist_file(folder: Path) -> Path:
    g = np.random.default_rng(0)
    path = folder / "mnist_sized.npz"
    arrays = {}
    for name, n in (("", 60_000), ("_val", 10_000), ("_test", 10_000)):
        arrays[f"x{name}"] = g.standard_normal((n, 784), dtype=np.float32)
        arrays[f"y{name}"] = g.integers(0, 10, n)
    np.savez(path, **arrays)
    return path


def net_args(net: str, folder: Path, mnist_epochs: int) -> list[str]:
    if net == "digits":
        return []
    return ["data=npz", f"data.path={mnist_file(folder)}", "model.depth=1", "model.width=256",
            f"epochs={mnist_epochs}"]


def timed(args: list[str], folder: Path) -> float:
    """Seconds that `python -m trainer ARGS` takes, from start to exit; it must succeed."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "trainer", *args, "progress=false"], cwd=folder, env=env,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"python -m trainer {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return seconds


def bench(net: str, jobs: int, repeats: int, folder: Path, base: list[str]) -> dict:
    seeds = "seed=" + ",".join(map(str, range(jobs)))
    runs = {"basic": ["-m", seeds], "vectorized": ["-m", "hydra/launcher=vectorized", seeds]}
    if jobs == 1:
        runs["single"] = ["seed=0"]
    times: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(repeats):
        order = list(runs) if r % 2 == 0 else list(reversed(runs))
        for name in order:
            out = folder / f"{net}-{jobs}-{name}-{r}"
            where = "hydra.sweep.dir" if runs[name][0] == "-m" else "hydra.run.dir"
            times[name].append(timed([*runs[name], *base, f"{where}={out}"], folder))
    row = {"net": net, "jobs": jobs, **{k: statistics.median(v) for k, v in times.items()}}
    print(f"{net} M={jobs}: " + "  ".join(f"{k} {v}" for k, v in times.items()), flush=True)
    return row


def table(rows: list[dict], args: argparse.Namespace, seconds: float) -> str:
    import torch

    load = os.getloadavg()[0]
    lines = [
        SECTION, "",
        f"Wall time of one sweep of M jobs (`seed=0,...,M-1`) through Hydra's basic launcher and through "
        f"`hydra/launcher=vectorized`, each a real `python -m trainer -m ...` process, start-up included; "
        f"median of {args.repeats} interleaved repeats. Written by `python scripts/bench.py --sweep "
        f"--jobs {' '.join(map(str, args.jobs))} --nets {' '.join(args.nets)} --repeats {args.repeats}` on "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC in {seconds / 60:.0f} min, "
        f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
        f"torch {torch.__version__}, "
        f"device `cpu`, load average {load:.1f} at the end (other work shared the machine).", "",
        "digits: the default experiment, 64-128-128-10 on the 8x8 digits, batch 64, 30 epochs. "
        f"mnist: 784-256-10 on random MNIST-sized data (60,000 x 784, 10 classes), batch 64, "
        f"{args.mnist_epochs} epoch(s).", "",
        "| net | jobs M | basic launcher (s) | vectorized (s) | speed-up |", "|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(f"| {row['net']} | {row['jobs']} | {row['basic']:.1f} | {row['vectorized']:.1f} | "
                     f"{row['basic'] / row['vectorized']:.1f}x |")
    singles = [r for r in rows if "single" in r]
    if singles:
        compared = "; ".join(f"{r['net']} {r['single']:.1f} s single, {r['vectorized']:.1f} s vectorized"
                             for r in singles)
        lines += ["", f"M = 1 against the plain single run (`python -m trainer`, no -m): {compared}."]
    return "\n".join(lines) + "\n"


def write_section(text: str, path: Path) -> None:
    """Replace (or append) the section in BENCHMARKS.md, leaving the other tables as they are."""
    old = path.read_text() if path.is_file() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    new = pattern.sub(lambda _: text + "\n", old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text
    path.write_text(new)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sweep", action="store_true", help="(the switch scripts/bench.py dispatches on)")
    p.add_argument("--jobs", type=int, nargs="+", default=[1, 4, 16, 64])
    p.add_argument("--nets", nargs="+", default=["digits", "mnist"], choices=["digits", "mnist"])
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--mnist-epochs", type=int, default=1)
    p.add_argument("--epochs", type=int, default=None, help="digits: epochs (default: the config's 30)")
    p.add_argument("--write", action="store_true", help="replace the section of BENCHMARKS.md")
    args = p.parse_args(argv)
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="trainer-bench-sweep-") as tmp:
        for net in args.nets:
            base = net_args(net, Path(tmp), args.mnist_epochs)
            if net == "digits" and args.epochs:
                base.append(f"epochs={args.epochs}")
            rows += [bench(net, m, args.repeats, Path(tmp), base) for m in args.jobs]
    text = table(rows, args, time.perf_counter() - started)
    print(text)
    if args.write:
        write_section(text, ROOT / "BENCHMARKS.md")
        print("written to BENCHMARKS.md")
    else:
        out = ROOT / "outputs" / "bench" / f"sweep-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}.md"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"written to {out}")


if __name__ == "__main__":
    main()
