"""Which jobs can train as one stacked model, and how many members fit in memory.

Two jobs share a group when their resolved configs are equal except in the keys of `MAY_DIFFER`
(what a member can have of its own: seed, initialization, learning rate and weight decay, the
schedule's numbers, warm-up, averaging options, clipping, early stopping, length, and how a job
runs and logs; an experiment's `arms` tables). Everything else (data, architecture, batch size,
optimizer class and its other arguments, scheduler class, precision, device, ...) is part of the
group's key.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from hydra.utils import get_object

from models import resolve_widths
from trainer.config.flat import flatten_hparams
from trainer.training.stacked import LINEAR_IN_LR

MAY_DIFFER_KEYS = ("seed", "model.init", "model.init_std", "model.bias_init", "optimizer.lr",
                   "optimizer.weight_decay", "warmup_steps", "warmup_start_factor", "grad_clip",
                   "epochs", "max_steps", "divergence_factor", "test_on", "resume", "ckpt", "overwrite",
                   "progress", "log_every_n_steps", "nan_check_every_n_steps", "checkpoint_every_n_epochs")
# Whole groups of keys a member may set for itself: early stopping, and the numbers of the
# scheduler and the averaging (their classes, `scheduler` and `averaging`, flattened from their
# `_target_`s, stay in the key, as does `schedule.*`, the interval).
# `arms.` (an experiment's per-arm tables, `arms.rate=low|mid|high`) is never read by training, only
# through interpolations such as `optimizer.lr`, resolved before grouping, whose values are judged.
MAY_DIFFER_PREFIXES = ("early_stopping.", "scheduler.", "averaging.", "arms.")
SAME_IN_GROUP = ("scheduler", "averaging")


def may_differ(key: str) -> bool:
    if key in SAME_IN_GROUP:
        return False
    return key in MAY_DIFFER_KEYS or key.startswith(MAY_DIFFER_PREFIXES)


# What a plain MLP (no normalization layers) may have of its own: its hidden layers' widths and its
# activation; only the number of hidden layers is the group's (trainer.training.stacked_layers).
ARCHITECTURE_KEYS = ("model.width", "model.depth", "model.activation")


def hidden_widths(resolved: Mapping[str, Any]) -> list[int] | None:
    """A plain MLP's hidden-layer widths, or None for a model whose architecture is in the key."""
    model = resolved.get("model") or {}
    if model.get("_target_") != "models.MLP" or model.get("norm", "none") != "none":
        return None
    try:
        return resolve_widths(model.get("depth"), model.get("width"))
    except (TypeError, ValueError):  # a bad width: the ordinary checks report it
        return None


def group_key(resolved: Mapping[str, Any]) -> str:
    """A string equal for jobs that can train together (the resolved config without `MAY_DIFFER`,
    and for plain MLPs their number of hidden layers instead of their widths and activation)."""
    flat = flatten_hparams(resolved)
    widths = hidden_widths(resolved)
    key = {k: v for k, v in sorted(flat.items())
           if not may_differ(k) and (widths is None or k not in ARCHITECTURE_KEYS)}
    if widths is not None:
        key["model.hidden_layers"] = len(widths)
    return json.dumps(key, default=str)


def unsupported(resolved: Mapping[str, Any]) -> str | None:
    """Why this job cannot train in a stacked group (it then runs as an ordinary job), or None."""
    opt = resolved.get("optimizer", {})
    try:
        cls = get_object(opt["_target_"])
    except Exception:  # a bad target: the ordinary run reports it
        return f"optimizer._target_={opt.get('_target_')} cannot be imported"
    if not (isinstance(cls, type) and issubclass(cls, LINEAR_IN_LR)):
        return (f"{getattr(cls, '__name__', cls)}'s update is not linear in the learning rate "
                f"(vectorized: {', '.join(c.__name__ for c in LINEAR_IN_LR)})")
    for key in ("maximize", "differentiable", "capturable"):
        if opt.get(key):
            return f"optimizer.{key}=true is not vectorized"
    if resolved.get("loss", "auto") != "auto":  # the stacked members train on the task's default loss
        return f"loss={resolved['loss']} is not vectorized (loss=auto only)"
    if resolved.get("precision") != "fp32":
        return f"precision={resolved.get('precision')} is not vectorized (fp32 only)"
    for key in ("compile", "cuda_graphs"):
        if resolved.get(key):
            return f"{key}=true is not vectorized"
    reg = resolved.get("regularization") or {}
    for key in ("l1", "l2"):  # the stacked step takes no penalty: such a job would train unregularized
        if reg.get(key):
            return f"regularization.{key}={reg[key]} is not vectorized (the stacked step has no penalty)"
    if resolved.get("log_layer_stats"):  # the stacked step has no per-member layer probes
        return "log_layer_stats=true is not vectorized (its per-layer statistics need the job's own model)"
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return "a distributed (torchrun) job is not vectorized"
    kind = (resolved.get("ensemble") or {}).get("kind", "none")
    if kind != "none":  # its members are already one stacked model (trainer.ensemble.fit)
        return f"ensemble={kind} trains its own stacked members"
    return None


def member_bytes(params: int, batch_size: int, widths: Sequence[int], out_dim: int) -> int:
    """Memory one member needs, roughly: weights, gradient, scratch update, two optimizer states,
    an averaged copy (6 copies of the parameters), and its batch's activations kept for backward."""
    activations = batch_size * (sum(widths) * 3 + out_dim * 2)
    return 4 * (6 * params + activations)


