"""Checkpoints written atomically: a crash mid-write leaves the previous file intact.

A run keeps two checkpoints in `RUN_DIR/checkpoints/`: `last.pt` (everything needed to continue)
and `best.pt` (the same, at the best epoch, with the evaluated weights as its `model`). The
invariant on disk: `best.pt` holds the best epoch that `last.pt` records, or a later epoch when a
run died between the two writes (best.pt is written first); then best.pt is the newer complete
state and a resume continues from it.

This module is the one place that assembles a checkpoint (`Checkpointer`), decides when one is
written, and loads one back into freshly built objects (`restore`); trainer.storage.resume decides which
checkpoint a run continues from.
"""

from __future__ import annotations

import io
import os
import random
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainer.runtime.errors import ConfigError
from trainer.runtime.files import atomic_write
from trainer.training.fit import FitState, Training


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike,
                    writer: BackgroundWriter | None = None) -> None:
    """Save a checkpoint dict with `torch.save`, atomically; with `writer`, serialized now (the file
    holds the state of this moment) and written to disk on the writer's thread."""
    if writer is None:
        atomic_write(Path(path), lambda f: torch.save(state, f))
        return
    buffer = io.BytesIO()
    torch.save(state, buffer)
    writer.submit(Path(path), buffer.getvalue())


class BackgroundWriter:
    """Writes files on one background thread, one at a time: the caller goes on (training the next
    epoch) while the bytes are written, fsynced and renamed into place, the wait on the disk
    (about 5-15 ms a checkpoint here) off its path. `wait()` returns once the file is on disk and
    raises the write's error (a StorageError) as the caller's own; the caller waits before the
    next file, so at most one is in flight and files land in the order they were given."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-writer")
        self.pending: Future | None = None

    def submit(self, path: Path, data: bytes) -> None:
        self.wait()
        self.pending = self.pool.submit(atomic_write, path, lambda f: f.write(data))

    def wait(self) -> None:
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self.pool.shutdown()


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by `save_checkpoint`."""
    return torch.load(path, map_location=map_location, weights_only=False)


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


def restore(ckpt: dict[str, Any], best_weights: dict[str, Any] | None, path: Path, training: Training,
            device: torch.device) -> FitState:
    """Load a checkpoint into the freshly built `training`; the returned state continues the run."""
    try:
        for key, obj in training.stateful().items():
            if obj is not None and ckpt.get(key) is not None:
                obj.load_state_dict(ckpt[key])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise ConfigError(f"the checkpoint {path} does not fit this configuration ({exc}); resume "
                          "with the model and optimizer it was trained with") from None
    restore_rng(ckpt["rng"], training.generator)
    state = FitState.from_state_dict(ckpt["fit"], device)
    state.best_weights = best_weights
    return state


class Checkpointer:
    """Saves the run's state after an epoch: last.pt every `every_n_epochs`, at the end and on a stop,
    and whenever the best epoch improves best.pt first, then last.pt. With `background=True` the
    files are serialized on the caller's thread and written by a BackgroundWriter: the next epoch
    trains while the last one's file reaches the disk; `close()` waits for it.

    A checkpoint holds every object of `training` (model, optimizer, schedule, averaging, early
    stopping) with the random-number states, the fit state, and `extras` (the resolved config, the
    preprocessing statistics, the data fingerprint, version and commit).
    """

    def __init__(self, folder: Path, training: Training, extras: dict[str, Any], every_n_epochs: int,
                 before_write: Callable[[], None] = lambda: None, background: bool = False) -> None:
        self.folder, self.training, self.extras, self.every = folder, training, extras, every_n_epochs
        self.before_write = before_write  # e.g. flush the event files, so logs never lag a checkpoint
        # Files written on a background thread (close() waits for them); else written before returning.
        self.writer = BackgroundWriter() if background else None

    def contents(self, state: FitState) -> dict[str, Any]:
        objects = self.training.stateful()
        return {**{k: v.state_dict() if v is not None else None for k, v in objects.items()},
                "rng": rng_state(self.training.generator), **self.extras, "fit": state.state_dict()}

    def due(self, state: FitState) -> dict[str, dict[str, Any]]:
        """The checkpoints to write after `state`, by file name, in the order they are written."""
        mid_epoch = state.cursor is not None
        new_best = not mid_epoch and state.best_epoch == state.epoch and state.best_weights is not None
        if not (mid_epoch or new_best or state.status != "running" or state.epoch % self.every == 0):
            return {}
        ckpt = self.contents(state)
        files = {}
        if new_best:
            best = {**ckpt, "model": state.best_weights}
            if ckpt.get("averaging") is not None:  # the evaluated (averaged) weights differ
                best["trained_model"] = ckpt["model"]
            files["best.pt"] = best
        files["last.pt"] = ckpt
        return files

    def __call__(self, state: FitState) -> None:
        files = self.due(state)
        if files:
            self.before_write()
        for name, ckpt in files.items():
            self.wait()  # the previous file is on disk before this one is begun (best.pt, then last.pt)
            save_checkpoint(ckpt, self.folder / name, writer=self.writer)

    def wait(self) -> None:
        """Until every checkpoint given so far is on disk; raises a failed write's StorageError."""
        if self.writer is not None:
            self.writer.wait()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
