"""`VectorizedLauncher.launch`: compose every job, group them, train each group as one stacked model.

Each job of a group gets what Hydra's `run_job` gives a job of the basic launcher (its output
folder, `.hydra/` files, the callbacks' `on_job_start` / `on_job_end`, a `JobReturn` in order) and
what `trainer.__main__.main` makes of its metrics (the value for the sweeper, its summary, the exit
status of a stopped sweep); only the training in between is shared (`trainer.vectorized`).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.trainer_vectorized_launcher._jobs import Job, compose, current, end_job, place
from hydra_plugins.trainer_vectorized_launcher._yaml import save_yaml

log = logging.getLogger(__name__)


def start_job(job: Job, launcher: Any) -> None:
    """`run_job` up to the task call: output folder, Hydra's config files, `on_job_start`; the job's
    context (as trainer/__main__.py reads it for a job of the basic launcher)."""
    from trainer.runtime.job import JobContext

    place(job)
    current(job)
    config, out = job.config, job.out
    out.mkdir(parents=True, exist_ok=True)
    if config.hydra.output_subdir is not None:
        hydra_out = out / str(config.hydra.output_subdir)
        save_yaml(job.task_cfg, "config.yaml", hydra_out)
        save_yaml(job.hydra_cfg, "hydra.yaml", hydra_out)  # written as is: no copy needed
        save_yaml(config.hydra.overrides.task, "overrides.yaml", hydra_out)
    launcher.hydra_context.callbacks.on_job_start(config=config, task_function=launcher.task_function)
    job.context = JobContext.from_hydra()  # the job's context, as trainer/__main__.py reads it


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
    from trainer.vectorized.grouping import plan

    setup_globals()
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    Path(str(launcher.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    jobs = [compose(launcher, o, initial_job_idx + i) for i, o in enumerate(job_overrides)]
    tasks = []
    for job in jobs:
        place(job)  # `${hydra:...}` in a job's config: its Hydra config is the current one
        tasks.append(OmegaConf.to_container(job.task_cfg, resolve=True))
    steps = plan(tasks, launcher.width_ratio)
    groups = [members for kind, members in steps if kind == "group"]
    log.info("Launching %d jobs: %d stacked groups (%s members), %d on their own", len(jobs), len(groups),
             ", ".join(str(len(g)) for g in groups) or "no", len(steps) - len(groups))
    if launcher.backend == "slurm":
        return launch_on_slurm(launcher, jobs, steps)
    returns: dict[int, JobReturn] = {}
    for kind, members in steps:
        if kind != "group":
            job = jobs[members[0]]
            log.info("\t#%d : %s  (on its own, not vectorized: %s)", job.idx,
                     " ".join(filter_overrides(job.overrides)), kind)
            returns[job.idx] = run_job(hydra_context=launcher.hydra_context,
                                       task_function=launcher.task_function, config=job.config,
                                       job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
        else:
            label = f"group {groups.index(members) + 1}/{len(groups)}"
            returns.update(run_group(launcher, [jobs[i] for i in members], label))
        configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    return [returns[job.idx] for job in jobs]


@dataclass
class OnNode:
    """One SLURM job of a vectorized sweep: trains a part of a group (at most `max_members` jobs)
    as the local launcher trains it, or runs one job on its own; its JobReturns go back pickled."""

    hydra_context: Any
    task_function: Any
    config: DictConfig
    max_members: int | None
    singletons: dict[Any, Any]  # Hydra's singletons of the sweep's process (SweepKeys: folder names)

    def __call__(self, label: str | None, jobs: list[Job]) -> dict[int, JobReturn]:
        Singleton.set_state(self.singletons)
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        if label is None:
            return {jobs[0].idx: run_job(hydra_context=self.hydra_context, task_function=self.task_function,
                                         config=jobs[0].config, job_dir_key="hydra.sweep.dir",
                                         job_subdir_key="hydra.sweep.subdir")}
        return run_group(self, jobs, label)


def launch_on_slurm(launcher: Any, jobs: list[Job], steps: list[tuple[str, list[int]]]) -> list[JobReturn]:
    """Every group, split into parts of at most `max_members`, and every job that trains on its own
    as one SLURM job (submitit, one job array); waits for all and returns the jobs' JobReturns."""
    import submitit

    from trainer.vectorized.grouping import chunks

    groups = [members for kind, members in steps if kind == "group"]
    units: list[tuple[str | None, list[Job]]] = []
    for kind, members in steps:
        if kind != "group":
            units.append((None, [jobs[members[0]]]))
            continue
        parts = chunks(members, launcher.max_members or len(members))
        for n, part in enumerate(parts):
            label = f"group {groups.index(members) + 1}/{len(groups)}"
            units.append((label if len(parts) == 1 else f"{label} part {n + 1}/{len(parts)}",
                          [jobs[i] for i in part]))
    folder = Path(str(launcher.config.hydra.sweep.dir)) / ".submitit" / "%j"
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    options = {k: v for k, v in OmegaConf.to_container(launcher.slurm).items() if v is not None}
    partition, account = options.pop("partition", None), options.pop("account", None)
    executor.update_parameters(name=str(launcher.config.hydra.job.name), **options,
                               **({"slurm_partition": partition} if partition else {}),
                               **({"slurm_account": account} if account else {}))
    on_node = OnNode(launcher.hydra_context, launcher.task_function, launcher.config, launcher.max_members,
                     Singleton.get_state())
    with executor.batch():
        submitted = [executor.submit(on_node, label, part) for label, part in units]
    for (label, part), job in zip(units, submitted, strict=True):
        log.info("\tSLURM job %s: %s (%s)", job.job_id, " ".join(f"#{j.idx}" for j in part),
                 label or "on its own")
    returns: dict[int, JobReturn] = {}
    for job in submitted:
        returns.update(job.result())  # the jobs' JobReturns, pickled on the node by submitit
    from trainer.__main__ import job_line

    for job in jobs:  # each job's line, as the local launcher prints them (here from the job's folder)
        metrics = Path(str(returns[job.idx].hydra_cfg.hydra.runtime.output_dir)) / "metrics.json"
        if metrics.is_file():
            print(job_line(json.loads(metrics.read_text()), metrics.parent))
    return [returns[job.idx] for job in jobs]


