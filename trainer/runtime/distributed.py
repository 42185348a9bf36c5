"""Data-parallel training under `torchrun`: one process per device, DDP averages the gradients.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; `srun --ntasks=N python -m trainer` sets SLURM's
variables instead, which `srun_world` turns into torchrun's. Every rank draws the same batch order
from the shared seed and trains on its slice of each global batch; only rank 0 writes anything.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class World:
    """This process's place: rank among `size` processes, on `device`."""

    rank: int = 0
    size: int = 1
    device: torch.device | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def launched() -> bool:
    """Whether torchrun (or a similar launcher) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def first_node(nodelist: str) -> str:
    """The first host of a SLURM node list: `vm` -> vm, `gpu[03-05,09],cpu1` -> gpu03."""
    match = re.match(r"([^,\[]+)(?:\[([^-,\]]+))?", nodelist)
    if match is None:
        raise ValueError(f"not a SLURM node list: {nodelist!r}")
    return match.group(1) + (match.group(2) or "")


def srun_world(env: dict[str, str] | os._Environ = os.environ) -> dict[str, str]:
    """torchrun's variables for one of the N tasks of an `srun --ntasks=N` job step (empty when
    torchrun set them, or outside such a step). SLURM_STEP_NUM_TASKS, not SLURM_NTASKS: a batch
    script allocated for N tasks runs as one process, with SLURM_NTASKS=N all the same. Rank 0's
    node is the rendezvous; the port follows from the job and step ids (MASTER_PORT overrides)."""
    tasks = int(env.get("SLURM_STEP_NUM_TASKS", "1"))
    if "WORLD_SIZE" in env or tasks <= 1 or "SLURM_PROCID" not in env:
        return {}
    step = int(env.get("SLURM_JOB_ID", "0")) * 16 + int(env.get("SLURM_STEP_ID", "0") or 0)
    return {"RANK": env["SLURM_PROCID"], "WORLD_SIZE": str(tasks),
            "LOCAL_RANK": env.get("SLURM_LOCALID", "0"),
            "MASTER_ADDR": env.get("MASTER_ADDR") or first_node(env.get("SLURM_STEP_NODELIST", "127.0.0.1")),
            "MASTER_PORT": env.get("MASTER_PORT") or str(20000 + step % 20000)}


def hydra_overrides() -> list[str]:
    """Extra CLI overrides for ranks other than 0: a scratch Hydra dir, no config copy.

    Ranks may start in different seconds, so `${now:...}` run dirs could differ; rank 0's dir is
    the run's, the other ranks learn it by broadcast (`shared_dir`) and write nothing of their own.
    """
    if not launched() or int(os.environ.get("RANK", "0")) == 0:
        return []
    scratch = tempfile.mkdtemp(prefix=f"trainer-rank{os.environ['RANK']}-")
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    return [f"hydra.run.dir={scratch}", "hydra.output_subdir=null"]


def setup(device: torch.device) -> World:
    """Join the process group when launched by torchrun (nccl on CUDA, gloo on the CPU)."""
    if not launched():
        return World(device=device)
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if rank != 0:  # rank 0 speaks for all; the others report only problems
        logging.getLogger().setLevel(logging.WARNING)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", device_id=(
            device if device.type == "cuda" else None))
    return World(rank=rank, size=size, device=device)


def teardown(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def shared_dir(world: World, out: Path) -> Path:
    """Rank 0's output directory, on every rank."""
    if not world.distributed:
        return out
    box = [str(out)]
    dist.broadcast_object_list(box, src=0)
    return Path(box[0])


def wrap(model: nn.Module, world: World) -> nn.Module:
    """The model DDP trains (gradients averaged across ranks), or the model itself alone."""
    if not world.distributed:
        return model
    ids = [world.device.index] if world.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def all_mean(stats: dict[str, torch.Tensor], samples: int) -> dict[str, torch.Tensor]:
    """This rank's means over `samples` -> means over all ranks' samples (one all-reduce)."""
    if not (dist.is_available() and dist.is_initialized()):
        return stats
    keys = list(stats)
    n = torch.tensor(float(samples), device=stats[keys[0]].device)
    packed = torch.stack([*(stats[k].float() * n for k in keys), n])
    dist.all_reduce(packed)
    return {k: packed[i] / packed[-1] for i, k in enumerate(keys)}
