"""`python -m trainer [+experiment=NAME] [key=value ...]`: a thin Hydra entry point around `run`."""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from trainer.config.validate import config_dir, static_monitor
from trainer.runtime.cli import fail, paragraph
from trainer.runtime.errors import FolderRefused, UserError
from trainer.runtime.job import JobContext
from trainer.sweeps.jobs import hydra_arg
from trainer.sweeps.objective import check_direction, objective, worst

log = logging.getLogger("trainer")


def summary(metrics: dict, out_dir: Path) -> str:
    """The few lines a user reads at the end of a run."""
    shown = [k for k in ("val/loss", "val/acc", "test/loss", "test/acc") if k in metrics]
    stopped = metrics.get("stopped_by", "epochs")
    lines = [
        f"run {metrics['status']} in {metrics['wall_time_s']:.1f} s: {metrics['epochs']} epochs, "
        f"{metrics['steps']:,} steps, {metrics['params']:,} parameters"
        + (f" (stopped by {stopped.replace('_', ' ')})" if stopped != "epochs" else ""),
        "  " + "  ".join(f"{k} {metrics[k]:.4f}" for k in shown)
        + f"  (val at best epoch {metrics['best_epoch']})",
        *(["  the trained weights without averaging at that epoch: " + "  ".join(
            f"{k} {metrics[k]:.4f}" for k in ("val_raw/loss", "val_raw/acc") if k in metrics)]
          if "val_raw/loss" in metrics else []),
        f"logs, checkpoints, metrics.json: {out_dir}",
        f"view with: tensorboard --logdir {out_dir}",
    ]
    return "\n".join(lines)


def job_line(metrics: dict, out_dir: Path) -> str:
    """A sweep job's one line: its folder, how it ended, and its numbers (the sweep's end says where
    to look at all of them)."""
    shown = "  ".join(f"{k} {metrics[k]:.4f}" for k in ("val/loss", "val/acc", "test/loss", "test/acc")
                      if k in metrics)
    return (f"{out_dir.name}: {metrics['status']} in {metrics['wall_time_s']:.1f} s, "
            f"{metrics['epochs']} epochs  {shown}  (best epoch {metrics['best_epoch']})")


def sweep_monitor(cfg: DictConfig, direction: object) -> str:
    """The job's monitor, checked against the sweeper's direction (a wrong pair stops the sweep)."""
    try:
        # monitor=auto on a file: its task, so the metric, is known once the data is read. A search
        # with a direction then monitors the metric of that direction (the run checks that the task
        # has it), so the value it optimizes is never the other metric.
        monitor = static_monitor(cfg) or ("val/acc" if str(direction).endswith("maximize") else "val/loss")
        check_direction(direction, monitor)
        if direction is not None and cfg.monitor == "auto":
            cfg.monitor = monitor
    except UserError as exc:  # wrong for every job of the sweep: stop it
        fail(str(exc), 2)
    return monitor


def job_value(metrics: dict, cfg: DictConfig, job: JobContext) -> float:
    """What a finished run() means for the command line: its exit, summary, and sweep value."""
    out, multirun = job.output_dir, job.multirun
    if metrics["status"] == "interrupted":
        signum = signal.Signals[metrics.get("signal", "SIGTERM")]
        sweep = job.sweep_dir
        again = (f"{hydra_arg('hydra.sweep.dir', str(sweep))} resume=true (completed jobs are skipped)"
                 if multirun else f"{hydra_arg('hydra.run.dir', str(out))} resume=true")
        message = (f"{signum.name} received: the run {metrics['reason']}. Its checkpoint is in "
                   f"{out / 'checkpoints'}; continue it with the same arguments plus {again}")
        if multirun and os.environ.get("SUBMITIT_EXECUTOR"):
            # A cluster job in its own process (scancel, preemption): the sweep that waits for it goes
            # on; exiting here would leave submitit without a result, and the sweep waiting forever.
            log.error(paragraph(message))
            return worst(metrics["monitor"])
        fail(message, 128 + signum.value)
    if metrics["status"] == "diverged":
        message = (f"the run diverged: {metrics['reason']}. Lower "
                   f"optimizer.lr (now {cfg.optimizer.get('lr')}), or clip gradients; logs in {out}")
        if multirun:  # a result of the sweep, not an error of the tool: a warning, and the worst
            # value for the sweeper (Optuna's crashes on NaN)
            log.warning("%s: %s", out.name, message)
            return worst(metrics["monitor"])
        fail(message, 3)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 speaks for all
        print(job_line(metrics, out) if multirun else summary(metrics, out))
    if metrics["status"] == "pruned":  # only in an Optuna search: its sweeper marks the trial pruned
        import optuna

        raise optuna.TrialPruned(metrics["reason"])
    return objective(metrics, metrics["monitor"])


@hydra.main(config_path=config_dir(), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    from trainer.run import run  # torch imports after Hydra parsed the CLI

    job = JobContext.from_hydra()  # the one read of Hydra's runtime config
    multirun = job.multirun
    monitor = sweep_monitor(cfg, job.sweeper.get("direction"))
    try:
        metrics = run(cfg, job=job)
    except KeyboardInterrupt:  # Ctrl-C before training started (during training, run() handles it)
        fail("interrupted (Ctrl-C) before training started; no checkpoint was written", 130)
    except FolderRefused as exc:  # another process's folder, or a run's: a sweep stops there too
        fail(str(exc), 2)
    except UserError as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        if not multirun:
            fail(str(exc), 2)
        # One job of a sweep: the other jobs go on; the job's log says why it failed.
        log.error(paragraph(str(exc)))
        return worst(monitor)
    except Exception:
        if multirun:  # Hydra keeps the error; put it in the job's log too
            log.exception("job %s failed", job.num)
        raise
    return job_value(metrics, cfg, job)


if __name__ == "__main__":
    from trainer.config.overrides import check_launcher, check_override_keys
    from trainer.runtime.cli import expose_hydra_plugins, quick_start
    from trainer.runtime.distributed import hydra_overrides, srun_world

    quick_start()
    try:  # before Hydra, whose own messages suggest the wrong fix (+key) or end in a traceback
        check_override_keys(sys.argv[1:])
        check_launcher(sys.argv[1:])
    except UserError as exc:
        fail(str(exc), 2)
    os.environ.update(srun_world())  # `srun --ntasks=N python -m trainer`: as torchrun would start it
    sys.argv += hydra_overrides()
    expose_hydra_plugins()  # before Hydra scans its plugins, from any folder: see there
    main()
