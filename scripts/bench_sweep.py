"""Wall time of one sweep through Hydra's basic launcher, `hydra/launcher=vectorized` and the floor.

`make bench-sweep` (or `python scripts/bench.py --sweep [--jobs 16 64] [--nets digits mnist]
[--repeats N] [--threads 1] [--write]`) runs the same multirun (`seed=0,...,M-1`, M jobs) through
both launchers as real `python -m trainer -m ...` processes and through `scripts/floor_sweep.py`
(the same work with the least around it: issue 31), interleaved (the order alternates every
repeat), and for M = 1 also the plain single run `python -m trainer` (no -m); the clock covers the
whole command, start-up included, as a user waits for it. `--threads N` gives every process N torch
threads (`OMP_NUM_THREADS`, `threads=N`; `--threads 0`: each its default). The table (medians of
the repeats, and the ratios measured side by side) goes to a new file under outputs/bench/, or with
`--write` into BENCHMARKS.md's section "Vectorized sweeps" (the section's earlier text is kept
below the new table, under "Earlier rounds"; the other sections are left as they are).

Nets: `digits` is the default experiment (64-128-128-10 on the 8x8 digits, batch 64, 30 epochs);
`mnist` issue 31's large net, 784-256-256-10 on MNIST-sized random data (60,000 training samples of
784 features, 10 classes, batch 128, `--mnist-epochs` epochs, 3 by default), saved once as an .npz
file (`data=npz`).
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
NETS = {"digits": "digits: the default experiment, 64-128-128-10 on the 8x8 digits, batch 64, "
                  "{epochs} epochs.",
        "mnist": "mnist: 784-256-256-10 on random MNIST-sized data (60,000 x 784, 10 classes), batch 128, "
                 "{mnist_epochs} epoch(s)."}


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
    return ["data=npz", f"data.path={mnist_file(folder)}", "model.depth=2", "model.width=256",
            "batch_size=128", f"epochs={mnist_epochs}"]


def timed(command: list[str], folder: Path, threads: int) -> float:
    """Seconds that `command` takes, from start to exit; it must succeed."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return seconds


def commands(jobs: int, base: list[str], out: Path, threads: int, before: Path | None = None
             ) -> dict[str, list[str]]:
    """The commands compared for a sweep of `jobs` jobs writing under `out`, by name; `before`: a
    checkout of an earlier version whose vectorized launcher runs too ("before")."""
    seeds = "seed=" + ",".join(map(str, range(jobs)))
    common = [*base, "progress=false", *([f"threads={threads}"] if threads else [])]
    trainer = [sys.executable, "-m", "trainer"]
    runs = {"basic": [*trainer, "-m", *common, seeds, f"hydra.sweep.dir={out}-basic"],
            "vectorized": [*trainer, "-m", "hydra/launcher=vectorized", *common, seeds,
                           f"hydra.sweep.dir={out}-vectorized"],
            "floor": [sys.executable, str(ROOT / "scripts" / "floor_sweep.py"), "--jobs", str(jobs),
                      "--out", f"{out}-floor", "--threads", str(threads or torch_threads()), *base]}
    if before is not None:
        runs["before"] = ["env", f"PYTHONPATH={before}", *runs["vectorized"][:-1],
                          f"hydra.sweep.dir={out}-before"]
    if jobs == 1:
        runs["single"] = [*trainer, *common, "seed=0", f"hydra.run.dir={out}-single"]
    return runs


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def bench(net: str, jobs: int, repeats: int, folder: Path, base: list[str], threads: int = 1,
          before: Path | None = None) -> dict:
    times: dict[str, list[float]] = {}
    for r in range(repeats):
        runs = commands(jobs, base, folder / f"{net}-{jobs}-{r}", threads, before)
        order = list(runs) if r % 2 == 0 else list(reversed(runs))
        for name in order:
            times.setdefault(name, []).append(timed(runs[name], folder, threads))
    row = {"net": net, "jobs": jobs, **{k: statistics.median(v) for k, v in times.items()}}
    print(f"{net} M={jobs}: " + "  ".join(f"{k} {v}" for k, v in times.items()), flush=True)
    return row


