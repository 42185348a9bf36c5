"""Finding and restoring the checkpoint a run continues from, random-number states included."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainer.checkpoint import load_checkpoint
from trainer.errors import ConfigError


def resume_path(resume: bool, ckpt: str | None, out_dir: Path) -> Path | None:
    """The checkpoint to continue from: `ckpt=PATH`, or with `resume=true` the run dir's last.pt.

    `resume=true` in a run directory with no checkpoint yet starts afresh, so a whole sweep can be
    relaunched with `resume=true` after a preemption.
    """
    if ckpt:
        path = Path(ckpt).expanduser()
        if path.is_dir():
            path = path / "checkpoints" / "last.pt"
        if not path.is_file():
            raise ConfigError(f"ckpt={ckpt} does not exist; give the path of a checkpoint file "
                              "(RUN_DIR/checkpoints/last.pt) or of a run directory")
        return path
    if resume:
        path = out_dir / "checkpoints" / "last.pt"
        return path if path.is_file() else None
    return None


def read_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    """Load a checkpoint, turning an unreadable file into a clear error."""
    try:
        ckpt = load_checkpoint(path, map_location=device)
    except Exception as exc:  # truncated, not a checkpoint, wrong format
        raise ConfigError(f"the checkpoint {path} cannot be read ({type(exc).__name__}: {exc}); "
                          "point ckpt= at another checkpoint or start without resume") from None
    if not isinstance(ckpt, dict) or "fit" not in ckpt:
        raise ConfigError(f"{path} is not a trainer checkpoint that can be resumed; "
                          "point ckpt= at RUN_DIR/checkpoints/last.pt")
    return ckpt


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """All random-number states a run draws from."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "generator": generator.get_state(),
    }


def restore_rng(state: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    generator.set_state(state["generator"].cpu())
