"""TensorBoard dashboards of a sweep, read back with TensorBoard's own reader and a real server; the
sweep report's job states (not started, failed at once when the process is dead)."""

import json
import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import cli, cli_in_process, job_dirs, make_cfg, read_metrics
from trainer import eval as trainer_eval
from trainer.logs.dashboard import FINAL, FINAL_METRICS, HPARAMS_RUN, IMAGES_RUN, REPORT_IMAGES
from trainer.logs.events import declared_metrics, read_hparams
from trainer.logs.server import tensorboard
from trainer.report import sweep as report
from trainer.sweeps.jobs import (
    MAX_NAME,
    PROCESS_FILE,
    SweepKeys,
    hydra_arg,
    job_dir_name,
    job_number,
    order_key,
)
from trainer.training.curves import LR_TAG, SPEED_TAG


def test_job_folder_names_are_short_valid_and_start_with_the_job_number(monkeypatch):
    keys = SweepKeys.instance()
    monkeypatch.setattr(keys, "jobs", None)  # outside a sweep (or one of unknown size): the bare number
    monkeypatch.setattr(keys, "swept", [])
    assert job_dir_name(3, "optimizer=adam,optimizer.lr=0.01") == "3_optimizer=adam,optimizer.lr=0.01"
    assert job_dir_name(0, "") == "0"  # nothing differs: a sweep of one job
    assert job_dir_name(1, "data.path=/data/x y.csv") == "1_data.path=_data_x_y.csv"
    long = job_dir_name(12, ",".join(f"model.key{i}=value{i}" for i in range(30)))
    assert len(long) == MAX_NAME and long.startswith("12_model.key0=value0,") and long.endswith("~")
    assert [job_number(n) for n in ("12_model.key0=value0", "7", "report.csv", "3x")] == [12, 7, None, None]
    # `-m seed=0,1,2 optimizer=sgd,adam ...` of 30 jobs: `03`, the keys as the command line gives them
    monkeypatch.setattr(keys, "jobs", 30)
    monkeypatch.setattr(keys, "swept", ["seed", "optimizer", "model.widths"])
    assert job_dir_name(3, "model.widths=[64,32],optimizer=adam,seed=0") == \
        "03_seed=0,optimizer=adam,model.widths=[64,32]"
    assert job_dir_name(29, "+extra=1,seed=4") == "29_seed=4,+extra=1"  # a key not swept: after them
    monkeypatch.setattr(keys, "jobs", 101)
    assert job_dir_name(7, "seed=0") == "007_seed=0" and job_number("007_seed=0") == 7
    assert sorted(["10_a", "9_a", "03_a", "b"], key=order_key) == ["03_a", "9_a", "10_a", "b"]


@pytest.mark.parametrize("path", ["/runs/a-1/b_2.x", "/m/3_optimizer.lr=0.01,optimizer=adam", "/m/0_w=[1,2]"])
def test_a_job_folder_given_back_to_hydra_reads_as_the_same_path(path):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    (word,) = shlex.split(hydra_arg("hydra.run.dir", path))  # as the shell passes it
    assert OverridesParser.create().parse_override(word).value() == path
    assert ('"' in word) == ("=" in path.rsplit("/", 1)[1])  # quoted only when needed


