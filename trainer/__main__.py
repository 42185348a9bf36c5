"""`python -m trainer [+experiment=NAME] [key=value ...]`: a thin Hydra entry point around `run`."""

from __future__ import annotations

import os
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


@hydra.main(config_path=config_dir(), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    from trainer.run import hydra_output_dir, run  # torch imports after Hydra parsed the CLI

    try:
        metrics = run(cfg)
    except UserError as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print("error: " + textwrap.fill(str(exc), width=100, subsequent_indent="  "), file=sys.stderr)
        sys.exit(2)
    print(summary(metrics, hydra_output_dir()))
    return metrics[cfg.monitor]


if __name__ == "__main__":
    main()
