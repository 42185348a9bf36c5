"""Every config in every group composes and trains a few steps: new files are tested automatically."""

from pathlib import Path

import pytest

from trainer.config import config_dir
from trainer.run import run

CONFIGS = Path(config_dir())


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


@pytest.mark.parametrize("name", options("optimizer"))
def test_optimizer_trains(cfg_factory, tmp_path, name):
    metrics = run(cfg_factory(f"optimizer={name}", "epochs=2"), out_dir=tmp_path)
    assert metrics["status"] == "completed" and metrics["val/acc"] > 0.2


@pytest.mark.parametrize("name", options("scheduler"))
def test_scheduler_trains(cfg_factory, tmp_path, name):
    metrics = run(cfg_factory(f"scheduler={name}", "epochs=2"), out_dir=tmp_path)
    assert metrics["status"] == "completed" and metrics["val/acc"] > 0.2


@pytest.mark.parametrize("name", options("experiment"))
def test_experiment_trains(cfg_factory, tmp_path, name):
    metrics = run(cfg_factory(f"+experiment={name}", "epochs=1"), out_dir=tmp_path)
    assert metrics["status"] == "completed"
