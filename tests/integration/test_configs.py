"""Every config in every group composes and trains a few steps: new files are tested automatically."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import make_job_cfg
from trainer.config.validate import FULL_BATCH_ADVISED, FULL_BATCH_ONLY, config_dir
from trainer.run import run

CONFIGS = Path(config_dir())


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


@pytest.mark.parametrize("name", options("optimizer"))
def test_optimizer_trains(cfg_factory, tmp_path, name):
    target = OmegaConf.load(CONFIGS / "optimizer" / f"{name}.yaml")["_target_"]
    # Full-batch methods make one update per epoch: give them a few more epochs.
    full_batch = target in FULL_BATCH_ONLY + FULL_BATCH_ADVISED
    regime = ["batch_size=full", "epochs=5"] if full_batch else ["epochs=2"]
    metrics = run(cfg_factory(f"optimizer={name}", *regime), out_dir=tmp_path)
    assert metrics["status"] == "completed" and metrics["val/acc"] > 0.2


@pytest.mark.parametrize("name", options("scheduler"))
def test_scheduler_trains(cfg_factory, tmp_path, name):
    metrics = run(cfg_factory(f"scheduler={name}", "epochs=2"), out_dir=tmp_path)
    assert metrics["status"] == "completed" and metrics["val/acc"] > 0.2


@pytest.mark.parametrize("name", options("experiment"))
def test_experiment_trains(tmp_path, name):
    """Each experiment composes and trains one epoch of one job (the first of its own sweep)."""
    sweep = OmegaConf.load(CONFIGS / "experiment" / f"{name}.yaml")["hydra"]["sweeper"]["params"]
    first = [f"{key}={str(values).split(',')[0]}" for key, values in sweep.items()]
    assert "seed" in sweep and str(sweep["seed"]) == "0,1,2,3,4"  # the notes' protocol: 5 seeds
    metrics = run(make_job_cfg(f"+experiment={name}", *first, "epochs=1"), out_dir=tmp_path)
    assert metrics["status"] == "completed" and metrics["epochs"] == 1
