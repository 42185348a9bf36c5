"""The regularization and normalization experiments: every arm composes and trains; the protocol
script picks each arm's learning rate by validation accuracy, never by test accuracy."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import cli_in_process, script
from trainer.config.validate import config_dir
from trainer.run import run

select_figure = script("select_figure")

ARMS = sorted(p.stem for p in (Path(config_dir()) / "experiment" / "regularizer").glob("*.yaml"))


@pytest.mark.parametrize("arm", ARMS)
def test_every_regularizer_arm_trains(cfg_factory, tmp_path, arm):
    cfg = cfg_factory("+experiment=digits_regularization", f"+experiment/regularizer={arm}", "epochs=1")
    arm_file = OmegaConf.load(Path(config_dir()) / "experiment" / "regularizer" / f"{arm}.yaml")
    for key, value in OmegaConf.to_container(arm_file).items():  # the arm's keys reach the run
        assert OmegaConf.to_container(cfg[key]).items() >= value.items()
    metrics = run(cfg, out_dir=tmp_path)
    assert metrics["status"] == "completed" and ("train/penalty" in metrics) == (arm in ("l1", "l2"))


@pytest.mark.slow
def test_select_figure_chooses_by_validation(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    proc = cli_in_process("-m", "data=circles", "data.n_samples=200", "model.width=8", "epochs=2",
                          "model.norm=none,layer", "optimizer.lr=0.001,0.1", "seed=0,1",
                          f"hydra.sweep.dir={sweep}", "progress=false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    by_hand: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for job in sweep.iterdir():
        if (job / "metrics.json").is_file():
            cfg = OmegaConf.load(job / ".hydra" / "config.yaml")
            metrics = json.loads((job / "metrics.json").read_text())
            by_hand[cfg.model.norm][str(cfg.optimizer.lr)].append(metrics)
    out = tmp_path / "fig.png"
    select_figure.main([str(sweep), "arm=model.norm", f"out={out}"])  # in-process: the script's main
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
            for line in capsys.readouterr().out.splitlines()
            if line.startswith("| none") or line.startswith("| layer")}
    for norm, by_lr in by_hand.items():
        val = {lr: statistics.fmean(m["val/acc"] for m in runs) for lr, runs in by_lr.items()}
        chosen = rows[norm][1].removeprefix("optimizer.lr=")
        assert val[chosen] == max(val.values()) and rows[norm][2] == "2"  # by validation only
        test = [m["test/acc"] for m in by_lr[chosen]]
        assert rows[norm][5] == f"{statistics.fmean(test):.3f} ± {statistics.stdev(test):.3f}"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