def table(rows: list[dict], args: argparse.Namespace, seconds: float, loads: tuple[float, float]) -> str:
    import torch

    threads = f"{args.threads} torch thread(s) per process" if args.threads else "default threads"
    lines = [
        SECTION, "",
        f"Wall time of one sweep of M jobs (`seed=0,...,M-1`) through Hydra's basic launcher, through "
        f"`hydra/launcher=vectorized`, and through `scripts/floor_sweep.py` (the same work and job folders "
        f"with the least around it, issue 31), each a real process, start-up included; median of "
        f"{args.repeats} interleaved repeat(s), {threads}. Written by `python scripts/bench.py --sweep "
        f"--jobs {' '.join(map(str, args.jobs))} --nets {' '.join(args.nets)} --repeats {args.repeats} "
        f"--threads {args.threads}{' --before DIR' if args.before else ''}` on "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC in "
        f"{seconds / 60:.0f} min, {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
        f"torch {torch.__version__}, device `cpu`, load average {loads[0]:.1f} at the start and "
        f"{loads[1]:.1f} at the end.", "",
        " ".join(NETS[net].format(epochs=args.epochs or 30, mnist_epochs=args.mnist_epochs)
                 for net in args.nets), "",
        "| net | jobs M | basic launcher (s) | vectorized (s) | floor (s) | vectorized vs basic "
        "| floor vs basic | vectorized / floor |"
        + (" vectorized before (s) | before / now |" * bool(args.before)),
        "|---|---|---|---|---|---|---|---|" + ("---|---|" * bool(args.before)),
        *map(row_line, rows),
    ]
    singles = [r for r in rows if "single" in r]
    if singles:
        compared = "; ".join(f"{r['net']} {r['single']:.1f} s single, {r['vectorized']:.1f} s vectorized"
                             for r in singles)
        lines += ["", f"M = 1 against the plain single run (`python -m trainer`, no -m): {compared}."]
    return "\n".join(lines) + "\n"


def row_line(row: dict) -> str:
    line = (f"| {row['net']} | {row['jobs']} | {row['basic']:.1f} | {row['vectorized']:.1f} | "
            f"{row['floor']:.1f} | "
            f"{row['basic'] / row['vectorized']:.1f}x | {row['basic'] / row['floor']:.1f}x | "
            f"{row['vectorized'] / row['floor']:.2f} |")
    if "before" in row:
        line += f" {row['before']:.1f} | {row['before'] / row['vectorized']:.2f} |"
    return line


EARLIER = "### Earlier rounds"


def write_section(text: str, path: Path) -> None:
    """Replace (or append) the section in BENCHMARKS.md, leaving the other sections as they are; the
    section's earlier text stays below the new table, under "Earlier rounds"."""
    old = path.read_text() if path.is_file() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    found = pattern.search(old)
    if not found:
        path.write_text(old.rstrip("\n") + "\n\n" + text)
        return
    body = found.group(0)[len(SECTION) + 1:].strip("\n")
    earlier = body[body.index(EARLIER):] if EARLIER in body else f"{EARLIER}\n\n{body}"
    path.write_text(old[:found.start()] + text + "\n" + earlier.rstrip("\n") + "\n\n" + old[found.end():])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sweep", action="store_true", help="(the switch scripts/bench.py dispatches on)")
    p.add_argument("--jobs", type=int, nargs="+", default=[16, 64])
    p.add_argument("--nets", nargs="+", default=["digits"], choices=["digits", "mnist"])
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (0: each its default)")
    p.add_argument("--mnist-epochs", type=int, default=3)
    p.add_argument("--epochs", type=int, default=None, help="digits: epochs (default: the config's 30)")
    p.add_argument("--before", type=Path, default=None,
                   help="a checkout of an earlier version (git archive): its vectorized launcher as a column")
    p.add_argument("--write", action="store_true", help="replace the section of BENCHMARKS.md")
    args = p.parse_args(argv)
    started, load = time.perf_counter(), os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="trainer-bench-sweep-") as tmp:
        for net in args.nets:
            base = net_args(net, Path(tmp), args.mnist_epochs)
            if net == "digits" and args.epochs:
                base.append(f"epochs={args.epochs}")
            rows += [bench(net, m, args.repeats, Path(tmp), base, args.threads, args.before)
                     for m in args.jobs]
    text = table(rows, args, time.perf_counter() - started, (load, os.getloadavg()[0]))
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