def free_bytes(device: torch.device) -> int:
    """Free memory on `device` (CUDA: free device memory; CPU: available RAM)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 8 << 30


# On the CPU a stacked model's parameters stay at most this large (bytes, fp32 weights). Measured
# with scripts/bench_sweep.py on this project's 2-core CPU (busy with other work): 784-256-10 nets
# (0.8 MB each) trained 1.8x faster than the basic launcher at M = 4 and 1.4x at M = 16 (13 MB),
# but 3.5x slower at M = 64 (52 MB; that run also had two threads, see runner.py). Past the caches,
# the optimizer's and the matmuls' passes over the stack wait on memory, where one job's weights
# stay in cache; 16 MB keeps a group within what was measured to be faster. Measured again for
# issue 31's 784-256-256-10 (1.1 MB a member, one thread): the group's step costs the same per member
# from M = 8 to 64 (scripts/bench_step.py --stacked), and 16 such jobs as one group (max_members=16)
# took 59.4 / 64.1 s of CPU time against 64.0 / 57.4 s as this cap's two groups of 8: no gain seen.
CPU_STACK_BYTES = 16 << 20


def fitting_members(max_members: int | None, per_member: int, device: torch.device,
                    params: int = 0) -> int:
    """`hydra.launcher.max_members`, or (null) as many members as half the free memory holds, and
    on the CPU at most `CPU_STACK_BYTES` of stacked weights (`params` per member)."""
    if max_members:
        return int(max_members)
    fits = max(1, free_bytes(device) // 2 // max(per_member, 1))
    if device.type == "cpu" and params:
        fits = min(fits, max(1, CPU_STACK_BYTES // (4 * params)))
    return fits


def chunks(items: Sequence[Any], size: int) -> list[list[Any]]:
    """`items` split into consecutive groups of at most `size`, as equal in size as they can be."""
    parts = -(-len(items) // max(size, 1))
    size = -(-len(items) // max(parts, 1))
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


# Jobs whose hidden widths differ share a group padded to its widest member (trainer.training.
# stacked_layers) when, at every layer, the widest is at most WIDTH_RATIO times each member's width.
# Padding costs the padded work, and a group saves only its fixed costs (set-up, and the Python of
# each step and epoch end). Measured on this project's 2-core CPU (load 4-6, one thread, min of 7
# repeats; 15 members a width, batch 64, Adam, the gradient by hand, milliseconds a step for all
# groups): depth 1 widths 16, 64, 256 apart 4.6, 16+64 padded with 256 apart 5.3, 16 apart with
# 64+256 padded 9.1, all padded 21.8; depth 3: 51.9, 52.2, 82.2, 118.1. Padding narrow members to a
# wide one costs the wide one's work per member, where narrow stacks are cheap at any width near
# theirs. Pairs of 15 members apart / padded: depth 1 16+32 1.70 / 1.48, 16+64 3.08 / 2.80, 32+64
# 2.16 / 2.68, 64+128 3.89 / 4.34, 64+256 5.16 / 9.59, 128+256 6.58 / 7.02; depth 3 16+32 3.23 / 3.30,
# 16+64 5.21 / 6.10, 64+128 16.9 / 24.9, 128+256 48.7 / 72.7. On this CPU padding pays only for the
# tiniest nets, within the noise: so by default (`hydra.launcher.width_ratio: 1`) only members of
# equal widths share a group (whatever their activations: 90 members of 3 activations took 10.0 and
# 8.5 ms a step against 11.4 and 8.8 for 3 groups of 30, depth 2); a device where a step's fixed
# cost is larger (a GPU's kernel launches) can pad further (`width_ratio=4`: 16 with 64).
WIDTH_RATIO = 1


def buckets(widths: Sequence[Sequence[int]], members: Sequence[int],
            ratio: float = WIDTH_RATIO) -> list[list[int]]:
    """`members` (indices into `widths`, one key's jobs) in groups of widths within `ratio`: from
    the narrowest, each job into the first group where no member's width is padded more than that."""
    parts: list[list[int]] = []
    for i in sorted(members, key=lambda j: sum(widths[j])):
        for part in parts:
            top = [max(layer) for layer in zip(*(widths[j] for j in (*part, i)), strict=True)]
            if all(t <= ratio * w for j in (*part, i) for t, w in zip(top, widths[j], strict=True)):
                part.append(i)
                break
        else:
            parts.append([i])
    return [sorted(part) for part in sorted(parts, key=min)]


def plan(tasks: Sequence[Mapping[str, Any]], width_ratio: float = WIDTH_RATIO) -> list[tuple[str, list[int]]]:
    """The order in which a batch of jobs (resolved task configs) trains: `("group", [i, ...])` for
    jobs trained together, `("alone", [i])` with the reason for a job that cannot be vectorized;
    in the order of each group's first job. Plain MLPs of different widths share a group when their
    widths are within `width_ratio` (`buckets`; the launcher's `hydra.launcher.width_ratio`)."""
    steps: list[tuple[str, list[int]]] = []
    groups: dict[str, list[int]] = {}
    for i, task in enumerate(tasks):
        reason = unsupported(task)
        if reason is not None:
            steps.append((reason, [i]))
            continue
        key = group_key(task)
        if key not in groups:
            groups[key] = []
            steps.append(("group", groups[key]))
        groups[key].append(i)
    widths = [hidden_widths(task) or [] for task in tasks]
    split = [[(kind, part) for part in buckets(widths, members, width_ratio)] if kind == "group"
             else [(kind, members)]
             for kind, members in steps]
    return sorted((step for parts in split for step in parts), key=lambda step: min(step[1]))
