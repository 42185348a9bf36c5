"""Sweeps: the same HParams keys in every job, values a sweeper can use, the report, evaluation."""

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from tests.conftest import cli_in_process, make_cfg, outside, read_metrics, subprocess_env
from trainer import eval as trainer_eval
from trainer.config.validate import config_dir
from trainer.logs.hparams import run_hparams
from trainer.logs.writer import RunLogger
from trainer.report import sweep as report
from trainer.run import run
from trainer.runtime.errors import ConfigError
from trainer.sweeps.jobs import job_number, number_width, sweep_size
from trainer.sweeps.objective import check_direction, objective

OPTIMIZERS = sorted(p.stem for p in (Path(config_dir()) / "optimizer").glob("*.yaml"))
SCHEDULERS = sorted(p.stem for p in (Path(config_dir()) / "scheduler").glob("*.yaml"))


def hparams_of(*overrides: str) -> dict:
    return run_hparams(OmegaConf.to_container(make_cfg(*overrides), resolve=True))


@pytest.mark.slow  # over a second on 2 cores
def test_every_optimizer_and_scheduler_writes_the_same_hparam_keys_and_types():
    # Every optimizer and every scheduler in some job (13 jobs, not all 104 pairs: the two groups
    # set keys of their own, so a key or a type that differs does so in any pair).
    n = max(len(OPTIMIZERS), len(SCHEDULERS))
    jobs = [hparams_of(f"optimizer={OPTIMIZERS[i % len(OPTIMIZERS)]}",
                       f"scheduler={SCHEDULERS[i % len(SCHEDULERS)]}") for i in range(n)]
    keys = set(jobs[0])
    assert all(set(h) == keys for h in jobs)
    for key in keys:  # one kind per column (HParams stores numbers, bools, strings), as TensorBoard
        kinds = {"number" if type(h[key]) in (int, float) else type(h[key]).__name__ for h in jobs}
        assert len(kinds) == 1, key
    sgd, adam = hparams_of("optimizer=sgd"), hparams_of("optimizer=adam", "scheduler=step")
    assert (sgd["optimizer"], sgd["optimizer.momentum"], sgd["optimizer.betas"]) == ("SGD", 0.0, "")
    assert adam["optimizer"] == "Adam" and math.isnan(adam["optimizer.momentum"])
    assert adam["optimizer.betas"] == "[0.9, 0.999]"
    assert (sgd["scheduler"], adam["scheduler"], adam["scheduler.step_size"]) == ("none", "StepLR", 10)
    assert "optimizer._partial_" not in keys and "progress" not in keys


def test_a_sweeper_never_gets_nan():
    # Optuna cannot store a NaN value: it would fail the trial instead of ranking it last
    assert objective({"val/loss": float("nan")}, "val/loss") == math.inf
    assert objective({"val/acc": float("nan")}, "val/acc") == -math.inf
    assert objective({"val/loss": 0.25}, "val/loss") == 0.25


def test_sweeper_direction_must_fit_the_monitor():
    check_direction("minimize", "val/loss")
    check_direction(None, "val/acc")
    with pytest.raises(ConfigError, match="hydra.sweeper.direction=maximize"):
        check_direction("minimize", "val/acc")


def test_search_and_launcher_configs_compose():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        search = compose("config", ["+hparams_search=digits_optuna", "monitor=val/acc"],
                         return_hydra_config=True)
        slurm = compose("config", ["hydra/launcher=slurm"], return_hydra_config=True)
        parallel = compose("config", ["hydra/launcher=parallel"], return_hydra_config=True)
    sweeper = search.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    for key in sweeper.params:  # every searched key exists in the config
        assert OmegaConf.select(search, key) is not None, key
    assert {"sgd", "momentum", "adam"} <= set(OPTIMIZERS)
    assert slurm.hydra.launcher._target_.endswith("SlurmLauncher") and slurm.hydra.launcher.gpus_per_node == 1
    assert parallel.hydra.launcher._target_.endswith("JoblibLauncher") and parallel.hydra.launcher.n_jobs == 2


def test_a_sweep_counts_its_jobs_for_the_width_of_their_numbers():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        grid = compose("config", ["+experiment=digits_activations_init"], return_hydra_config=True)
        search = compose("config", ["+hparams_search=digits_optuna", "hydra.sweeper.n_trials=12"],
                         return_hydra_config=True)
    part = grid.copy()  # the command line's seed=0 replaces the experiment's 5 seeds, as in Hydra's sweeper
    part.hydra.overrides.task = ["+experiment=digits_activations_init", "seed=0", "model.depth=2,8,16"]
    assert (sweep_size(grid), sweep_size(part), sweep_size(search)) == (180, 54, 12)
    assert [number_width(n) for n in (None, 1, 10, 11, 100, 101, 180)] == [1, 1, 1, 2, 2, 3, 3]


def fake_job(sweep: Path, num: int, overrides: list[str]) -> Path:
    """A job folder as Hydra lays it out: .hydra/ with the job's overrides and composed config."""
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(overrides), job / ".hydra" / "overrides.yaml")
    OmegaConf.save(make_cfg(*overrides), job / ".hydra" / "config.yaml")
    return job


