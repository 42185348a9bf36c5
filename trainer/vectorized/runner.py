"""`run_members(cfgs, outs)`: what `run(cfg)` is for one job, for a group of jobs trained together.

Used by the launcher (hydra_plugins/trainer_vectorized_launcher) and directly by tests. Returns, per
job, its metrics (as `run()` returns them) or the `UserError` that stopped it before training.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from models import resolve_widths
from trainer.config.build import batch_size_for, build_data
from trainer.config.validate import validate
from trainer.data import prepare_data
from trainer.runtime.device import resolve_device, set_threads
from trainer.runtime.errors import ConfigError, FolderRefused, UserError
from trainer.runtime.job import JobContext
from trainer.runtime.signals import StopOnSignal
from trainer.training import accel
from trainer.vectorized.group import train_group
from trainer.vectorized.grouping import chunks, fitting_members, member_bytes
from trainer.vectorized.member import Finished, Member

log = logging.getLogger(__name__)

Result = dict[str, Any] | UserError


def run_members(cfgs: Sequence[DictConfig], outs: Sequence[Path], *, max_members: int | None = None,
                label: str = "group", before_open: Callable[[int], None] = lambda i: None,
                stop: StopOnSignal | None = None, started: float | None = None,
                jobs: Sequence[JobContext] | None = None) -> list[Result]:
    """Train the jobs `cfgs` (one group: `grouping.group_key` equal) into their folders `outs`.

    `before_open(i)` runs before job i is set up (the launcher makes job i's Hydra config current
    there, so its staged `.hydra` files and command line are the job's own). Members beyond
    `max_members` (null: what fits in memory) train in further groups, one after another.
    `started` goes into every job's process record (one time for jobs trained together). A job
    whose folder is refused (`FolderRefused`) stops the group before it trains: raised. `jobs`: each
    job's Hydra context (the launcher's); None: jobs run from Python, without Hydra.
    """
    jobs = jobs or [JobContext.outside_hydra(out) for out in outs]
    results: list[Result | None] = [None] * len(cfgs)
    for i, cfg in enumerate(cfgs):  # a bad value of a member's own key is that job's error alone
        try:
            validate(cfg)
        except UserError as error:
            results[i] = error
    ready = [i for i, r in enumerate(results) if r is None]
    if not ready:
        return [r for r in results if r is not None]
    first = cfgs[ready[0]]
    device = resolve_device(first.device)
    accel.setup_backend(device, first.tf32)
    try:  # the data and the batch size are the whole group's
        splits, prep = prepare_data(build_data(first.data), device)
        batch_size = batch_size_for(first.batch_size, len(splits.x_train))
    except UserError as error:
        return [r if r is not None else error for r in results]
    ready, widths, note = _padded(cfgs, ready)
    dims = [splits.in_dim, *widths, splits.out_dim]
    params = sum(a * b + b for a, b in zip(dims[:-1], dims[1:], strict=True))
    size = fitting_members(max_members, member_bytes(params, batch_size, widths, splits.out_dim), device,
                           params)
    own_stop = stop is None
    with StopOnSignal() if own_stop else contextlib.nullcontext(stop) as stop:
        parts = chunks(ready, size)
        for n, part in enumerate(parts):
            if stop():
                break
            name = label if len(parts) == 1 else f"{label} part {n + 1}/{len(parts)}"
            # threads=auto by the group's step, M members' work at once (trainer.runtime.device's
            # line): torch's default count for 64 digits nets, where each job alone gets one. Two
            # threads trained such a group in 24.7 and 25.8 s against 27.6 and 26.2 s on one with
            # other work keeping the 2 cores busy (load average 4), and idle in 17.5 s against 17.8 s
            # (the whole sweep; docs/guides/vectorized.md): a small gain, and no stall on a busy core
            # under OMP_WAIT_POLICY=PASSIVE (trainer.runtime.startup).
            threads = set_threads(first.threads, params * len(part), batch_size, device)
            log.info("%s: %d jobs as one stacked %s model (%d parameters each%s) on %s, %d CPU threads",
                     name, len(part), "-".join(map(str, dims)), params, note, device, threads)
            _train_part(cfgs, outs, part, splits, prep, device, before_open, stop, name, results,
                        started or time.time(), jobs)
    return [r if r is not None else ConfigError("not started: the sweep was stopped by a signal first")
            for r in results]


def _padded(cfgs: Sequence[DictConfig], ready: list[int]) -> tuple[list[int], list[int], str]:
    """The jobs widest first (parts beyond what fits then pad the least), the stack's hidden widths
    (each layer's widest: members of different widths are padded, trainer.training.stacked_layers,
    and each takes the padded size) and a note for the log line where members differ."""
    own = {i: resolve_widths(cfgs[i].model.depth, cfgs[i].model.width) for i in ready}
    order = sorted(ready, key=lambda i: sum(own[i]), reverse=True)
    widths = [max(layer) for layer in zip(*own.values(), strict=True)]
    kinds = sorted({str(w) for w in own.values()})
    activations = sorted({str(cfgs[i].model.activation) for i in ready})
    notes = [f"padded to the widest member: hidden widths {' '.join(kinds)}"] if len(kinds) > 1 else []
    notes += [f"activations {' '.join(activations)}"] if len(activations) > 1 else []
    return order, widths, "".join(f", {note}" for note in notes)


def _train_part(cfgs: Sequence[DictConfig], outs: Sequence[Path], part: list[int], splits: Any, prep: Any,
                device: Any, before_open: Callable[[int], None], stop: StopOnSignal, name: str,
                results: list[Result | None], started: float, jobs: Sequence[JobContext]) -> None:
    with contextlib.ExitStack() as stack:
        members: dict[int, Member] = {}
        for i in part:
            before_open(i)
            try:
                members[i] = Member.open(cfgs[i], Path(outs[i]), splits, prep, device, stack,
                                         started=started, job=jobs[i])
            except Finished as done:
                results[i] = done.metrics
            except FolderRefused:  # another process's, or a run's: the sweep stops (trainer.__main__)
                raise
            except UserError as exc:
                log.error("job %s: %s", Path(outs[i]).name, exc)
                results[i] = exc
        try:
            train_group(list(members.values()), stop, label=name,
                        progress=bool(cfgs[part[0]].progress), signal=lambda: stop.received)
        except KeyboardInterrupt:  # a second Ctrl-C: stop at once, the last checkpoints stay
            for m in members.values():
                if m.metrics is None:
                    m.state.status = "interrupted"
                    m.state.reason = (f"stopped at once at step {m.state.step} (second Ctrl-C); a resume "
                                      "continues from the last checkpoint")
                    m.signal = "SIGINT"
                    m.finish()
        for i, m in members.items():
            results[i] = m.metrics
