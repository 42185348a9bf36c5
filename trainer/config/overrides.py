"""Command-line overrides checked before Hydra sees them: Hydra's own messages suggest the wrong fix
(`+key`) for a mistyped key, and a SLURM launcher without SLURM (or without GPUs) ends in a traceback."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import fields, is_dataclass

from trainer.config.schema import GROUP_SCHEMAS, Config, declared
from trainer.config.validate import did_you_mean
from trainer.runtime.errors import ConfigError

# Keys that moved: the old spelling gets the new one named.
MOVED = {"scheduler.interval": "schedule.interval", "scheduler.per_arm": "schedule.per_arm",
         "averaging.kind": "averaging=NAME (none, poly, ema, swa)"}


def _group_keys(head: str) -> set[str] | None:
    """The keys under `head` that the schema declares (any option of a group), or None for a leaf."""
    if head in GROUP_SCHEMAS:
        return set().union(*(declared(s) for s in GROUP_SCHEMAS[head].values()))
    node = next((f.default_factory for f in fields(Config) if f.name == head), None)
    return set(declared(node)) if is_dataclass(node) else None  # early_stopping, schedule


def check_override_keys(args: list[str]) -> None:
    """Command-line overrides `key=value` of keys that no schema declares, with the key probably meant.

    Hydra rejects them too, but suggests `+key=value`, which adds the misspelt key; here the message
    names the known key closest to it. Keys under a group (`model.widht`) are checked against every
    option of the group; `+key`, `++key`, `~key`, `group/choice` and `hydra.*` are left to Hydra.
    """
    top = set(declared(Config)) | {"data", "model", "optimizer", "scheduler", "averaging", "schedule",
                                   "early_stopping"}
    for arg in args:
        key, sep, _ = arg.partition("=")
        if not sep or arg.startswith(("-", "+", "~")) or "/" in key or key.startswith("hydra"):
            continue
        if key in MOVED:
            raise ConfigError(f"{key} is now {MOVED[key]}; write {MOVED[key].split()[0]}=... instead")
        head, _, rest = key.partition(".")
        if head not in top:
            known = sorted(top)
            raise ConfigError(f"{key} is not a config key{did_you_mean(head, known, '', key[len(head):])}; "
                              "the keys are "
                              f"{known}, and `python -m trainer --cfg job` shows the whole config")
        group = _group_keys(head)
        if rest and group is not None and (sub := rest.split(".")[0]) not in group:
            if head == "schedule" and sub != "interval" and rest.startswith("per_arm"):
                continue
            extra = (f"; add an argument that the {head} takes but no schema lists with +{key}=..."
                     if head in ("optimizer", "scheduler") else "")
            where = f"any {head} config" if head in GROUP_SCHEMAS else head
            raise ConfigError(f"{key} is not a key of {where}"
                              f"{did_you_mean(sub, sorted(group), head + '.')}; its keys are "
                              f"{sorted(group)}{extra}")


# The Optuna sweeper's whole-number settings (hydra_plugins/trainer_optuna_sweeper/config.py).
SWEEPER_COUNTS = ("hydra.sweeper.n_trials", "hydra.sweeper.n_jobs", "hydra.sweeper.heartbeat_interval")


def check_launcher(args: list[str]) -> None:
    """`hydra/launcher=slurm` needs SLURM's `sbatch`; without it submitit fails with a traceback.
    `hydra.launcher.max_members` and `width_ratio` of the vectorized launcher: checked before any job
    is set up."""
    for arg in args:
        key, _, text = arg.lstrip("+").partition("=")
        if key in SWEEPER_COUNTS and not text.strip().isdigit():  # Hydra's message: a type conversion
            raise ConfigError(f"{key}={text!r} must be a whole number >= 1")
        if key == "hydra.launcher.max_members":
            from hydra_plugins.trainer_vectorized_launcher.vectorized_launcher import max_members_problem

            value: object = None if text == "null" else int(text) if text.lstrip("-").isdigit() else text
            if problem := max_members_problem(value):
                raise ConfigError(problem)
        if key == "hydra.launcher.width_ratio":
            from hydra_plugins.trainer_vectorized_launcher.vectorized_launcher import width_ratio_problem

            try:
                ratio: object = float(text)
            except ValueError:
                ratio = text
            if problem := width_ratio_problem(ratio):
                raise ConfigError(problem)
    if "hydra/launcher=slurm" in args:
        launcher, options, what = "hydra/launcher=slurm", "hydra.launcher", "every job of the sweep"
    elif "hydra/launcher=vectorized" in args and last_value(args, "hydra.launcher.backend", "") == "slurm":
        launcher, options, what = ("hydra.launcher.backend=slurm", "hydra.launcher.slurm",
                                   "every group of the vectorized sweep")
    else:
        return
    if shutil.which("sbatch") is None:
        raise ConfigError(f"{launcher} submits {what} with SLURM's sbatch, "
                          "which is not on this machine's PATH: start the sweep on the cluster's login "
                          f"node, or leave {launcher} out (or use hydra/launcher=parallel) to "
                          "run the jobs on this machine")
    check_slurm(args, launcher, options)


def last_value(args: list[str], key: str, default: str | None) -> str | None:
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"{key}=")]
    return values[-1] if values else default


def check_slurm(args: list[str], launcher: str, options: str) -> None:
    """A cluster that sinfo cannot reach, or jobs that ask for GPUs on a partition whose nodes have
    none: sbatch refuses them with a traceback from inside submitit (or they pend forever)."""
    gpus = last_value(args, f"{options}.gpus_per_node", "1")  # the configs' default
    partition = last_value(args, f"{options}.partition", None)
    command = ["sinfo", "--noheader", "--format=%G"] + ([f"--partition={partition}"] if partition
                                                         and partition != "null" else [])
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return  # no answer in time: sbatch will tell
    if done.returncode:
        said = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise ConfigError(f"{launcher} needs a SLURM cluster, and SLURM's sinfo cannot reach one from "
                          f"here ({said}): start the sweep on the cluster's login node, or point "
                          "SLURM_CONF at the cluster's slurm.conf")
    if not done.stdout.strip() and partition and partition != "null":
        raise ConfigError(f"{options}.partition={partition}: the cluster has no such partition; "
                          "`sinfo --summarize` lists those it has")
    if gpus in (None, "0", "null") or "gpu" in done.stdout:
        return
    where = f"partition {partition}" if partition and partition != "null" else "the default partition"
    raise ConfigError(f"{launcher} asks for {options}.gpus_per_node={gpus} GPU(s) per job, "
                      f"but no node of {where} has a GPU (sinfo lists no gpu resource): SLURM would "
                      f"refuse every job. Pass {options}.gpus_per_node=0 device=cpu to train on "
                      f"the nodes' CPUs, or {options}.partition=NAME for a partition with GPUs "
                      "(sinfo -o '%P %G' lists them)")
