"""A search job's link to its Optuna trial, and the study a sweep folder holds.

The Optuna sweeper (hydra_plugins/trainer_optuna_sweeper) names every job after its trial number
(`hydra.job.num`) and puts the study's storage and name into the job's `hydra.sweeper`. From those
a job reports its monitor after each epoch and learns when the pruner stops it. Optuna is imported
only inside these functions: a run outside a search never needs it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from trainer.runtime.errors import ConfigError, DataError
from trainer.runtime.job import JobContext
from trainer.sweeps.jobs import job_number

log = logging.getLogger(__name__)

PRUNERS = {"none": "NopPruner", "median": "MedianPruner", "hyperband": "HyperbandPruner",
           "successive_halving": "SuccessiveHalvingPruner"}
SWEEPER = "hydra_plugins.trainer_optuna_sweeper.optuna_sweeper.OptunaSweeper"
SQLITE_TIMEOUT_S = 60  # processes sharing one SQLite file wait this long for its write lock
OWNER = "sweeper_process"  # user attr of a trial: host:pid of the sweeper process that runs it


def storage_url(storage: str | None, sweep_dir: str | Path) -> str:
    """The study's database: `storage`, or by default an SQLite file in the sweep folder."""
    if storage:
        return str(storage)
    return f"sqlite:///{Path(sweep_dir).resolve() / 'optuna.db'}"


def open_storage(url: str, made: bool = False, **heartbeat: Any) -> Any:
    """Optuna's RDBStorage on `url`; SQLite waits for a busy file instead of failing at once.
    `made`: the sweeper has made the study's tables and checked their version (a job of its search
    opens the storage in ~3 ms instead of ~30)."""
    import optuna

    kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}} if url.startswith("sqlite") else {}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, skip_table_creation=made,
                                          skip_compatibility_check=made, **heartbeat)
    except Exception as exc:  # a bad URL, a missing driver, a database that cannot be reached
        damaged = damaged_file(url, exc)
        if damaged is not None:
            raise DataError(f"{damaged} is damaged: SQLite cannot read it ({str(exc).splitlines()[0]}). "
                            f"It holds the study of this sweep folder; restore it from a copy, or move "
                            f"it aside (mv {damaged} {damaged}.damaged) to start a new study here") from None
        raise ConfigError(f"hydra.sweeper.storage={url} cannot be opened ({type(exc).__name__}: {exc}); "
                          "give an SQLAlchemy URL such as sqlite:///search.db or "
                          "postgresql://user:password@host/db (with its driver installed)") from None


def damaged_file(url: str, exc: Exception) -> Path | None:
    """The SQLite file of `url` when `exc` says it is not a readable database (not for a lock or a
    folder that cannot be reached: those are the URL's or the machine's to fix)."""
    if not url.startswith("sqlite:///"):
        return None
    path = Path(url.removeprefix("sqlite:///"))
    text = str(exc).lower()
    reasons = ("file is not a database", "malformed", "file is encrypted")
    return path if path.is_file() and any(r in text for r in reasons) else None


def make_pruner(name: str, args: dict[str, Any] | None = None) -> Any:
    """The Optuna pruner `hydra.sweeper.pruner=name`, built with `hydra.sweeper.pruner_args`."""
    import optuna

    if name not in PRUNERS:
        raise ConfigError(f"hydra.sweeper.pruner={name!r} is not allowed; choose one of {list(PRUNERS)}")
    try:
        return getattr(optuna.pruners, PRUNERS[name])(**(args or {}) if name != "none" else {})
    except TypeError as exc:
        raise ConfigError(f"hydra.sweeper.pruner_args={args} do not fit the {name} pruner ({exc}); see "
                          f"optuna.pruners.{PRUNERS[name]} for its arguments") from None


