"""1 torch thread against 2, under OpenMP's wait policies, with the cores idle and with one kept busy.

    python scripts/bench_threads.py [--rounds 2] [--repeats 3] [--bmm 300] [--steps 50] [--threads 2]
    make bench-threads

Two workloads: `--bmm` products of (16, 64, 128) by (16, 128, 128) (issue 26's measurement), and
`--steps` SGD steps of a 784-256-10 MLP at batch 64 (2.0e5 parameters x 64 = 1.3e7, above
threads=auto's line of 4e6, so threads=auto gives it torch's default count). The variants: one
thread, and `--threads` threads with the policy unset (libgomp's default: spin, then sleep), PASSIVE
(trainer's default, trainer/runtime/startup.py) and ACTIVE, each timed `--repeats` times in a fresh
process per round (OpenMP reads OMP_WAIT_POLICY once, when torch loads it). Each round runs them
all with no busy loop, then all again while a busy-loop process (started and stopped here) keeps
one core busy, in the other order every second round. Prints medians, ratios to one thread, and
the range of the load average (`os.getloadavg`) over each half: on a machine shared with other
work, "no busy loop" means none of ours, not an idle machine.

    python scripts/bench_threads.py --sizes [--threads 2] [--repeats 5] [--steps 30]

instead times Adam steps of MLPs of several sizes on 1 thread against `--threads`, interleaved, in
this process (under the wait policy of its environment): where threads=auto's line lies
(trainer/runtime/device.py `ONE_THREAD_WORK`, parameters x batch size).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

POLICIES = ("default", "PASSIVE", "ACTIVE")  # default: OMP_WAIT_POLICY unset


def bmm_seconds(n: int) -> float:
    """Seconds for `n` batched products of (16, 64, 128) by (16, 128, 128)."""
    import torch

    a, b = torch.randn(16, 64, 128), torch.randn(16, 128, 128)
    for _ in range(20):  # warm-up: the thread pool started, the allocator's blocks made
        torch.bmm(a, b)
    t0 = time.perf_counter()
    for _ in range(n):
        torch.bmm(a, b)
    return time.perf_counter() - t0


def step_seconds(n: int) -> float:
    """Seconds per SGD step (forward, cross-entropy, backward, update) of 784-256-10 at batch 64."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    optimizer = torch.optim.SGD(model.parameters(), 0.01)
    x, y = torch.randn(64, 784), torch.randint(0, 10, (64,))

    def step() -> None:
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()

    for _ in range(10):
        step()
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - t0) / n


def worker(threads: int, bmm: int, steps: int, repeats: int) -> None:
    """The child process: both workloads `repeats` times on `threads` threads, one JSON line."""
    import torch

    torch.set_num_threads(threads)
    times: dict[str, list[float]] = {"bmm": [], "step": []}
    for _ in range(repeats):
        times["bmm"].append(bmm_seconds(bmm))
        times["step"].append(step_seconds(steps))
    print(json.dumps(times), flush=True)


def run_variant(threads: int, policy: str, bmm: int, steps: int, repeats: int) -> dict:
    """One variant in a fresh process: {bmm: [s], step: [s], spin}; `spin` is libgomp's spin count
    as it reports it at load (the policy's effect: 0 passive, 300000 by default, 3e10 active)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy != "default":
        env["OMP_WAIT_POLICY"] = policy
    env["OMP_DISPLAY_ENV"] = "VERBOSE"  # libgomp prints its settings to stderr at load
    proc = subprocess.run([sys.executable, __file__, "--worker", "--threads", str(threads), "--bmm", str(bmm),
                           "--steps", str(steps), "--repeats", str(repeats)],
                          env=env, capture_output=True, text=True, check=True)
    spin = re.search(r"GOMP_SPINCOUNT = '(\d+)'", proc.stderr)
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "spin": spin.group(1) if spin else "?"}


def start_busy() -> subprocess.Popen:
    """A process that keeps one core busy until stopped."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def variants(threads: int) -> list[tuple[int, str]]:
    """One thread (no barrier to wait at: the policy does not matter), and `threads` under each policy."""
    return [(1, "PASSIVE"), *((threads, policy) for policy in POLICIES)]


