"""`hydra/launcher=vectorized` from the command line: grouping, ordinary job folders, SIGTERM and resume."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from tests.conftest import cli_in_process, job_dirs, make_cfg, make_job_cfg, read_metrics, subprocess_env
from trainer.config.build import build_data
from trainer.data import prepare_data
from trainer.logs.events import read_hparams, read_scalars
from trainer.storage.checkpoint import load_checkpoint
from trainer.vectorized.grouping import plan


def resolved(*overrides: str) -> dict:
    """A job's resolved config, as the launcher gets it (an experiment's per-arm rates resolve)."""
    return OmegaConf.to_container(make_job_cfg(*overrides), resolve=True)


@pytest.mark.slow  # over a second on 2 cores
def test_jobs_group_by_what_they_share_and_lbfgs_runs_alone():
    grid = [(o, w, s) for o in ("sgd", "adam") for w in (32, 64) for s in (0, 1)]
    tasks = [resolved(f"optimizer={o}", f"model.width={w}", f"seed={s}", "optimizer.lr=0.01")
             for o, w, s in grid]
    tasks.append(resolved("optimizer=lbfgs", "batch_size=full"))
    steps = plan(tasks)
    groups = [members for kind, members in steps if kind == "group"]
    assert sorted(map(len, groups)) == [2, 2, 2, 2]
    for members in groups:  # the two seeds of one optimizer and width
        assert len({grid[i][:2] for i in members}) == 1 and {grid[i][2] for i in members} == {0, 1}
    (reason, alone), = [step for step in steps if step[0] != "group"]
    assert alone == [8] and "LBFGS" in reason
    # what a member may have of its own keeps it in the group; anything else splits it
    same = [resolved("optimizer.lr=0.1", "seed=3", "model.init=kaiming", "scheduler=step",
                     "scheduler.gamma=0.5", "early_stopping.patience=2", "epochs=7", "grad_clip=1"),
            resolved("optimizer.lr=0.2", "optimizer.weight_decay=0.01", "scheduler=step", "warmup_steps=5")]
    assert [k for k, _ in plan(same)] == ["group"]
    apart = [resolved(), resolved("batch_size=32"), resolved("model.norm=layer"), resolved("model.depth=3"),
             resolved("scheduler=exponential"), resolved("optimizer.betas=[0.8,0.999]")]
    assert [len(m) for _, m in plan(apart)] == [1] * 6
    # plain MLPs of one depth: any activations; widths within hydra.launcher.width_ratio (default 1)
    archs = [resolved(f"model.activation={a}", f"model.width={w}") for a in ("relu", "sigmoid") for w in
             ("16", "64", "[64,16]", "256")] + [resolved("model.width=[128,128]", "model.depth=null")]
    assert plan(archs) == [("group", [0, 4]), ("group", [1, 5]), ("group", [2, 6]), ("group", [3, 7]),
                           ("group", [8])]
    assert plan(archs, 4) == [("group", [0, 1, 2, 4, 5, 6]), ("group", [3, 7, 8])]
    assert plan(archs, 16) == [("group", list(range(9)))]
    norms = [resolved("model.norm=layer", f"model.activation={a}") for a in ("relu", "tanh")]
    assert [len(m) for _, m in plan(norms, 16)] == [1, 1]  # not a plain MLP: its architecture is the key
    assert plan([resolved("optimizer=rprop")])[0][0].startswith("Rprop")
    # an experiment's rate table: arms.rate picks optimizer.lr, a member's own; the optimizer splits
    arms = [resolved("+experiment=digits_optimizers", f"optimizer={o}", f"arms.rate={r}", f"seed={s}")
            for o in ("sgd", "adam") for r in ("low", "mid", "high") for s in (0, 1)]
    assert [len(m) for _, m in plan(arms)] == [6, 6]
    assert len({arms[i]["optimizer"]["lr"] for i in plan(arms)[0][1]}) == 3


@pytest.mark.slow
def test_vectorized_sweep_writes_ordinary_job_folders(tmp_path):
    sweep = tmp_path / "sweep"
    done = cli_in_process("-m", "hydra/launcher=vectorized", "optimizer=sgd,lbfgs", "batch_size=full",
                          "seed=0,1", "epochs=3", "progress=false", f"hydra.sweep.dir={sweep}")
    assert done.returncode == 0, done.stderr
    assert "1 stacked groups (2 members), 2 on their own" in done.stderr + done.stdout
    jobs = job_dirs(sweep)
    assert sorted(jobs) == [0, 1, 2, 3]
    vectorized, ordinary = jobs[0], jobs[1]  # optimizer=sgd seed=0, optimizer=lbfgs seed=0
    for job in jobs.values():
        assert (job / ".hydra" / "config.yaml").is_file() and (job / "process.json").is_file()
        assert (job / "checkpoints" / "last.pt").is_file() and (job / "checkpoints" / "best.pt").is_file()
        assert read_metrics(job)["status"] == "completed"
    assert read_metrics(vectorized).keys() == read_metrics(ordinary).keys()
    scalars = read_scalars(vectorized)
    assert [s for s, _ in scalars["val/loss"]] == [1, 2, 3]
    assert read_hparams(vectorized)["optimizer"] == "sgd" and read_hparams(vectorized)["seed"] == 0
    assert "not vectorized" in done.stderr + done.stdout
    assert "group 1/1 epoch 3: val/acc best" in done.stderr + done.stdout  # the group's epoch line
    # the other tools read the folders as they read any job's
    report = cli_in_process(str(sweep), module="trainer.report")
    assert report.returncode == 0, report.stderr
    assert "4 jobs (4 completed)" in report.stdout
    out = tmp_path / "eval.json"
    evaluated = cli_in_process(f"ckpt={vectorized / 'checkpoints' / 'best.pt'}", f"json={out}",
                               module="trainer.eval")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(out.read_text())["test/acc"] == pytest.approx(read_metrics(vectorized)["test/acc"])


@pytest.mark.slow
def test_sigterm_checkpoints_every_member_and_resume_finishes_them(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "hydra/launcher=vectorized", "optimizer.lr=0.001,0.01", "seed=0,1", "epochs=3",
            "batch_size=4", "progress=false", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen([sys.executable, "-m", "trainer", *args], cwd=tmp_path, env=subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    for line in proc.stdout:  # until the group's first epoch ends: the signal lands in epoch 2
        seen.append(line)
        if "group 1/1 epoch 1:" in line:
            break
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=120)
    stderr = "".join(seen) + rest
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "resume=true" in stderr and "Traceback" not in stderr
    jobs = job_dirs(sweep)
    assert len(jobs) == 4
    for job in jobs.values():
        metrics = read_metrics(job)
        assert metrics["status"] == "interrupted" and metrics["signal"] == "SIGTERM"
        assert load_checkpoint(job / "checkpoints" / "last.pt")["fit"]["step"] == metrics["steps"]
        assert sorted(p.name for p in (job / "checkpoints").iterdir()) == ["best.pt", "last.pt"]

    again = cli_in_process(*args, "resume=true")
    assert again.returncode == 0, again.stderr
    per_epoch = -(-len(prepare_data(build_data(make_cfg().data))[0].x_train) // 4)  # updates of batch 4
    finished = {}
    for job in job_dirs(sweep).values():
        metrics = finished[job] = read_metrics(job)
        assert metrics["status"] == "completed" and metrics["steps"] == 3 * per_epoch
        assert [s for s, _ in read_scalars(job)["val/loss"]] == [1, 2, 3]  # each epoch once
    once_more = cli_in_process(*args, "resume=true")  # finished jobs are handed back as recorded, untouched
    assert once_more.returncode == 0, once_more.stderr
    assert all(read_metrics(job) == metrics for job, metrics in finished.items())


@pytest.mark.slow
def test_members_of_different_architectures_resume_exactly(tmp_path):
    """One group of mixed widths (padded, sigmoid's masked) and activations, killed by SIGTERM in
    epoch 2 and resumed, ends as the same sweep uninterrupted; each member's files have its own shapes."""
    args = ["-m", "hydra/launcher=vectorized", "hydra.launcher.width_ratio=4", "model.width=8,[32,16]",
            "model.activation=relu,sigmoid", "seed=0", "epochs=3", "batch_size=4", "progress=false"]
    whole = cli_in_process(*args, f"hydra.sweep.dir={tmp_path / 'whole'}")
    assert whole.returncode == 0, whole.stderr
    assert "1 stacked groups (4 members)" in whole.stderr + whole.stdout
    assert "padded to the widest member: hidden widths [32, 16] [8, 8], activations relu sigmoid" in (
        whole.stderr + whole.stdout)
    sweep = tmp_path / "sweep"
    proc = subprocess.Popen([sys.executable, "-m", "trainer", *args, f"hydra.sweep.dir={sweep}"],
                            cwd=tmp_path, env=subprocess_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:  # the signal lands in epoch 2
        if "group 1/1 epoch 1:" in line:
            break
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM
    again = cli_in_process(*args, f"hydra.sweep.dir={sweep}", "resume=true")
    assert again.returncode == 0, again.stderr
    for n, job in job_dirs(sweep).items():
        metrics, alone = read_metrics(job), read_metrics(job_dirs(tmp_path / "whole")[n])
        assert metrics["status"] == "completed" and metrics["steps"] == alone["steps"]
        for key in ("val/loss", "val/acc", "test/loss", "train/loss"):
            assert metrics[key] == pytest.approx(alone[key], rel=1e-5), (n, key)
        config = OmegaConf.load(job / ".hydra" / "config.yaml").model
        widths = [config.width] * 2 if isinstance(config.width, int) else list(config.width)
        for name in ("best.pt", "last.pt"):
            ckpt = load_checkpoint(job / "checkpoints" / name)
            assert ckpt["model"]["net.0.weight"].shape == (widths[0], ckpt["model"]["net.0.weight"].shape[1])
            assert ckpt["model"]["net.2.weight"].shape == tuple(reversed(widths))
            moments = ckpt["optimizer"]["state"][2]["exp_avg"]  # Adam's, of net.2.weight
            assert moments.shape == tuple(reversed(widths))


@pytest.mark.slow
def test_an_optuna_search_through_the_vectorized_launcher_prunes_and_completes(tmp_path):
    import optuna
    from optuna.trial import TrialState

    sweep = tmp_path / "search"
    done = cli_in_process(
        "-m", "hydra/launcher=vectorized", "hydra/sweeper=optuna", f"hydra.sweep.dir={sweep}", "data=spirals",
        "monitor=val/loss", "optimizer=sgd", "model.width=16", "batch_size=128", "hydra/sweeper/sampler=grid",
        "hydra.sweeper.sampler.seed=0", "hydra.sweeper.study_name=lrs", "hydra.sweeper.pruner=median",
        "+hydra.sweeper.pruner_args.n_startup_trials=2", "epochs=4", "progress=false",
        "optimizer.lr=choice(0.1, 0.05, 0.03, 0.00001, 0.00002, 0.00003)")
    assert done.returncode == 0, done.stderr
    study = optuna.load_study(study_name="lrs", storage=f"sqlite:///{sweep / 'optuna.db'}")
    states = {t.number: t.state for t in study.get_trials()}
    assert len(states) == 6 and TrialState.PRUNED in states.values()
    for number, job in job_dirs(sweep).items():
        metrics = read_metrics(job)
        assert metrics["status"] == ("pruned" if states[number] == TrialState.PRUNED else "completed")


def test_members_of_one_group_do_not_supersede_each_other(tmp_path):
    from trainer.sweeps.jobs import record_process
    from trainer.sweeps.status import superseded

    first, second, later = (tmp_path / n for n in ("0", "1", "2"))
    record_process(first, 1000.0)
    record_process(second, 1000.0)  # the same group: trained at the same time, in one process
    assert not superseded(first, [second])
    record_process(later)  # a later group of the same process: the first group is over
    assert superseded(first, [second, later])


@pytest.mark.slow
def test_regularized_jobs_run_alone_with_the_basic_launchers_numbers(tmp_path):
    """The stacked step takes no regularization penalty: such jobs run alone, and each ends with
    exactly the metrics of the same job through the basic launcher."""
    common = ["regularization.l2=0.01", "seed=0,1", "epochs=2", "progress=false"]
    vec = cli_in_process("-m", "hydra/launcher=vectorized", *common, f"hydra.sweep.dir={tmp_path / 'vec'}")
    assert vec.returncode == 0, vec.stderr
    assert "regularization.l2=0.01 is not vectorized" in vec.stderr + vec.stdout
    basic = cli_in_process("-m", *common, f"hydra.sweep.dir={tmp_path / 'basic'}")
    assert basic.returncode == 0, basic.stderr
    vec_jobs, basic_jobs = job_dirs(tmp_path / "vec"), job_dirs(tmp_path / "basic")
    assert sorted(vec_jobs) == sorted(basic_jobs) == [0, 1]
    for i in vec_jobs:
        mine, theirs = read_metrics(vec_jobs[i]), read_metrics(basic_jobs[i])
        numbers = [k for k in theirs if "/" in k] + ["steps", "epochs", "status"]
        assert "train/penalty" in theirs or "val/loss" in theirs
        assert {k: mine.get(k) for k in numbers} == {k: theirs[k] for k in numbers}


@pytest.mark.parametrize("value", ["0.5", "abc"])
def test_a_width_ratio_below_one_is_refused_before_any_job(tmp_path, value):
    sweep = tmp_path / "sweep"
    done = cli_in_process("-m", "hydra/launcher=vectorized", f"hydra.launcher.width_ratio={value}",
                          "seed=0,1", "epochs=1", f"hydra.sweep.dir={sweep}")
    assert done.returncode == 2, done.stderr
    assert f"hydra.launcher.width_ratio={value}" in done.stderr.replace("'", "")
    assert "must be a number >= 1" in done.stderr
    assert "Traceback" not in done.stderr and not sweep.exists()