def epoch_reporter(epochs: int, job: JobContext) -> Callable[[int, float], str] | None:
    """For a job of an Optuna search: a callback that reports the monitor of each epoch to the job's
    trial (its intermediate values, which optuna-dashboard draws, with or without a pruner) and
    returns why the pruner stops it (empty: go on; always with `pruner=none`). None for any other
    run."""
    sweeper = job.sweeper
    if not job.hydra or sweeper.get("_target_") != SWEEPER:
        return None
    import optuna

    storage = open_storage(storage_url(sweeper.get("storage"), job.sweep_dir), made=True)
    args = dict(sweeper.get("pruner_args") or {})
    study = optuna.load_study(study_name=sweeper["study_name"], storage=storage,
                              pruner=make_pruner(sweeper.get("pruner", "none"), args))
    study_id = storage.get_study_id_from_name(sweeper["study_name"])
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, int(job.num))
    trial = optuna.trial.Trial(study, trial_id)
    # A resumed job trains again the epochs after its checkpoint, and may report one that its killed
    # process reported (the same value: resume is exact); Optuna keeps the first and warns.
    reported = set(storage.get_trial(trial_id).intermediate_values)

    def report(epoch: int, value: float) -> str:
        if epoch not in reported:
            trial.report(value, epoch)
        if epoch < epochs and trial.should_prune():
            return f"pruned by the {sweeper.get('pruner')} pruner after epoch {epoch}"
        return ""

    return report


def elsewhere_lines(trials: list[Any], here: set[int | None]) -> list[str]:
    """The study's trials whose job folders are not in this sweep folder: run by processes with
    their own sweep folder (on other machines, sharing the study through its database), by process."""
    by_owner: dict[str, list[str]] = {}
    for t in trials:
        if t.number not in here:
            by_owner.setdefault(str(t.user_attrs.get(OWNER, "unknown process")), []).append(
                f"{t.number} {t.state.name.lower()}")
    return [f"  trials of another sweep folder, run by {owner}: " + ", ".join(numbers)
            for owner, numbers in sorted(by_owner.items())]


def study_summary(sweep_dir: Path) -> list[str]:
    """Lines on the Optuna study of a sweep folder: its trials, best trial and parameter importances.

    Empty when the folder is not an Optuna search (its multirun.yaml names another sweeper).
    """
    path = sweep_dir / "multirun.yaml"
    if not path.is_file():
        return []
    sweeper = OmegaConf.load(path).hydra.sweeper
    if sweeper.get("_target_") != SWEEPER:
        return []
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = storage_url(sweeper.storage, sweep_dir)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        return [f"Optuna study: {url} does not exist (moved or deleted), so no study to show"]
    try:
        study = optuna.load_study(study_name=sweeper.study_name, storage=open_storage(url))
    except KeyError:
        return [f"Optuna study: {url} has no study named {sweeper.study_name}"]
    except DataError as exc:  # a damaged file: the jobs' own table stands without it
        return [f"Optuna study: {exc}"]
    trials = study.get_trials(deepcopy=False)
    states: dict[str, int] = {}
    for t in trials:
        states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
    lines = [f"study {study.study_name} in {url}: {len(trials)} trials ("
             + ", ".join(f"{n} {s}" for s, n in states.items()) + f"), {study.direction.name.lower()}"]
    here = {job_number(p.name) for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()}
    lines += elsewhere_lines(trials, here)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        return lines + ["no completed trial yet"]
    best = study.best_trial
    owner = best.user_attrs.get(OWNER, "another process")
    where = "" if best.number in here else f", run by {owner} in another sweep folder"
    lines.append(f"best trial {best.number} (job {best.number}{where}): value {best.value:.4f}  "
                 + " ".join(f"{k}={v}" for k, v in best.params.items()))
    try:
        importances = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError) as exc:  # too few trials, or one parameter only
        return lines + [f"parameter importances: not available ({exc})"]
    lines.append("parameter importances (fANOVA): "
                 + "  ".join(f"{k} {v:.3f}" for k, v in importances.items()))
    return lines

