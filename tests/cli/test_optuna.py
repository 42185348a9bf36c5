"""The Optuna sweeper (hydra/sweeper=optuna): search space, database storage, continuing a killed
search, processes sharing one study, pruning, the report's study lines, the optuna-dashboard."""

import csv
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from hydra_plugins.trainer_optuna_sweeper import _space
from tests.conftest import cli_in_process, cli_popen, job_dirs, kill_sweep_at_job, make_cfg, read_metrics
from trainer.report import sweep as report
from trainer.run import run
from trainer.runtime.errors import ConfigError
from trainer.sweeps.trial import make_pruner

TINY = ("data=spirals", "monitor=val/loss", "optimizer=sgd", "model.width=16", "batch_size=128")


def load(sweep: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{sweep / 'optuna.db'}")


def search(sweep: Path, *args: str) -> list[str]:
    """The command line of a search in `sweep` (a list for cli() or Popen)."""
    return ["-m", "hydra/sweeper=optuna", f"hydra.sweep.dir={sweep}", *TINY, *args]


def test_hydra_sweep_syntax_becomes_optuna_distributions():
    space, fixed = _space.parse([
        "optimizer.lr=tag(log, interval(0.0001, 0.3))", "model.width=choice(16, 32)", "epochs=range(2, 9, 3)",
        "x=interval(0.5, 1.5)", "n=tag(int, log, interval(1, 64))", "seed=1", "y=range(0.1, 0.35, 0.1)",
        "seed=2"])
    assert space["optimizer.lr"] == FloatDistribution(0.0001, 0.3, log=True)
    assert space["model.width"] == CategoricalDistribution([16, 32])
    assert space["epochs"] == IntDistribution(2, 8, step=3)  # range() excludes its stop, as in Python
    assert space["x"] == FloatDistribution(0.5, 1.5) and space["n"] == IntDistribution(1, 64, log=True)
    assert fixed == {"seed": "2"}  # a later value wins
    grid = _space.grid({k: space[k] for k in ("model.width", "epochs", "y")})
    assert grid["model.width"] == [16, 32] and grid["epochs"] == [2, 5, 8]
    assert grid["y"] == pytest.approx([0.1, 0.2, 0.3])
    with pytest.raises(ConfigError, match="grid sampler cannot enumerate optimizer.lr"):
        _space.grid({"optimizer.lr": space["optimizer.lr"]})
    overrides = _space.as_overrides({"a": True, "b": None, "c": 0.5}, {"d": "x"})
    assert overrides == ["a=true", "b=null", "c=0.5", "d=x"]


def test_pruner_names_and_arguments_are_checked():
    assert type(make_pruner("median", {"n_startup_trials": 2})).__name__ == "MedianPruner"
    assert type(make_pruner("none")).__name__ == "NopPruner"
    with pytest.raises(ConfigError, match="hydra.sweeper.pruner='mean' is not allowed"):
        make_pruner("mean")
    with pytest.raises(ConfigError, match="pruner_args"):
        make_pruner("hyperband", {"patience": 3})


@pytest.mark.slow
def test_a_bad_search_setting_is_one_paragraph(tmp_path):
    proc = cli_in_process(*search(tmp_path / "s", "hydra/sweeper/sampler=grid",
                                  "optimizer.lr=interval(0.01, 0.1)"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "grid sampler cannot enumerate optimizer.lr" in proc.stderr
    assert not (tmp_path / "s" / "optuna.db").exists() and not job_dirs(tmp_path / "s")  # no study, no job
    # A bad pruner stops the same try in OptunaSweeper.sweep, when the Search is built from the config.
    with pytest.raises(ConfigError, match="hydra.sweeper.pruner='mean' is not allowed"):
        make_search(tmp_path / "s", "hydra.sweeper.pruner=mean")


@pytest.fixture(scope="module")
def pruned_search(tmp_path_factory) -> Path:
    """A grid search of 6 learning rates, 3 of them far too small, with the median pruner."""
    sweep = tmp_path_factory.mktemp("pruned") / "search"
    proc = cli_in_process(*search(sweep, "hydra/sweeper/sampler=grid", "hydra.sweeper.sampler.seed=0",
                                  "hydra.sweeper.study_name=lrs", "hydra.sweeper.pruner=median",
                                  "+hydra.sweeper.pruner_args.n_startup_trials=2", "epochs=4",
                                  "optimizer.lr=choice(0.1, 0.05, 0.03, 0.00001, 0.00002, 0.00003)"))
    assert proc.returncode == 0, proc.stderr
    return sweep


@pytest.mark.slow
def test_median_pruner_stops_bad_trials_early(pruned_search):
    study = load(pruned_search, "lrs")
    trials = study.get_trials()
    assert len(trials) == 6  # the grid has 6 points; n_trials (20) is cut to them
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned and all(t.state == TrialState.COMPLETE for t in trials if t not in pruned)
    for t in trials:
        job = job_dirs(pruned_search)[t.number]  # job number = trial number
        metrics = read_metrics(job)
        assert metrics["status"] == t.state.name.lower().replace("complete", "completed")
        overrides = OmegaConf.load(job / ".hydra" / "overrides.yaml")
        assert f"optimizer.lr={t.params['optimizer.lr']}" in overrides
        # the job reported its monitor after every epoch it trained, as the study recorded
        assert sorted(t.intermediate_values) == list(range(1, metrics["epochs"] + 1))
        assert t.intermediate_values[metrics["best_epoch"]] == pytest.approx(metrics["val/loss"])
        if t in pruned:
            assert metrics["epochs"] < 4 and "test/acc" not in metrics
            assert "median pruner" in metrics["reason"]
        else:
            assert metrics["epochs"] == 4 and t.value == pytest.approx(metrics["val/loss"])
    assert study.best_trial.params["optimizer.lr"] >= 0.03  # a tiny rate never wins


@pytest.mark.slow
def test_report_of_an_optuna_search_shows_pruned_jobs_best_trial_and_importances(pruned_search, capsys):
    # `python -m trainer.report SWEEP` in-process (its own process: tests/cli/test_vectorized.py)
    report.main([str(pruned_search)])
    study = load(pruned_search, "lrs")
    n_pruned = sum(t.state == TrialState.PRUNED for t in study.trials)
    out = capsys.readouterr().out
    assert sum(line.rstrip().endswith(" pruned") for line in out.splitlines()) == n_pruned
    assert f"study lrs in sqlite:///{pruned_search / 'optuna.db'}: 6 trials" in out
    best = study.best_trial
    assert f"best trial {best.number} (job {best.number}): value {best.value:.4f}" in out
    assert "parameter importances" in out


@pytest.mark.slow
def test_optuna_dashboard_serves_the_study(pruned_search):
    with socket.socket() as s:  # a free local port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dashboard = Path(sys.executable).parent / "optuna-dashboard"
    url = f"sqlite:///{pruned_search / 'optuna.db'}"
    server = subprocess.Popen([str(dashboard), url, "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, studies = time.time() + 60, None
        while studies is None and time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as r:
                    studies = json.load(r)["study_summaries"]
            except OSError:  # not listening yet
                time.sleep(0.5)
        assert studies is not None, "the dashboard did not answer within 60 s"
        assert [s["study_name"] for s in studies] == ["lrs"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{studies[0]['study_id']}",
                                    timeout=10) as r:
            detail = json.load(r)
        states = sorted(t["state"] for t in detail["trials"])
        truth = sorted(t.state.name.capitalize() for t in load(pruned_search, "lrs").trials)
        assert len(detail["trials"]) == 6 and states == truth
        assert detail["objective_names"] == ["val/loss"]  # from study.set_metric_names
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_a_killed_search_continues_where_it_stopped(tmp_path):
    sweep = tmp_path / "search"
    args = search(sweep, "hydra/sweeper/sampler=random", "hydra.sweeper.sampler.seed=0",
                  "hydra.sweeper.n_trials=6", "hydra.sweeper.study_name=killed", "epochs=6",
                  "optimizer.lr=tag(log, interval(0.01, 0.3))")
    proc = cli_popen(args, tmp_path / "first.log")
    kill_sweep_at_job(proc, sweep, 3)  # 3 jobs done, the 4th midway
    finished = {n: (p / "metrics.json").stat().st_mtime_ns for n, p in job_dirs(sweep).items()
                if (p / "metrics.json").is_file()}
    assert sorted(finished) == [0, 1, 2], (tmp_path / "first.log").read_text()[-3000:]
    before = {t.number: t.state for t in load(sweep, "killed").trials}
    assert before[3] == TrialState.RUNNING

    again = cli_in_process(*args, "resume=true")
    assert again.returncode == 0, again.stderr
    trials = load(sweep, "killed").trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 6  # the study's n_trials, the finished ones counted
    assert len({t.params["optimizer.lr"] for t in complete}) == 6  # the rerun draws new values
    for t in trials:  # the trial killed while running: failed, then run again with its values
        if t.state == TrialState.FAIL:
            assert before[t.number] == TrialState.RUNNING
            retry = next(r for r in trials if t.number in r.system_attrs.get("retry_history", []))
            assert retry.state == TrialState.COMPLETE and retry.params == t.params
            # with resume=true it continued from the killed attempt's checkpoint, in its own folder
            continued = read_metrics(job_dirs(sweep)[retry.number])["resume"]
            # (best.pt when the kill fell between an epoch's best.pt and last.pt: the newer one)
            ckpts = job_dirs(sweep)[3] / "checkpoints"
            assert continued.startswith(tuple(f"continued from {ckpts / n}" for n in ("last.pt", "best.pt")))
    assert [t.number for t in trials if t.state == TrialState.FAIL] == [3]
    jobs = job_dirs(sweep)
    for number, mtime in finished.items():  # finished jobs were not run again
        assert (jobs[number] / "metrics.json").stat().st_mtime_ns == mtime
    assert all(read_metrics(jobs[t.number])["val/loss"] == pytest.approx(t.value) for t in complete)
    # The report counts the retry, not the killed attempt, and its best is the study's (issue 29)
    paths = report.report(sweep, tmp_path / "report")
    rows = {r["job"]: r for r in csv.DictReader(open(paths["csv"]))}
    assert sorted(rows, key=int) == sorted(str(t.number) for t in complete)
    best = load(sweep, "killed").best_trial.number
    assert [j for j, r in rows.items() if r["best"] == "*"] == [str(best)]


@pytest.mark.slow
def test_two_processes_share_one_study(tmp_path):
    sweep = tmp_path / "search"
    common = ["hydra/sweeper/sampler=random", "hydra.sweeper.n_trials=4", "hydra.sweeper.study_name=shared",
              "epochs=2", "optimizer.lr=tag(log, interval(0.01, 0.3))"]
    procs = [cli_popen(search(sweep, *common, f"hydra.sweeper.sampler.seed={seed}"), tmp_path / f"{seed}.log")
             for seed in (1, 2)]  # a seed each, or both would draw the same values
    for seed, proc in zip((1, 2), procs, strict=True):
        assert proc.wait(timeout=400) == 0, (tmp_path / f"{seed}.log").read_text()[-3000:]
    trials = load(sweep, "shared").trials
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    jobs = job_dirs(sweep)
    assert sorted(jobs) == list(range(4))  # one folder per trial, named by its number
    for t in trials:
        metrics = read_metrics(jobs[t.number])
        assert metrics["val/loss"] == pytest.approx(t.value)
        # without a pruner too: each epoch's monitor (optuna-dashboard's intermediate values), and the
        # job's folder and numbers as user attributes
        assert sorted(t.intermediate_values) == [1, 2]
        assert t.intermediate_values[metrics["best_epoch"]] == pytest.approx(metrics["val/loss"])
        assert t.user_attrs["job_folder"] == str(jobs[t.number])
        assert t.user_attrs["test/acc"] == pytest.approx(metrics["test/acc"])
        assert t.user_attrs["best_epoch"] == metrics["best_epoch"]
    assert load(sweep, "shared").metric_names == ["val/loss"]  # the dashboard's axis, not "Objective 0"
    ran = [(tmp_path / f"{seed}.log").read_text().count("] trial ") for seed in (1, 2)]
    assert sum(ran) == 4


def make_search(sweep: Path, *overrides: str):
    """The sweeper's Search as Hydra builds it from the composed config (no launcher: it is not run)."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from hydra_plugins.trainer_optuna_sweeper._search import Search
    from trainer.config.validate import config_dir

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("config", ["hydra/sweeper=optuna", f"hydra.sweep.dir={sweep}", "monitor=val/loss",
                                 *overrides], return_hydra_config=True)
    options = {k: v for k, v in cfg.hydra.sweeper.items() if k != "_target_"}
    options["sampler"] = instantiate(cfg.hydra.sweeper.sampler)
    return Search(cfg, None, **options)


# Optuna's own notice to whoever picks QMC, not a defect of ours: kept out of the suite's summary
@pytest.mark.filterwarnings("ignore:QMCSampler is experimental")
@pytest.mark.parametrize("sampler", ["tpe", "random", "grid", "cmaes", "qmc"])
def test_every_sampler_asks_trials_from_the_search_space(tmp_path, sampler):
    """The sampler group composes, and the study in the sweep folder's database asks and keeps trials."""
    search = make_search(tmp_path, f"hydra/sweeper/sampler={sampler}", "hydra.sweeper.sampler.seed=0")
    lr = "choice(0.001, 0.01, 0.1)" if sampler == "grid" else "tag(log, interval(0.001, 0.1))"
    space, _ = search.prepare([f"optimizer.lr={lr}", "model.width=choice(16, 32)"])
    study = search.open_study()
    for value in (0.5, 0.3, 0.4):
        (trial,), _ = search.ask(study, space)
        assert 0.001 <= trial.params["optimizer.lr"] <= 0.1 and trial.params["model.width"] in (16, 32)
        study.tell(trial, value)
    assert (tmp_path / "optuna.db").is_file() and search.n_trials == (6 if sampler == "grid" else 20)
    again = load(tmp_path, tmp_path.name)  # the study is named after the sweep folder by default
    assert [t.value for t in again.trials] == [0.5, 0.3, 0.4] and again.best_trial.number == 1


@pytest.mark.slow
def test_a_trial_without_heartbeat_is_failed_and_asked_again(tmp_path):
    """A trial whose process on another machine stopped sending heartbeats: failed, its values rerun."""
    search = make_search(tmp_path, "hydra/sweeper/sampler=random", "hydra.sweeper.heartbeat_interval=1",
                         "hydra.sweeper.n_trials=1")
    space, _ = search.prepare(["optimizer.lr=interval(0.001, 0.1)"])
    study = search.open_study()
    (lost,), _ = search.ask(study, space)
    search.storage.set_trial_user_attr(search.trial_id(lost.number), "sweeper_process", "elsewhere:1")
    assert search.ask(study, space) == ([], 0)  # the one trial of n_trials runs (elsewhere)
    time.sleep(3.5)  # more than two heartbeat intervals without one (SQLite's clock has whole seconds)
    (retry,), finished = search.ask(study, space)
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL, TrialState.RUNNING] and finished == 0
    assert retry.params == lost.params and retry.number == 1


@pytest.mark.parametrize(("monitor", "direction"), [("val/acc", "maximize"), ("val/loss", "minimize"),
                                                    ("auto", "maximize")])  # auto on digits: val/acc
def test_the_search_direction_follows_the_monitor(tmp_path, monitor, direction):
    assert make_search(tmp_path, f"monitor={monitor}").direction == direction
    with pytest.raises(ConfigError, match="must be minimize or maximize"):
        make_search(tmp_path, "hydra.sweeper.direction=up")


@pytest.mark.slow  # over a second on 2 cores
def test_monitor_auto_on_a_file_follows_the_search_direction(tmp_path):
    """monitor=auto on a CSV is resolved only once the data is read; a minimizing search must get the
    loss, never the accuracy of the classification task it turns out to be. What `python -m trainer`
    does with each job of a search, in-process: the monitor for the sweeper's direction, the run,
    the value handed back to the sweeper (the searches above check that the study records it)."""
    from trainer.__main__ import sweep_monitor
    from trainer.sweeps.objective import objective

    table = tmp_path / "table.csv"
    table.write_text("a,b,label\n" + "\n".join(f"{i % 7},{(i * 3) % 5},{i % 2}" for i in range(120)) + "\n")
    cfg = make_cfg("data=csv", f"data.path={table}", "monitor=auto", "epochs=1", "model.width=8",
                   "batch_size=16", "optimizer.lr=0.005")
    assert sweep_monitor(cfg, "minimize") == "val/loss" and cfg.monitor == "val/loss"
    metrics = run(cfg, out_dir=tmp_path / "job")
    assert "val/acc" in metrics  # a classification task: monitor=auto alone would take val/acc
    assert read_metrics(tmp_path / "job")["monitor"] == metrics["monitor"] == "val/loss"
    assert objective(metrics, metrics["monitor"]) == metrics["val/loss"]


@pytest.mark.slow
def test_a_space_with_a_value_no_run_accepts_stops_before_the_study_every_time(tmp_path):
    """An unknown config of a group (issue 29: trial 0 was left running, and every rerun stalled on
    it): one paragraph, exit 2, no sweep folder; the same again on a rerun."""
    sweep = tmp_path / "s"
    for _ in range(2):
        proc = cli_in_process(*search(sweep, "optimizer=choice(sgd,adamm)"), cwd=tmp_path)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.startswith("error: the search space of optimizer cannot be searched: its choices "
                                      "include optimizer=adamm")
        assert not sweep.exists()  # no study, no job, not even the sweep's HParams file


@pytest.mark.slow
def test_a_trial_whose_config_cannot_be_composed_is_failed_and_the_study_goes_on(tmp_path):
    """Each value composes (momentum with sgd), a pair does not (adam has no momentum): those trials
    are marked failed, not retried, and the others run."""
    sweep = tmp_path / "s"
    proc = cli_in_process(*search(sweep, "hydra/sweeper/sampler=grid", "epochs=1",
                                  "optimizer=choice(adam,sgd)",
                                  "optimizer.momentum=choice(0.5,0.9)"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = load(sweep, "s").trials
    assert len(trials) == 4
    for t in trials:
        assert t.state == (TrialState.FAIL if t.params["optimizer"] == "adam" else TrialState.COMPLETE)
        assert (t.number in job_dirs(sweep)) == (t.state == TrialState.COMPLETE)
    assert "its config cannot be composed: Could not override 'optimizer.momentum'" in proc.stdout


def test_the_shipped_search_space_passes_the_check(tmp_path):
    from tests.unit.config.test_validate import search_space

    space, fixed = search_space(["+hparams_search=digits_optuna"], tmp_path / "s")
    assert set(space) >= {"optimizer", "optimizer.lr"} and (tmp_path / "s").is_dir()


@pytest.mark.slow
@pytest.mark.parametrize("content", [b"\x8f\x01 not sqlite at all " * 100,
                                     b"SQLite format 3\x00" + b"\x00" * 90])
def test_a_damaged_study_file_is_named_as_damaged(tmp_path, content):
    """A damaged optuna.db gets its own paragraph (issue 29: it got advice about database URLs)."""
    sweep = tmp_path / "s"
    sweep.mkdir()
    (sweep / "optuna.db").write_bytes(content)
    proc = cli_in_process(*search(sweep, "hydra.sweeper.n_trials=1"), cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    flat = " ".join(proc.stderr.split())
    assert flat.startswith(f"error: {sweep / 'optuna.db'} is damaged: SQLite cannot read it")
    assert f"mv {sweep / 'optuna.db'} {sweep / 'optuna.db'}.damaged" in flat and "SQLAlchemy URL" not in flat
    assert (sweep / "optuna.db").read_bytes() == content and not job_dirs(sweep)  # left as it was
