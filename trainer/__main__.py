"""`python -m trainer [+experiment=NAME] [key=value ...]`: a thin Hydra entry point around `run`."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
from pathlib import Path

import hydra
from omegaconf import DictConfig

from trainer.config import config_dir
from trainer.errors import UserError


def summary(metrics: dict, out_dir: Path) -> str:
    """The few lines a user reads at the end of a run."""
    shown = [k for k in ("val/loss", "val/acc", "test/loss", "test/acc") if k in metrics]
    lines = [
        f"run {metrics['status']} in {metrics['wall_time_s']:.1f} s: {metrics['epochs']} epochs, "
        f"{metrics['steps']:,} steps, {metrics['params']:,} parameters",
        "  " + "  ".join(f"{k} {metrics[k]:.4f}" for k in shown)
        + f"  (val at best epoch {metrics['best_epoch']})",
        f"logs, checkpoints, metrics.json: {out_dir}",
        f"view with: tensorboard --logdir {out_dir}",
    ]
    return "\n".join(lines)


def fail(message: str, code: int) -> None:
    """One paragraph on stderr, then exit with `code`."""
    # Never break inside a word: file paths in the message must stay whole to be copied.
    print("error: " + textwrap.fill(message, width=100, subsequent_indent="  ", break_long_words=False,
                                    break_on_hyphens=False), file=sys.stderr)
    sys.exit(code)


@hydra.main(config_path=config_dir(), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from trainer.run import hydra_output_dir, run  # torch imports after Hydra parsed the CLI

    try:
        metrics = run(cfg)
    except UserError as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        fail(str(exc), 2)
    out = hydra_output_dir()
    if metrics["status"] == "interrupted":
        signum = signal.Signals[metrics.get("signal", "SIGTERM")]
        fail(f"{signum.name} received: the run {metrics['reason']}. Its checkpoint is in "
             f"{out / 'checkpoints'}; continue it with the same arguments plus "
             f"hydra.run.dir={out} resume=true", 128 + signum.value)
    if metrics["status"] == "diverged":
        message = (f"the run diverged: {metrics['reason']} (epoch {metrics['epochs'] + 1}). Lower "
                   f"optimizer.lr (now {cfg.optimizer.get('lr')}), or clip gradients; logs in {out}")
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            print("error: " + message, file=sys.stderr)
            return float("nan")  # a failed trial for a sweeper; the sweep goes on
        fail(message, 3)
    print(summary(metrics, out))
    return metrics[cfg.monitor]


if __name__ == "__main__":
    main()
