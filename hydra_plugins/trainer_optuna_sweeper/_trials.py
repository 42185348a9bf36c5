"""A search's trials and their jobs' folders: what a finished job tells its trial, what optuna-dashboard
shows beside it, the checkpoint a retried trial continues from, and the search's results file."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobStatus
from omegaconf import OmegaConf
from optuna.trial import FrozenTrial, Trial, TrialState

from trainer.runtime.errors import ConfigError
from trainer.sweeps.jobs import job_number

log = logging.getLogger(__name__)
RESULTS = "optimization_results.yaml"
# What optuna-dashboard shows of each trial beside its value (user attributes), from its job's folder.
SHOWN_METRICS = ("val/loss", "val/acc", "test/loss", "test/acc", "best_epoch", "epochs", "status")


def told(study: optuna.Study, trial: Trial, value: float | None, state: TrialState) -> None:
    try:
        study.tell(trial, value, state=state)
    except RuntimeError as exc:  # the grid sampler calls study.stop() on its last point
        if "Study.stop" not in str(exc):
            raise


def outcome(ret: Any, number: int) -> tuple[float | None, TrialState]:
    """The value and state that trial `number`'s job returned: its value (complete), pruned, or failed."""
    try:
        # A pruned job raises TrialPruned; looked at directly, since reading return_value
        # would print Hydra's "Error executing job" for it.
        if ret.status == JobStatus.FAILED and isinstance(ret._return_value, optuna.TrialPruned):
            return None, TrialState.PRUNED
        return float(ret.return_value), TrialState.COMPLETE
    except Exception as exc:  # the job raised; Hydra keeps the exception in its return
        log.warning("trial %d failed: %s: %s", number, type(exc).__name__, exc)
        return None, TrialState.FAIL


def record_job(study: optuna.Study, trial: Trial, ret: Any) -> None:
    """The trial's job folder and its metrics.json's main numbers as user attributes (never fails
    the search: a job that wrote no metrics has only its folder)."""
    try:
        folder = Path(str(ret.hydra_cfg.hydra.runtime.output_dir))
        trial.set_user_attr("job_folder", str(folder))
        metrics = json.loads((folder / "metrics.json").read_text())
        for key in SHOWN_METRICS:
            if key in metrics:
                trial.set_user_attr(key, metrics[key])
    except Exception as exc:  # noqa: BLE001  (attributes are a courtesy)
        log.debug("trial %d: no job attributes (%s)", trial.number, exc)


def check_no_jobs(sweep_dir: Path, url: str) -> None:
    """A study with no trials in a sweep folder that holds job folders (its database deleted or lost)
    would number its trials from 0 again, into the old jobs' folders: refused."""
    jobs = sorted((p.name for p in sweep_dir.iterdir() if p.is_dir() and job_number(p.name) is not None
                   and (p / ".hydra").is_dir()), key=job_number)
    if jobs:
        shown = ", ".join(jobs[:3]) + (", ..." if len(jobs) > 3 else "")
        raise ConfigError(f"{sweep_dir} holds {len(jobs)} job folders of an earlier search ({shown}) but "
                          f"its study in {url} has no trials (the database was deleted, lost or "
                          "replaced): a new study would number its trials from 0 again, into those "
                          "folders. Restore the study's database to continue that search, or start "
                          "this one in another hydra.sweep.dir")


def last_checkpoint(sweep_dir: Path, number: int) -> Path | None:
    """checkpoints/last.pt in job `number`'s folder, if it left one; the folder found by its number
    whatever its name (`7`, `7_values`, or padded to the sweep's width, `07_values`)."""
    for folder in sweep_dir.iterdir():
        last = folder / "checkpoints" / "last.pt"
        if job_number(folder.name) == number and last.is_file():
            return last
    return None


def save_results(study: optuna.Study, sweep_dir: Path, study_name: str, url: str) -> None:
    """optimization_results.yaml: the best trial, its values and the study's storage."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        log.warning("no trial of the study completed; %s not written", RESULTS)
        return
    best: FrozenTrial = study.best_trial
    log.info("best trial %d: %s -> %s", best.number, best.params, best.value)
    OmegaConf.save(OmegaConf.create({"name": "optuna", "study_name": study_name, "storage": url,
                                     "best_trial": best.number, "best_params": best.params,
                                     "best_value": best.value}), sweep_dir / RESULTS)