def test_report_of_a_sweep_with_finished_running_and_failed_jobs(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    for num, lr in enumerate(("0.1", "0.001")):
        overrides = ["optimizer=sgd", f"optimizer.lr={lr}", "epochs=2", "model.width=16"]
        run(make_cfg(*overrides), fake_job(sweep, num, overrides))
    failed = fake_job(sweep, 2, ["optimizer=sgd", "optimizer.lr=-1", "epochs=2"])
    (failed / "trainer.log").write_text("[2026-01-01 00:00:00,000][trainer][ERROR] - error: optimizer.lr\n")
    running = fake_job(sweep, 3, ["optimizer=sgd", "optimizer.lr=0.01", "epochs=2"])
    logger = RunLogger(running)  # this process writes it: alive, so the job is running
    logger.scalars({"val/loss": 1.5, "val/acc": 0.6}, 1)
    logger.flush()

    paths = report.report(sweep)
    out = capsys.readouterr().out
    jobs = {j.name: j for j in report.read_sweep(sweep)}
    assert [jobs[n].status for n in "0123"] == ["completed", "completed", "failed", "running"]
    assert jobs["3"].values == {"val/loss": 1.5, "val/acc": pytest.approx(0.6)} and jobs["3"].epochs == 1
    finished = {n: read_metrics(sweep / n) for n in "01"}
    best = min([("3", 1.5)] + [(n, m["val/loss"]) for n, m in finished.items()], key=lambda nv: nv[1])[0]
    table = [line for line in out.splitlines() if line[6:7].isdigit()]
    assert len(table) == 4 and [line.split()[:2] for line in table if line.startswith("*")] == [["*", best]]
    assert "same in every job: optimizer=sgd" in out
    with open(paths["csv"]) as f:
        rows = list(csv.DictReader(f))
    assert [r["job"] for r in rows] == ["0", "1", "2", "3"] and rows[0]["optimizer.lr"] == "0.1"
    assert float(rows[0]["test/acc"]) == pytest.approx(finished["0"]["test/acc"])
    for key in ("curves", "params"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_of_a_folder_that_is_not_a_sweep_is_one_paragraph(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        report.main([str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "is not a sweep" in err and "multirun/DATE/TIME" in err and "Traceback" not in err


def test_eval_reproduces_the_test_metric_of_training(tmp_path, capsys):
    metrics = run(make_cfg("epochs=3", "model.width=32", "optimizer.lr=0.01"), tmp_path)
    ckpt = tmp_path / "checkpoints" / "best.pt"
    again = trainer_eval.evaluate_checkpoint(trainer_eval.load(ckpt))
    assert again["test/acc"] == metrics["test/acc"]
    assert again["test/loss"] == pytest.approx(metrics["test/loss"], rel=1e-6)
    assert again["samples"] == 270
    trainer_eval.main([f"ckpt={ckpt}", "split=val", f"json={tmp_path / 'eval.json'}"])
    assert f"val/acc {metrics['val/acc']:.4f}" in capsys.readouterr().out  # best.pt: the best epoch
    written = json.loads((tmp_path / "eval.json").read_text())
    assert written["val/loss"] == pytest.approx(metrics["val/loss"], rel=1e-6)


@pytest.mark.parametrize("content", [None, b"not a checkpoint", "dict"])
def test_eval_of_a_missing_or_damaged_checkpoint_is_one_paragraph(tmp_path, capsys, content):
    path = tmp_path / "best.pt"
    if content == "dict":
        torch.save({"weights": 1}, path)
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(SystemExit) as exc:
        trainer_eval.main([f"ckpt={path}"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert str(path) in err and "Traceback" not in err
    assert ("does not exist", "cannot be read", "not a trainer checkpoint")[
        [None, b"not a checkpoint", "dict"].index(content)] in " ".join(err.split())  # wherever lines break


@pytest.mark.slow
def test_imports_do_not_initialize_cuda():
    """Launchers fork or spawn workers: importing the trainer must leave CUDA alone. Every way to
    initialize CUDA goes through torch.cuda._lazy_init, recorded here, so the test can fail on a
    machine without CUDA too."""
    code = ("import torch, torch.cuda; calls = []; torch.cuda._lazy_init = lambda: calls.append(1); "
            "import trainer.run, trainer.report.sweep, trainer.eval, trainer.sweeps.objective, trainer.api; "
            "assert not calls and not torch.cuda.is_initialized()")
    proc = subprocess.run([sys.executable, "-c", code], cwd=outside(), capture_output=True, text=True,
                          env=subprocess_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
def test_optuna_search_of_three_trials_survives_a_diverged_one(tmp_path):
    sweep = tmp_path / "search"
    # With the search's sampler seed, trial 0 draws lr=1e12 and diverges; trials 1 and 2 train.
    proc = cli_in_process("-m", "+hparams_search=digits_optuna", "hydra.sweeper.n_trials=3", "epochs=1",
                          "optimizer=sgd", "optimizer.lr=choice(0.05,1e12)", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr
    dirs = sorted((p for p in sweep.iterdir() if p.is_dir() and job_number(p.name) is not None),
                  key=lambda p: job_number(p.name))
    assert [job_number(p.name) for p in dirs] == [0, 1, 2]  # named `N_batch_size=...,optimizer.lr=...`
    jobs = [read_metrics(d) for d in dirs]
    assert sorted(j["status"] for j in jobs) == ["completed", "completed", "diverged"]
    values = [j["val/loss"] if j["status"] == "completed" else math.inf for j in jobs]
    results = OmegaConf.load(sweep / "optimization_results.yaml")
    assert results.best_value == pytest.approx(min(values))
    best = OmegaConf.load(dirs[values.index(min(values))] / ".hydra" / "overrides.yaml")
    assert f"model.width={results.best_params['model.width']}" in best
    assert set(results.best_params) == {"optimizer.lr", "batch_size", "model.width"}
    jobs_seen = report.read_sweep(sweep)
    assert [j.status for j in jobs_seen] == [j["status"] for j in jobs]
    assert report.best_job(jobs_seen, "val/loss").name == str(values.index(min(values)))