def run_group(launcher: Any, jobs: list[Job], label: str) -> dict[int, JobReturn]:
    """Train `jobs` as one stacked group; their JobReturns by job number."""
    from trainer.__main__ import job_value, sweep_monitor
    from trainer.runtime.cli import fail, paragraph
    from trainer.runtime.errors import FolderRefused, UserError
    from trainer.storage.rundir import hold_log, settle
    from trainer.sweeps.jobs import record_process
    from trainer.sweeps.objective import worst
    from trainer.vectorized.runner import run_members

    for job in jobs:
        log.info("\t#%d : %s  (%s)", job.idx, " ".join(filter_overrides(job.overrides)), label)
        start_job(job, launcher)
    started = time.time()  # in each job's process record: the report must not take the first as superseded
    handlers = group_log(jobs)
    # a job's log lines reach its folder once its run is accepted there (trainer.storage.rundir)
    for job in jobs:
        hold_log(job.out)
    monitors = []
    for job in jobs:
        current(job)
        monitors.append(sweep_monitor(job.task_cfg, job.context.sweeper.get("direction")))
    try:
        results = run_members([j.task_cfg for j in jobs], [j.out for j in jobs], label=label,
                              max_members=launcher.max_members, jobs=[j.context for j in jobs],
                              before_open=lambda i: current(jobs[i]), started=started)
    except FolderRefused as exc:  # as with the basic launcher: the sweep stops, exit status 2
        fail(str(exc), 2)
    except Exception as exc:  # as run_job keeps a task's exception: the other groups go on
        log.exception("%s failed", label)
        return {job.idx: end_job(job, launcher, exc, failed=True) for job in jobs}
    finally:
        for job in jobs:  # those that no run took: a fresh folder gets the process record a report reads
            current(job)
            if settle(job.out, job.context.staged_dir):
                record_process(job.out, started)
        for handler in handlers:
            logging.getLogger().removeHandler(handler)
            handler.close()
    returns: dict[int, JobReturn] = {}
    # Interrupted jobs last: the first of them ends the process (exit status 128 + signal), as the
    # basic launcher's job would, after the others have been handed back.
    order = sorted(range(len(jobs)), key=lambda i: isinstance(results[i], dict)
                   and results[i]["status"] == "interrupted")
    for i in order:
        job, result = jobs[i], results[i]
        current(job)
        if isinstance(result, UserError):
            log.error("job #%d: %s", job.idx, paragraph(str(result)))
            returns[job.idx] = end_job(job, launcher, worst(monitors[i]))
            continue
        try:
            value = job_value(result, job.task_cfg, job.context)
        except Exception as exc:  # optuna.TrialPruned: the task function's exception, as run_job keeps it
            returns[job.idx] = end_job(job, launcher, exc, failed=True)
        else:
            returns[job.idx] = end_job(job, launcher, value)
    sys.stdout.flush()
    return returns


def group_log(jobs: list[Job]) -> list[logging.Handler]:
    """The group's log lines in every member's `JOB_NAME.log` (Hydra's job log file), beside the
    console. Returns the handlers added (removed when the group ends)."""
    current(jobs[0])
    configure_log(jobs[0].config.hydra.job_logging, jobs[0].config.hydra.verbose)
    root = logging.getLogger()
    files = [h for h in root.handlers if isinstance(h, logging.FileHandler)]
    added: list[logging.Handler] = []
    for job in jobs[1:]:
        handler = logging.FileHandler(job.out / f"{job.config.hydra.job.name}.log")
        if files:
            handler.setFormatter(files[0].formatter)
            handler.setLevel(files[0].level)
        root.addHandler(handler)
        added.append(handler)
    return added
