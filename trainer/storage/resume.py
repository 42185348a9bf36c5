"""Continuing a run: which checkpoint, whether the configuration and data still match, and
whether the run is already finished (its recorded metrics are then its result)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from trainer.config.flat import ABSENT, config_changes
from trainer.runtime.errors import ConfigError
from trainer.storage.checkpoint import load_checkpoint

log = logging.getLogger(__name__)

# Statuses after which a run is over: `resume=true` returns its recorded metrics as they are.
FINISHED = ("completed", "diverged", "pruned")
# Keys that may change when a run continues: they do not change what is trained, only how long,
# where, and how much is logged. Any other difference refuses the resume.
RESUMABLE_CHANGES = ("epochs", "max_steps", "resume", "ckpt", "overwrite", "progress", "device", "threads",
                     "log_every_n_steps", "nan_check_every_n_steps", "checkpoint_every_n_epochs",
                     "data.root", "data.download", "log_layer_stats", "log_layer_stats_every_n_epochs")
LENGTH_KEYS = ("epochs", "max_steps")


def resume_path(resume: bool, ckpt: str | None, out_dir: Path) -> Path | None:
    """The checkpoint to continue from: `ckpt=PATH`, or with `resume=true` the run dir's last.pt.

    `resume=true` in a run directory with no checkpoint yet starts afresh, so a whole sweep can be
    relaunched with `resume=true` after a preemption. A run killed while writing its first last.pt
    has a complete best.pt of that epoch (written first): it continues from that.
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
        for path in (out_dir / "checkpoints" / "last.pt", out_dir / "checkpoints" / "best.pt"):
            if path.is_file():
                return path
    return None


def read_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
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


def newest_state(path: Path, device: torch.device | str
                 ) -> tuple[dict[str, Any], dict[str, Any] | None, Path]:
    """(the checkpoint to continue from, the best epoch's weights, that checkpoint's path) for the
    checkpoint at `path`.

    best.pt is written before last.pt, so a run killed between the two writes leaves best.pt one
    epoch ahead: it is then the newer complete state, and the run continues from it. Any other
    disagreement between the two files is an error, never a silent test of other weights.
    """
    ckpt = read_checkpoint(path, device)
    best_epoch = ckpt["fit"]["best_epoch"]
    best_path = path.parent / "best.pt"
    if path.name == "best.pt":  # ckpt= a best.pt: its trained weights go on, its evaluated are the best
        return {**ckpt, "model": ckpt.get("trained_model", ckpt["model"])}, ckpt["model"], path
    if not best_epoch:
        return ckpt, None, path
    if not best_path.is_file():
        raise ConfigError(f"{path} records a best epoch {best_epoch} but {best_path} is missing; "
                          "the run's best weights are lost: start the run afresh (without resume)")
    best = read_checkpoint(best_path, device)
    if best["fit"]["epoch"] == best_epoch:
        return ckpt, best["model"], path
    if best["fit"]["epoch"] > ckpt["fit"]["epoch"]:
        log.warning("%s holds epoch %d, newer than %s (epoch %d): the run stopped between the two "
                    "writes; continuing from best.pt", best_path, best["fit"]["epoch"], path,
                    ckpt["fit"]["epoch"])
        return newest_state(best_path, device)
    raise ConfigError(f"{best_path} holds epoch {best['fit']['epoch']} but {path} records the best "
                      f"epoch as {best_epoch}: the checkpoints disagree (copied by hand, or written by "
                      "an older version). Start the run afresh, or continue from one of them alone "
                      f"with ckpt={best_path}")


# Keys added inside existing nodes by later versions, with the value that trains as the versions
# before them did: a checkpoint without the key resumes under that value.
ADDED_KEYS = {"model.norm": "none", "model.norm_position": "pre", "regularization.l1": 0.0,
              "regularization.l2": 0.0, "regularization.biases": False, "ensemble.kind": "none",
              "loss": "auto", "huber_delta": 1.0}


def recorded_config(out: Path) -> dict[str, Any] | None:
    """The config Hydra recorded for the run in `out` (`.hydra/config.yaml`), for a run that ended
    before its first checkpoint; None without one."""
    try:
        from omegaconf import OmegaConf

        return OmegaConf.to_container(OmegaConf.load(out / ".hydra" / "config.yaml"), resolve=True)
    except Exception:  # no file (a run through the Python API), or one that does not resolve
        return None


