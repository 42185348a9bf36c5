"""Threads on a shared CPU: OpenMP's passive wait policy is set before torch loads (in a fresh
interpreter, in every job of the joblib and vectorized launchers), a user's own policy is kept, and
every arm of an experiment that compares wall time trains on the same number of threads;
scripts/bench_threads.py's table."""

from __future__ import annotations

import functools
import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from models import count_parameters
from tests.conftest import ROOT, cli_in_process, job_dirs, make_job_cfg, read_metrics
from trainer.config.build import batch_size_for, build_data, build_model
from trainer.config.validate import config_dir
from trainer.data import prepare_data
from trainer.run import run
from trainer.runtime import device as device_module
from trainer.runtime.device import set_threads

CPU = torch.device("cpu")

# What libgomp reports at load (OMP_DISPLAY_ENV=VERBOSE) as its spin count: the observable effect
# of the policy it read (its display shows 'PASSIVE' for an unset policy too).
SPIN = {"passive": "0", "default": "300000", "active": "30000000000"}


def fresh_interpreter(code: str, policy: str | None) -> tuple[str, str]:
    """`code` run in a new Python with OMP_WAIT_POLICY `policy` (None: unset); its stdout and
    libgomp's spin count."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env.update(PYTHONPATH=str(ROOT), OMP_DISPLAY_ENV="VERBOSE")  # libgomp's settings on stderr at load
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip(), re.search(r"GOMP_SPINCOUNT = '(\d+)'", proc.stderr).group(1)


@pytest.mark.slow
@pytest.mark.parametrize(("policy", "torch_first", "environ", "in_effect"), [
    (None, False, "PASSIVE", "passive"),  # trainer's default
    ("active", False, "active", "active"),  # a user's own value, kept
    (None, True, "PASSIVE", "default"),  # torch loaded first: its OpenMP kept what it read then
])
def test_import_trainer_sets_the_wait_policy_before_torch(policy, torch_first, environ, in_effect):
    code = ("import os\n" + ("import torch\n" if torch_first else "") + "import trainer, torch\n"
            "from trainer.runtime.device import wait_policy\n"
            "print(os.environ['OMP_WAIT_POLICY'], wait_policy())")
    out, spin = fresh_interpreter(code, policy)
    assert out == f"{environ} {in_effect}"  # children (joblib's workers) inherit `environ`
    assert spin == SPIN[in_effect]


def test_wait_policy_reads_the_value_torch_loaded_with(monkeypatch):
    for value, expected in (("PASSIVE", "passive"), (" Active ", "active"), (None, "default"),
                            ("sometimes", "default")):  # libgomp ignores a value it does not know
        monkeypatch.setattr("trainer.runtime.startup.WAIT_POLICY_AT_LOAD", value)
        assert device_module.wait_policy() == expected


@pytest.mark.parametrize(("torch_first", "policy", "logged"), [
    (True, None, True), (True, "PASSIVE", False), (False, None, False)])
def test_a_spinning_policy_is_logged_where_torch_came_first(monkeypatch, caplog, torch_first, policy, logged):
    monkeypatch.setattr("trainer.runtime.startup.TORCH_FIRST", torch_first)
    monkeypatch.setattr("trainer.runtime.startup.WAIT_POLICY_AT_LOAD", policy)
    before = torch.get_num_threads()
    try:
        with caplog.at_level("DEBUG", logger="trainer.runtime.device"):
            assert device_module.set_threads(2, 1000, 1, CPU) == 2
            device_module.set_threads(1, 1000, 1, CPU)  # one thread waits for no other: nothing to say
    finally:
        torch.set_num_threads(before)
    assert [r.getMessage().startswith("torch was imported before trainer") for r in caplog.records] == (
        [True] if logged else [])


@pytest.mark.slow
def test_every_job_records_the_passive_wait_policy(tmp_path, monkeypatch):
    """The policy reaches each job's process, with none set by the user: metrics.json's
    `omp_wait_policy`, written there. (A user's own value: the fresh-interpreter test above.) The
    joblib sweep runs in this process, its jobs in fresh loky worker processes, which inherit the
    sweep's environment. The vectorized launcher's jobs run in the sweep's own process: checked in
    the fresh process of tests/cli/test_packaging.py's vectorized sweep."""
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)  # this test process's trainer import set it
    sweep = tmp_path / "sweep"
    proc = cli_in_process("-m", "hydra/launcher=parallel", "data=gaussians", "epochs=1", "seed=0,1",
                          f"hydra.sweep.dir={sweep}", "progress=false", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = job_dirs(sweep)
    assert sorted(jobs) == [0, 1]
    assert [read_metrics(jobs[n])["omp_wait_policy"] for n in (0, 1)] == ["passive", "passive"]


# Experiments that compare wall time between their arms: a report or figure against `x=time`.
EXPERIMENTS = Path(config_dir()) / "experiment"
TIMED = sorted(p.stem for p in EXPERIMENTS.glob("*.yaml") if "x=time" in p.read_text())


@functools.cache
def data_shape(data_yaml: str) -> tuple[int, int, int, int]:
    """(in_dim, out_dim, train rows, val rows) of a data config."""
    splits, _ = prepare_data(build_data(OmegaConf.create(data_yaml)), CPU)
    return splits.in_dim, splits.out_dim, len(splits.x_train), len(splits.x_val)


def arm_threads(overrides: list[str]) -> tuple[int, int]:
    """(training, validation) threads of a job, as trainer.run sets them on the CPU."""
    cfg = make_job_cfg(*overrides)
    in_dim, out_dim, n_train, n_val = data_shape(OmegaConf.to_yaml(cfg.data))
    params = count_parameters(build_model(cfg.model, in_dim, out_dim))
    train = device_module.threads_for(cfg.threads, params, batch_size_for(cfg.batch_size, n_train), CPU)
    with device_module.num_threads(train):
        return train, device_module.eval_threads(cfg.threads, params, n_val, CPU) or train


def test_experiments_that_time_their_arms_are_found():
    assert "digits_batch_regimes" in TIMED


@pytest.mark.parametrize("name", TIMED)
def test_every_arm_of_a_timed_experiment_has_the_same_threads(monkeypatch, name):
    """Under threads=auto a large step gets torch's default count (2 on a 2-core machine; 1 in
    these tests, OMP_NUM_THREADS=1) and a small one 1, which skews a per-second comparison."""
    monkeypatch.setattr(device_module, "DEFAULT_THREADS", 2)
    params = OmegaConf.load(EXPERIMENTS / f"{name}.yaml").hydra.sweeper.params
    axes = [[f"{key}={v}" for v in str(values).split(",")] for key, values in params.items() if key != "seed"]
    counts = {arm: arm_threads([f"+experiment={name}", *arm]) for arm in itertools.product(*axes)}
    assert len(set(counts.values())) == 1, counts


def test_bench_threads_table_gives_medians_and_ratios_to_one_thread():
    from tests.conftest import script

    bench = script("bench_threads")
    times = {}
    for load, slow in (("idle", 1.0), ("busy", 2.0)):
        for n, policy in bench.variants(2):
            factor = slow * (1 if n == 1 else {"default": 10, "PASSIVE": 0.5, "ACTIVE": 4}[policy])
            times[(load, n, policy)] = {"bmm": [factor * t for t in (0.1, 0.3, 0.2)],
                                        "step": [factor * t for t in (1e-3, 3e-3, 2e-3)], "spin": "0"}
    rows = [r.strip("|").split("|") for r in bench.table(times, {"idle": [1.0, 2.0], "busy": [3.0]}, 2, 300)
            .splitlines()[2:]]
    assert [[c.strip() for c in r[:3]] for r in rows[:2]] == [["no busy loop (load 1.0-2.0)", "1", "any"],
                                                          ["no busy loop (load 1.0-2.0)", "2", "unset"]]
    assert [(r[4].strip(), r[5].strip(), r[6].strip(), r[7].strip()) for r in rows] == [
        ("0.20", "1.00", "2,000", "1.00"), ("2.00", "10.00", "20,000", "10.00"),
        ("0.10", "0.50", "1,000", "0.50"), ("0.80", "4.00", "8,000", "4.00"),
        ("0.40", "1.00", "4,000", "1.00"), ("4.00", "10.00", "40,000", "10.00"),
        ("0.20", "0.50", "2,000", "0.50"), ("1.60", "4.00", "16,000", "4.00")]
    assert rows[4][0].strip() == "one kept busy (load 3.0-3.0)"


def test_threads_auto_takes_one_for_a_small_step_and_the_default_for_a_large_one(monkeypatch):
    monkeypatch.setattr(device_module, "DEFAULT_THREADS", 2)
    before = torch.get_num_threads()
    try:
        cpu = torch.device("cpu")
        assert set_threads("auto", 203_530, 1, cpu) == 1       # 784-256-10 at batch 1
        assert set_threads("auto", 203_530, 64, cpu) == 2      # ... at batch 64: back to the default
        assert set_threads("auto", 15_000, 64, cpu) == 1
        assert set_threads(2, 15_000, 64, cpu) == 2
    finally:
        torch.set_num_threads(before)


def test_threads_auto_validates_on_all_threads_after_training_a_small_step_on_one(
        cfg_factory, tmp_path, monkeypatch):
    """A 64-256-10 net at batch 32 trains on one thread; its 8,192-row-sized validation passes (here
    all of digits' validation rows) take torch's default count, which is back for the next epoch."""
    from trainer.training import epoch as epoch_module
    from trainer.training import state as state_module

    monkeypatch.setattr(device_module, "DEFAULT_THREADS", 2)
    cpu = torch.device("cpu")
    assert device_module.eval_threads(1, 203_530, 10_000, cpu) is None  # threads=N: N everywhere
    seen: dict[str, set[int]] = {"train": set(), "val": set()}
    validate, train = epoch_module.validation_metrics, state_module.train_epoch

    def counted(kind, func):
        def call(*args, **kwargs):
            seen[kind].add(torch.get_num_threads())
            return func(*args, **kwargs)
        return call

    monkeypatch.setattr(epoch_module, "validation_metrics", counted("val", validate))
    monkeypatch.setattr(state_module, "train_epoch", counted("train", train))
    before = torch.get_num_threads()
    try:
        assert set_threads("auto", 203_530, 1, cpu) == 1  # 784-256-10 trains at batch 1 on one thread
        assert device_module.eval_threads("auto", 203_530, 10_000, cpu) == 2  # and validates on two
        assert device_module.eval_threads("auto", 203_530, 10, cpu) is None  # 10 rows: one too
        metrics = run(cfg_factory("model.width=256", "batch_size=32", "epochs=2", "device=cpu"),
                      out_dir=tmp_path)
    finally:
        torch.set_num_threads(before)
    assert metrics["status"] == "completed"
    assert seen == {"train": {1}, "val": {2}}
