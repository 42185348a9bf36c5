"""Resumable multiruns: a sweep killed midway, run again with `resume=true` and the same sweep folder,
skips its completed jobs, resumes the interrupted one from its checkpoint and runs the rest."""

import json

import pytest

from tests.conftest import cli_in_process, cli_popen, job_dirs, kill_sweep_at_job, read_metrics
from trainer.report import sweep as report


@pytest.mark.slow
def test_a_killed_grid_multirun_resumes(tmp_path):
    sweep = tmp_path / "grid"
    args = ["-m", "data=spirals", "model.width=16", "optimizer=sgd", "optimizer.lr=0.3,0.1,0.03",
            "batch_size=16,32", "epochs=8", f"hydra.sweep.dir={sweep}"]
    proc = cli_popen(args, tmp_path / "first.log")
    kill_sweep_at_job(proc, sweep, 3)  # 3 jobs done, the 4th midway
    jobs = job_dirs(sweep)
    assert sorted(jobs) == [0, 1, 2, 3] and not (jobs[3] / "metrics.json").exists(), \
        (tmp_path / "first.log").read_text()[-3000:]
    done = {n: (jobs[n] / "metrics.json").read_text() for n in range(3)}
    mtimes = {n: (jobs[n] / "metrics.json").stat().st_mtime_ns for n in range(3)}

    again = cli_in_process(*args, "resume=true")
    assert again.returncode == 0, again.stderr
    jobs = job_dirs(sweep)
    assert sorted(jobs) == list(range(6))  # the same folders: every job once
    for n in range(3):  # completed: skipped, their recorded metrics untouched
        assert (jobs[n] / "metrics.json").read_text() == done[n]
        assert (jobs[n] / "metrics.json").stat().st_mtime_ns == mtimes[n]
    resumed = read_metrics(jobs[3])
    assert resumed["status"] == "completed" and resumed["epochs"] == 8
    # not afresh: from its last.pt, or from best.pt when the kill fell between an epoch's best.pt and
    # last.pt writes (best.pt is then the newer checkpoint)
    ckpts = jobs[3] / "checkpoints"
    assert resumed["resume"].startswith(tuple(f"continued from {ckpts / n}" for n in ("last.pt", "best.pt")))
    assert int(resumed["resume"].split("at epoch ")[1].split(",")[0]) >= 1
    assert all(read_metrics(jobs[n])["status"] == "completed" for n in range(6))
    seen = report.read_sweep(sweep)
    assert len(seen) == 6 and all(j.status == "completed" for j in seen)
    assert report.swept_keys(seen) == ["optimizer.lr", "batch_size"]  # not resume, set in jobs 3-5 only
    assert json.loads(done[0])["val/loss"] == pytest.approx(seen[0].values["val/loss"])


@pytest.mark.slow
def test_a_sweep_named_before_padded_numbers_resumes_in_its_own_folders(tmp_path):
    """Job folders are numbered to the sweep's width (`00` .. `11`), keys in the command line's order;
    a sweep whose folders an earlier version named `0_...` continues in them."""
    sweep = tmp_path / "sweep"
    args = ["-m", "data=gaussians", "seed=0,1,2,3,4,5", "optimizer.lr=0.1,0.01", f"hydra.sweep.dir={sweep}"]
    first = cli_in_process(*args, "epochs=1")
    assert first.returncode == 0, first.stderr
    names = [p.name for p in job_dirs(sweep).values()]
    assert sorted(names)[:3] == ["00_seed=0,optimizer.lr=0.1", "01_seed=0,optimizer.lr=0.01",
                                 "02_seed=1,optimizer.lr=0.1"] and len(names) == 12
    old = {}
    for name in names:  # as the earlier version named them: `0_optimizer.lr=0.1,seed=0`
        number, _, what = name.partition("_")
        seed, lr = what.split(",")
        old[int(number)] = f"{int(number)}_{lr},{seed}"
        (sweep / name).rename(sweep / old[int(number)])
    again = cli_in_process(*args, "epochs=2", "resume=true")
    assert again.returncode == 0, again.stderr
    assert {n: p.name for n, p in job_dirs(sweep).items()} == old  # no new folders
    assert all(read_metrics(sweep / name)["epochs"] == 2 for name in old.values())