def measure(threads: int, bmm: int, steps: int, repeats: int, rounds: int) -> tuple[dict, dict]:
    """times[(load, threads, policy)] = {bmm: [s], step: [s], spin}, `rounds` fresh processes of
    `repeats` measurements each; loads[load] = the load averages before and after each half."""
    times: dict[tuple[str, int, str], dict] = {}
    loads: dict[str, list[float]] = {"idle": [], "busy": []}
    for r in range(rounds):
        for load in ("idle", "busy"):
            loads[load].append(os.getloadavg()[0])
            busy = start_busy() if load == "busy" else None
            try:
                if busy is not None:
                    time.sleep(0.5)  # the loop running before the first variant starts
                order = variants(threads)
                for n, policy in order if r % 2 == 0 else order[::-1]:  # against drift
                    result = run_variant(n, policy, bmm, steps, repeats)
                    kept = times.setdefault((load, n, policy), {"bmm": [], "step": []})
                    kept["bmm"] += result["bmm"]
                    kept["step"] += result["step"]
                    kept["spin"] = result["spin"]
                    print(f"  round {r + 1} {load:4s} {n} thread(s) {policy:7s}: bmm "
                          f"{' '.join(f'{t:.2f}' for t in result['bmm'])} s, step "
                          f"{' '.join(f'{t * 1e6:.0f}' for t in result['step'])} µs, spin count "
                          f"{result['spin']}", file=sys.stderr, flush=True)
            finally:
                if busy is not None:
                    busy.terminate()
                    busy.wait()
            loads[load].append(os.getloadavg()[0])
    return times, loads


def table(times: dict, loads: dict, threads: int, bmm: int) -> str:
    """Markdown: medians and ratios to one thread under the same load."""
    lines = [f"| cores | threads | OMP_WAIT_POLICY | libgomp spin count | {bmm:,} bmm (s) | ratio | "
             "784-256-10 SGD step, batch 64 (µs) | ratio |", "|---|---|---|---|---|---|---|---|"]
    for load in ("idle", "busy"):
        one = times[(load, 1, "PASSIVE")]
        one_bmm, one_step = statistics.median(one["bmm"]), statistics.median(one["step"])
        label = "no busy loop" if load == "idle" else "one kept busy"
        label += f" (load {min(loads[load]):.1f}-{max(loads[load]):.1f})"
        for n, policy in variants(threads):
            result = times[(load, n, policy)]
            b, s = statistics.median(result["bmm"]), statistics.median(result["step"])
            shown = "any" if n == 1 else ("unset" if policy == "default" else policy)
            lines.append(f"| {label} | {n} | {shown} | {result['spin']} | {b:.2f} | {b / one_bmm:.2f} | "
                         f"{s * 1e6:,.0f} | {s / one_step:.2f} |")
    return "\n".join(lines)


def adam_seconds(model: object, x: object, y: object, steps: int) -> float:
    """Seconds per Adam step (forward, cross-entropy, backward, update)."""
    import torch
    from torch import nn

    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    t0 = time.perf_counter()
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return (time.perf_counter() - t0) / steps


def sizes(threads: int, repeats: int, steps: int) -> None:
    """--sizes: 1 thread against `threads` for MLPs of several sizes and batches."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    for d_in, width in ((64, 128), (784, 512), (784, 1024), (784, 2048)):
        for batch in (64, 512):
            model = nn.Sequential(nn.Linear(d_in, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                                  nn.Linear(width, 10))
            x, y = torch.randn(batch, d_in), torch.randint(0, 10, (batch,))
            times: dict[int, list[float]] = {1: [], threads: []}
            for rep in range(repeats):
                for n in (1, threads) if rep % 2 else (threads, 1):  # alternate the order
                    torch.set_num_threads(n)
                    times[n].append(adam_seconds(model, x, y, steps))
            params = sum(q.numel() for q in model.parameters())
            one, many = statistics.median(times[1]), statistics.median(times[threads])
            print(f"{params:>9,} parameters, batch {batch:4d} (work {params * batch:.1e}): 1 thread "
                  f"{one * 1e3:7.2f} ms, {threads} threads {many * 1e3:7.2f} ms, ratio {many / one:.2f}",
                  flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2, help="fresh processes per variant, interleaved")
    p.add_argument("--repeats", type=int, default=3, help="measurements of each workload per process")
    p.add_argument("--threads", type=int, default=2, help="against 1 thread")
    p.add_argument("--bmm", type=int, default=300, help="batched products per measurement")
    p.add_argument("--steps", type=int, default=50, help="training steps per measurement")
    p.add_argument("--sizes", action="store_true", help="Adam steps of several sizes, in this process")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.threads, args.bmm, args.steps, args.repeats)
        return
    if args.sizes:
        sizes(args.threads, args.repeats, args.steps)
        return
    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f} at the start "
          f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})", flush=True)
    t0 = time.perf_counter()
    times, loads = measure(args.threads, args.bmm, args.steps, args.repeats, args.rounds)
    print(table(times, loads, args.threads, args.bmm))
    print(f"medians of {args.rounds} x {args.repeats} measurements ({args.bmm} bmm, {args.steps} steps), "
          f"{args.rounds} fresh processes per variant; load average (1 min) range over each half; "
          f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
