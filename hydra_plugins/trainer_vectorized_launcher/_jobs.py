"""One job of a vectorized sweep as Hydra's `run_job` sees it: its composed config, its Hydra
config made current, its output folder and task config (made once), and its JobReturn."""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobRuntime, JobStatus, _flush_loggers
from omegaconf import DictConfig, OmegaConf, open_dict, read_write


@dataclass
class Job:
    idx: int
    overrides: list[str]
    config: DictConfig  # the job's whole config, `hydra` node included
    task_cfg: DictConfig | None = None  # what the task function gets (no `hydra` node)
    out: Path | None = None
    hydra_cfg: DictConfig | None = None  # HydraConfig's copy of the job's `hydra` node, once made
    context: Any = None  # trainer.runtime.job.JobContext: Hydra's runtime config, read once started


def current(job: Job) -> None:
    """Make `job`'s Hydra config the current one: `HydraConfig.set_config`, whose copy of the config
    (about 20 ms on this project's CPU) is made once per job and kept (it is read-only)."""
    if job.hydra_cfg is None:
        HydraConfig.instance().set_config(job.config)
        job.hydra_cfg = HydraConfig.instance().cfg
    HydraConfig.instance().cfg = job.hydra_cfg


def compose(launcher: Any, overrides: Sequence[str], idx: int) -> Job:
    loader = launcher.hydra_context.config_loader
    # Usually the sweeper's check composed it already (vectorized_launcher.remember_compositions).
    config = loader.composed.pop((id(launcher.config), tuple(overrides)), None)
    if config is None:
        config = loader.load_sweep_config(launcher.config, list(overrides))
        loader.composed.clear()
    with open_dict(config):
        config.hydra.job.id = idx
        config.hydra.job.num = idx
    return Job(idx, list(overrides), config)


def without_hydra(config: DictConfig) -> DictConfig:
    """The task's config: a copy without the `hydra` node. The node is left out of the copy rather
    than copied and deleted (it is most of a job's config: 16 ms a job of 64 on this project's CPU)."""
    content = config.__dict__["_content"]
    config.__dict__["_content"] = {k: v for k, v in content.items() if k != "hydra"}
    try:
        return copy.deepcopy(config)
    finally:
        config.__dict__["_content"] = content


def place(job: Job) -> None:
    """The job's output folder (`hydra.sweep.dir/hydra.sweep.subdir`, whose name may read the job's
    Hydra config) and the task's config, once: `run_job`'s second `HydraConfig.set_config` after
    setting the folder is made here by setting it in the copy too (what the copy would hold), and
    the task's config is copied once and kept."""
    if job.out is not None:
        return
    config = job.config
    current(job)
    out = (Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)).absolute()
    for node in (config.hydra.runtime, job.hydra_cfg.hydra.runtime):
        with read_write(node), open_dict(node):
            node.output_dir = str(out)
    job.task_cfg, job.out = without_hydra(config), out


def end_job(job: Job, launcher: Any, value: Any, failed: bool = False) -> JobReturn:
    """`run_job` after the task call: the JobReturn and `on_job_end`."""
    current(job)
    ret = JobReturn()
    ret.cfg, ret.hydra_cfg = job.task_cfg, job.hydra_cfg  # the job's own read-only copy (`current`)
    ret.overrides = OmegaConf.to_container(job.config.hydra.overrides.task)
    ret.working_dir = os.getcwd()
    ret.return_value = value
    ret.status = JobStatus.FAILED if failed else JobStatus.COMPLETED
    ret.task_name = JobRuntime.instance().get("name")
    _flush_loggers()
    launcher.hydra_context.callbacks.on_job_end(config=job.config, job_return=ret)
    return ret