def dead_pid() -> int:
    """The id of a process that has ended (the kernel does not reuse it this soon)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def job_folder(sweep: Path, name: str, overrides: list[str], pid: int | None = None,
               started: float = 0.0) -> Path:
    """A job folder as Hydra and the trainer leave it when the job starts: .hydra/, an empty
    trainer.log, and the record of the process that runs it."""
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(overrides), job / ".hydra" / "overrides.yaml")
    OmegaConf.save(make_cfg(*overrides), job / ".hydra" / "config.yaml")
    (job / "trainer.log").write_text("")
    if pid is not None:
        record = {"pid": pid, "host": socket.gethostname(), "started": started or time.time()}
        (job / PROCESS_FILE).write_text(json.dumps(record))
    return job


def test_report_lists_every_job_of_multirun_yaml_and_dead_jobs_as_failed(tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    # What `python -m trainer -m optimizer=sgd,adam optimizer.lr=0.1,0.01 epochs=2` saves first.
    master = OmegaConf.create({"monitor": "val/loss", "hydra": {
        "sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper", "params": None},
        "overrides": {"task": ["optimizer=sgd,adam", "optimizer.lr=0.1,0.01", "epochs=2"]}}})
    OmegaConf.save(master, sweep / "multirun.yaml")
    grid = [["optimizer=sgd", "optimizer.lr=0.1"], ["optimizer=sgd", "optimizer.lr=0.01"]]
    killed = job_folder(sweep, "0_optimizer.lr=0.1,optimizer=sgd", [*grid[0], "epochs=2"], dead_pid())
    running = job_folder(sweep, "1_optimizer.lr=0.01,optimizer=sgd", [*grid[1], "epochs=2"], os.getpid())
    assert time.time() - killed.stat().st_mtime < 600  # fresh files: the stale rule would say running

    jobs = report.read_sweep(sweep)
    assert [(j.name, j.status) for j in jobs] == [
        ("0", "failed"), ("1", "running"), ("2", "not started"), ("3", "not started")]
    assert jobs[3].overrides == {"optimizer": "adam", "optimizer.lr": "0.01", "epochs": "2"}
    assert report.swept_keys(jobs) == ["optimizer", "optimizer.lr"]

    # A sequential launcher that went on to job 2 in the same process has finished job 1.
    job_folder(sweep, "2_optimizer.lr=0.1,optimizer=adam", ["optimizer=adam", "optimizer.lr=0.1"],
               os.getpid(), started=json.loads((running / PROCESS_FILE).read_text())["started"] + 1)
    assert [j.status for j in report.read_sweep(sweep)] == ["failed", "failed", "running", "not started"]


def test_report_of_a_single_run_that_failed_validation_is_failed_at_once(tmp_path, capsys):
    run_dir = job_folder(tmp_path, "run", ["optimizer.lr=-1"], dead_pid())  # an empty trainer.log
    report.report(run_dir, tmp_path / "out")
    assert "1 failed" in capsys.readouterr().out
    assert report.read_sweep(run_dir)[0].status == "failed"


@pytest.mark.slow
def test_cli_run_that_fails_validation_is_reported_failed(tmp_path):
    proc = cli("optimizer.lr=-1", "epochs=1", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 2 and (tmp_path / "trainer.log").read_text() == ""
    assert json.loads((tmp_path / PROCESS_FILE).read_text())["pid"] > 0
    assert report.read_sweep(tmp_path)[0].status == "failed"


@pytest.mark.slow
def test_sweep_dashboards_in_a_real_tensorboard(tmp_path, capsys):
    """4 jobs through the joblib launcher: folders named by what differs, the same hparam keys,
    HParams on the swept keys, chart layout, config text, report table and images. One job at a
    time (`n_jobs=1`: joblib runs them in this process; two loky workers cost ~10 CPU s); its worker
    processes are tests/unit/runtime/test_device.py's."""
    sweep = tmp_path / "sweep"
    proc = cli_in_process("-m", "hydra/launcher=parallel", "hydra.launcher.n_jobs=1", "optimizer=sgd,adam",
                          "optimizer.lr=0.1,0.01", "epochs=1", "data=spirals", "model.width=16",
                          f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr
    names = ["0_optimizer=sgd,optimizer.lr=0.1", "1_optimizer=sgd,optimizer.lr=0.01",
             "2_optimizer=adam,optimizer.lr=0.1", "3_optimizer=adam,optimizer.lr=0.01"]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == [*names, HPARAMS_RUN]  # epochs=1 in none
    hparams = {name: read_hparams(sweep / name) for name in names}
    assert all(set(h) == set(hparams[names[0]]) for h in hparams.values())
    # a group's column holds the config chosen (sgd, momentum, ...), never the class (SGD for both)
    assert (hparams[names[3]]["optimizer"], hparams[names[3]]["optimizer.lr"]) == ("adam", 0.01)
    assert hparams[names[0]]["optimizer"] == "sgd" and hparams[names[0]]["data.name"] == "spirals"
    assert "optimizer.betas" in hparams[names[0]]
    # one experiment, in the sweep's pseudo-run sweep_hparams (listed after the jobs)
    assert declared_metrics(sweep / HPARAMS_RUN) == [FINAL + m for m in FINAL_METRICS]
    assert declared_metrics(sweep / names[0]) == []  # folder; each job has only its own values

    capsys.readouterr()
    report.main([str(sweep)])  # `python -m trainer.report SWEEP` (its own process: test_vectorized_cli)
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("best  job"))
    assert "optimizer  optimizer.lr" in lines[header] and lines[header].endswith("status")
    rows = lines[header + 1 : header + 5]
    assert [r.split()[1] if r.startswith("*") else r.split()[0] for r in rows] == ["0", "1", "2", "3"]
    assert sum(r.startswith("*") for r in rows) == 1 and all(r.endswith("completed") for r in rows)
    assert (sweep / "report_params.png").is_file()

    with tensorboard(sweep, runs=len(names) + 2) as server:  # the jobs, the sweep's experiment, images
        runs = sorted(server.get("/data/runs"))  # TensorBoard's run list: the pseudo-runs last
        assert runs == [*sorted(names), HPARAMS_RUN, IMAGES_RUN]
        experiment = server.experiment()
        infos = experiment["hparamInfos"]
        # the swept keys in the command line's order and nothing else: no column holds one value for
        # every job, so the parallel coordinates (the first five columns) draw what was swept
        assert [(i["name"], i.get("differs")) for i in infos] == [("optimizer", True), ("optimizer.lr", True)]
        metrics = {m["name"]["tag"]: m.get("displayName") for m in experiment["metricInfos"]}
        assert metrics[f"{FINAL}test/acc"] == "test/acc" and f"{FINAL}best/val_loss" in metrics

        layout = server.get("/data/plugin/custom_scalars/layout")
        charts = {c["title"]: c["multiline"]["tag"] for cat in layout["category"] for c in cat["chart"]}
        assert {"^train/loss$", "^val/loss$"} <= set(charts["loss (train and val)"])
        assert charts["learning rate (per update)"] == [f"^{LR_TAG}$"]
        assert "gradient norm per layer" not in charts  # log_layer_stats is off: no empty charts

        text = server.get(f"/data/plugin/text/text?run={names[3]}&tag=config/text_summary")
        assert len(text) == 1 and "torch.optim.Adam" in text[0]["text"] and "lr: 0.01" in text[0]["text"]
        command = server.get(f"/data/plugin/text/text?run={names[3]}&tag=command/text_summary")[0]["text"]
        assert "optimizer=sgd,adam" in command and "optimizer=adam" in command

        images = server.get("/data/plugin/images/tags")
        assert set(images[IMAGES_RUN]) == {f"{REPORT_IMAGES}curves", f"{REPORT_IMAGES}params"}

        scalars = server.get("/data/plugin/scalars/tags")[names[0]]
        tags = sorted(scalars)  # the time-series view lists groups in this order
        assert tags.index(f"{FINAL}test/acc") > tags.index("val/loss") > tags.index("train/loss")
        # the curves open first: loss and accuracy, then the per-update rate and the speed
        assert tags[:4] == ["train/acc", "train/loss", "val/acc", "val/loss"]
        assert tags.index(LR_TAG) > tags.index("val/loss") and tags.index(SPEED_TAG) > tags.index("val/loss")
        value = server.get(f"/data/plugin/scalars/scalars?run={names[0]}&tag={FINAL}test/acc")[0][2]
        assert value == pytest.approx(read_metrics(sweep / names[0])["test/acc"])

    # Relaunched with resume=true and more epochs: the same folders continue; eval reads them.
    proc = cli_in_process("-m", "optimizer=sgd,adam", "optimizer.lr=0.1,0.01", "epochs=2", "data=spirals",
                          "model.width=16", "resume=true", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == [*names, HPARAMS_RUN, IMAGES_RUN]
    assert [read_metrics(sweep / n)["epochs"] for n in names] == [2, 2, 2, 2]
    metrics = read_metrics(sweep / names[1])
    again = trainer_eval.evaluate_checkpoint(trainer_eval.load(sweep / names[1] / "checkpoints" / "best.pt"))
    assert again["test/acc"] == metrics["test/acc"]
    assert [j.status for j in report.read_sweep(sweep)] == ["completed"] * 4


@pytest.mark.slow
def test_numbers_drawn_to_17_digits_are_named_to_4_and_a_rerun_keeps_its_folders(tmp_path):
    SweepKeys.instance().clear()  # outside a sweep
    assert job_dir_name(5, "batch_size=32,optimizer.lr=0.007845577141205887") == \
        "5_batch_size=32,optimizer.lr=0.007846"
    assert job_dir_name(6, "optimizer.lr=1.2345678e-05,seed=0") == "6_optimizer.lr=1.235e-05,seed=0"
    assert job_dir_name(7, "optimizer.lr=0.0001") == "7_optimizer.lr=0.0001"  # short: as written
    # a sweep run again into its folder (resume=true) finds each job's folder by its number, also one
    # that an earlier version named otherwise
    sweep = tmp_path / "sweep"
    rates = "optimizer.lr=0.0123456789,0.1"
    proc = cli_in_process("-m", "data=gaussians", "epochs=1", rates, f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr
    assert sorted(job_dirs(sweep)[n].name for n in (0, 1)) == ["0_optimizer.lr=0.01235", "1_optimizer.lr=0.1"]
    (sweep / "0_optimizer.lr=0.01235").rename(sweep / "0_optimizer.lr=0.0123456789")
    proc = cli_in_process("-m", "data=gaussians", "epochs=2", rates, "resume=true",
                          f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr
    assert read_metrics(sweep / "0_optimizer.lr=0.0123456789")["epochs"] == 2
    assert not (sweep / "0_optimizer.lr=0.01235").exists()
    # a job of other values is another job: its own folder, not the old one's
    proc = cli_in_process("-m", "data=gaussians", "epochs=1", "optimizer.lr=0.5", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr
    assert read_metrics(sweep / "0")["status"] == "completed"  # one value: not in the name