def check_config(saved: dict[str, Any], path: Path, resolved: dict[str, Any]) -> None:
    """Refuse to continue the run recorded at `path` with a config that would train differently."""
    changes = config_changes(saved, resolved, ADDED_KEYS)
    refused = {k: v for k, v in changes.items() if k not in RESUMABLE_CHANGES}
    cosine = resolved.get("scheduler", {}).get("T_max", "unset") is None
    if cosine:  # T_max null spans the whole run: its shape depends on the run's length
        refused.update({k: v for k, v in changes.items() if k in LENGTH_KEYS})
    if not refused:
        return
    shown = {ABSENT: "(none)"}
    listed = ", ".join(f"{k}: {shown.get(old, repr(old))} -> {shown.get(new, repr(new))}"
                       for k, (old, new) in refused.items())
    why = (" scheduler=cosine with T_max null stretches over the first run's length, so epochs and "
           "max_steps cannot change: set scheduler.T_max when starting a run you mean to extend."
           if cosine and refused.keys() & set(LENGTH_KEYS) else "")
    allowed = [k for k in RESUMABLE_CHANGES if not (cosine and k in LENGTH_KEYS)]
    raise ConfigError(f"cannot continue {path}: the configuration differs from the one it was trained "
                      f"with ({listed}), which would change the training.{why} Resume with the "
                      "original values (they are in the run's .hydra/config.yaml), or start a new run "
                      f"in another folder. Only these may change on resume: {', '.join(allowed)}")


def check_data(ckpt: dict[str, Any], path: Path, fingerprint: dict[str, Any]) -> None:
    """Refuse to continue the checkpoint at `path` on other data than it was trained on."""
    saved = ckpt.get("data")
    if saved is not None and saved != fingerprint:
        raise ConfigError(f"cannot continue {path}: the data differ from the data it was trained on "
                          f"(splits {saved['sizes']} then, {fingerprint['sizes']} now; the train "
                          "split's hash differs too), e.g. an edited, replaced or shortened data file. "
                          "Restore the original data, or start a new run in another folder")


def finished_metrics(out: Path, cfg_epochs: int, cfg_max_steps: int | None,
                     ckpt_step: int | None = None) -> dict[str, Any] | None:
    """The recorded metrics of a finished run in `out` that the config does not extend, else None.

    Only `epochs` raised above the recorded end (or `max_steps` above the recorded steps, for a
    run that max_steps ended) continues a completed run; early-stopped, diverged and pruned runs
    are over. Metrics older than the checkpoint (`ckpt_step`: a continuation that was killed
    before writing its own) are not returned: the run goes on from the checkpoint instead.
    """
    path = out / "metrics.json"
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    status, stopped_by = metrics.get("status"), metrics.get("stopped_by", "epochs")
    if status not in FINISHED:
        return None
    if ckpt_step is not None and ckpt_step > metrics.get("steps", 0):
        log.info("%s is older than the checkpoint (step %d > %d): finishing from the checkpoint",
                 path, ckpt_step, metrics.get("steps", 0))
        return None
    if status == "completed" and stopped_by == "epochs" and cfg_epochs > metrics["epochs"]:
        log.info("continuing the completed run in %s: epochs raised from %d to %d", out,
                 metrics["epochs"], cfg_epochs)
        return None
    steps_raised = cfg_max_steps is None or cfg_max_steps > metrics["steps"]
    if status == "completed" and stopped_by == "max_steps" and steps_raised:
        log.info("continuing the run in %s that max_steps ended at step %d", out, metrics["steps"])
        return None
    log.info("the run in %s is already finished (%s, stopped by %s after %d epochs): returning its "
             "recorded metrics without training; %s", out, status, stopped_by.replace("_", " "),
             metrics["epochs"], "raise epochs to train longer" if stopped_by == "epochs" and
             status == "completed" else "it cannot be continued")
    return metrics


@dataclass
class Resumption:
    """What a run continues from: a checkpoint (and the best epoch's weights), or a finished run's
    recorded metrics, which are then the run's result as they are."""

    path: Path | None = None  # the checkpoint to continue from
    ckpt: dict[str, Any] | None = None
    best_weights: dict[str, Any] | None = None
    same_folder: bool = False  # continuing in the checkpoint's own run folder
    afresh: bool = False  # resume=true found no checkpoint: what a killed run logged there goes
    finished: dict[str, Any] | None = None
    note: str | None = None  # for metrics.json: how the run started


def plan_resume(out: Path, device: torch.device, resolved: dict[str, Any]) -> Resumption:
    """Find and check what the run in `out` with config `resolved` continues from (`resume`,
    `ckpt`): a checkpoint whose config and data fit, a finished run, or nothing (a fresh start)."""
    resume = resolved["resume"]
    path = resume_path(resume, resolved["ckpt"], out)
    same_folder = path is not None and path.parent.parent.resolve() == out.resolve()
    plan = Resumption(path=path, same_folder=same_folder)
    if path is not None:
        plan.ckpt, plan.best_weights, plan.path = newest_state(path, device)
        check_config(plan.ckpt["config"], path, resolved)
    if plan.same_folder or (resume and path is None):  # a run diverged before its checkpoint too
        step = plan.ckpt["fit"]["step"] if plan.ckpt is not None else None
        plan.finished = finished_metrics(out, resolved["epochs"], resolved["max_steps"], step)
        if plan.finished is not None:
            if plan.ckpt is None and (saved := recorded_config(out)) is not None:
                check_config(saved, out / ".hydra" / "config.yaml", resolved)
            return plan
    if resume and path is None:
        plan.note = f"resume=true found no checkpoint in {out / 'checkpoints'}: started afresh"
        plan.afresh = True
        log.warning(plan.note)
    return plan
