"""What a run folder says is what it holds, whatever stopped the run: each case first reproduced.

Faults are injected at exact moments by wrapping the functions that write checkpoints (no timing).
"""

from __future__ import annotations

import errno
import json
import os
import signal

import pytest
import torch

import trainer.run as run_module
import trainer.storage.checkpoint as checkpoint_module
import trainer.training.epoch as fit_module
from tests.conftest import read_metrics, read_scalars
from tests.integration.test_reliability import StopAfter
from trainer.eval import evaluate_checkpoint
from trainer.run import run
from trainer.runtime.errors import ConfigError, FolderRefused, StorageError
from trainer.runtime.signals import StopOnSignal
from trainer.storage.checkpoint import load_checkpoint
from trainer.storage.rundir import RunFolder

# The case: the best epoch (8) falls between checkpoints written every 3 epochs.
SPIRALS = ("data=spirals", "epochs=10", "checkpoint_every_n_epochs=3", "optimizer.lr=0.05")
SMALL = ("data=spirals", "data.n_samples=300", "model.width=16", "batch_size=32")


class Killed(BaseException):
    """Stands in for a SIGKILL: nothing after it runs, no handler catches it."""


def kill_at(monkeypatch, name: str, n: int) -> None:
    """Die just before the n-th write of checkpoints/`name`."""
    writes = {"n": 0}
    save = checkpoint_module.save_checkpoint

    def dying_save(state, path, **kwargs):
        if path.name == name:
            writes["n"] += 1
            if writes["n"] == n:
                raise Killed
        save(state, path, **kwargs)

    monkeypatch.setattr(checkpoint_module, "save_checkpoint", dying_save)


def ckpt_epoch(run_dir, name: str) -> int:
    return load_checkpoint(run_dir / "checkpoints" / name)["fit"]["epoch"]


def test_best_pt_is_the_best_epoch_between_sparse_checkpoints(cfg_factory, tmp_path):
    metrics = run(cfg_factory(*SPIRALS), out_dir=tmp_path)
    assert metrics["best_epoch"] % 3 != 0  # the case: an improvement at an epoch with no due checkpoint
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert best["fit"]["epoch"] == metrics["best_epoch"]
    val = evaluate_checkpoint(best, split="val", device="cpu")
    assert val["val/loss"] == pytest.approx(metrics["val/loss"], rel=1e-6)
    test = evaluate_checkpoint(best, split="test", device="cpu")
    assert test["test/acc"] == pytest.approx(metrics["test/acc"], rel=1e-6)


@pytest.mark.parametrize("averaging", ["none", "poly"])  # poly: best.pt's model is the average
def test_kill_between_best_and_last_continues_from_the_newer_best(cfg_factory, tmp_path, monkeypatch,
                                                                  averaging):
    args = (*SMALL, f"averaging={averaging}", "epochs=4")
    full = run(cfg_factory(*args), out_dir=tmp_path / "full")
    kill_at(monkeypatch, "last.pt", 3)  # best.pt of epoch 3 is written, last.pt still says epoch 2
    with pytest.raises(Killed):
        run(cfg_factory(*args), out_dir=tmp_path / "cut")
    cut = tmp_path / "cut"
    assert ckpt_epoch(cut, "best.pt") == 3 and ckpt_epoch(cut, "last.pt") == 2
    monkeypatch.undo()
    resumed = run(cfg_factory(*args, "resume=true"), out_dir=cut)
    for key in ("val/loss", "test/loss", "test/acc", "best_epoch", "steps"):
        assert resumed[key] == full[key], key
    assert ckpt_epoch(cut, "best.pt") == resumed["best_epoch"]
    # Each epoch once in TensorBoard, although epoch 3 was logged before the kill.
    assert [s for s, _ in read_scalars(cut)["val/loss"]] == [1, 2, 3, 4]


def test_checkpoints_that_disagree_are_refused(cfg_factory, tmp_path):
    run(cfg_factory(*SMALL, "epochs=2"), out_dir=tmp_path)
    ckpts = tmp_path / "checkpoints"
    last = load_checkpoint(ckpts / "last.pt")
    best = load_checkpoint(ckpts / "best.pt")
    best["fit"]["epoch"] = 1  # an older best.pt than the one last.pt records
    torch.save(best, ckpts / "best.pt")
    (tmp_path / "metrics.json").unlink()
    with pytest.raises(ConfigError, match="checkpoints disagree"):
        run(cfg_factory(*SMALL, "epochs=3", "resume=true"), out_dir=tmp_path)
    assert load_checkpoint(ckpts / "last.pt")["fit"] == last["fit"]  # untouched


@pytest.mark.parametrize("overrides,end", [
    (("early_stopping.patience=1", "epochs=30", "optimizer.lr=0.5"), "early_stopping"),
    (("max_steps=25", "epochs=5"), "max_steps"),
    (("epochs=2",), "epochs"),
])
def test_resume_of_a_finished_run_returns_it_as_it_is(cfg_factory, tmp_path, overrides, end):
    first = run(cfg_factory(*SMALL, *overrides), out_dir=tmp_path)
    assert first["status"] == "completed" and first["stopped_by"] == end
    before = (tmp_path / "metrics.json").read_bytes()
    events = sorted(p.name for p in tmp_path.glob("events.*"))
    again = run(cfg_factory(*SMALL, *overrides, "resume=true"), out_dir=tmp_path)
    assert again == first  # its recorded metrics, wall_time_s included
    assert (tmp_path / "metrics.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.glob("events.*")) == events  # no new event file


def test_resume_of_a_diverged_run_returns_it_as_it_is(cfg_factory, tmp_path):
    overrides = ("optimizer=sgd", "optimizer.lr=1e12", "nan_check_every_n_steps=1", "epochs=3")
    first = run(cfg_factory(*SMALL, *overrides), out_dir=tmp_path)
    assert first["status"] == "diverged"
    assert run(cfg_factory(*SMALL, *overrides, "resume=true"), out_dir=tmp_path) == first


def test_raised_epochs_continue_a_completed_run(cfg_factory, tmp_path):
    full = run(cfg_factory(*SMALL, "epochs=4"), out_dir=tmp_path / "full")
    run(cfg_factory(*SMALL, "epochs=2"), out_dir=tmp_path / "split")
    more = run(cfg_factory(*SMALL, "epochs=4", "resume=true"), out_dir=tmp_path / "split")
    assert more["epochs"] == 4 and more["val/loss"] == full["val/loss"]
    assert "continued from" in more["resume"] and "reason" not in more
    scalars = read_scalars(tmp_path / "split")
    assert [s for s, _ in scalars["train/loss"]] == [1, 2, 3, 4]
    assert [s for s, _ in scalars["~final/test/loss"]] == [4]  # the 2-epoch run's final values are gone


def test_resume_true_with_nothing_to_resume_says_so(cfg_factory, tmp_path):
    metrics = run(cfg_factory(*SMALL, "epochs=1", "resume=true"), out_dir=tmp_path)
    assert metrics["status"] == "completed"
    assert "found no checkpoint" in metrics["resume"] and "started afresh" in metrics["resume"]


@pytest.mark.parametrize("change,key", [
    ("data=circles", "data.name"),
    ("model.activation=tanh", "model.activation"),
    ("batch_size=16", "batch_size"),
    ("data.noise=0.5", "data.noise"),
    ("optimizer.lr=0.01", "optimizer.lr"),
    ("seed=1", "seed"),
    ("optimizer=sgd", "optimizer"),  # another optimizer class: a KeyError traceback before
    ("scheduler=step", "scheduler"),
])
def test_resume_refuses_a_config_that_would_train_differently(cfg_factory, tmp_path, change, key):
    run(cfg_factory(*SMALL, "epochs=1"), out_dir=tmp_path)
    last = (tmp_path / "checkpoints" / "last.pt").read_bytes()
    with pytest.raises(ConfigError, match=rf"differs .*\b{key}: "):
        run(cfg_factory(*SMALL, "epochs=2", "resume=true", change), out_dir=tmp_path)
    assert (tmp_path / "checkpoints" / "last.pt").read_bytes() == last
    assert read_metrics(tmp_path)["epochs"] == 1


def test_resume_refuses_an_edited_data_file(cfg_factory, tmp_path):
    csv = tmp_path / "table.csv"
    rows = [f"{i % 7},{(i * 3) % 5},{i % 2}" for i in range(200)]
    csv.write_text("a,b,label\n" + "\n".join(rows) + "\n")
    args = ("data=csv", f"data.path={csv}", "model.width=8", "batch_size=16")
    run(cfg_factory(*args, "epochs=1"), out_dir=tmp_path / "run")
    csv.write_text("a,b,label\n" + "\n".join(rows[:150]) + "\n")  # shrank between stop and resume
    with pytest.raises(ConfigError, match="the data differ"):
        run(cfg_factory(*args, "epochs=2", "resume=true"), out_dir=tmp_path / "run")
    csv.write_text("a,b,label\n" + "\n".join(rows[::-1]) + "\n")  # same shapes, other rows
    with pytest.raises(ConfigError, match="the data differ"):
        run(cfg_factory(*args, "epochs=2", "resume=true"), out_dir=tmp_path / "run")


def test_cosine_refuses_a_longer_resume_unless_its_length_is_fixed(cfg_factory, tmp_path):
    run(cfg_factory(*SMALL, "scheduler=cosine", "epochs=2"), out_dir=tmp_path / "null")
    with pytest.raises(ConfigError, match="T_max") as refused:
        run(cfg_factory(*SMALL, "scheduler=cosine", "epochs=4", "resume=true"), out_dir=tmp_path / "null")
    may_change = str(refused.value).split("Only these may change on resume: ")[1]
    assert "epochs" not in may_change.split(", ") and "resume" in may_change  # not offered what it refuses
    fixed = ("scheduler=cosine", "scheduler.T_max=4")
    full = run(cfg_factory(*SMALL, *fixed, "epochs=4"), out_dir=tmp_path / "full")
    run(cfg_factory(*SMALL, *fixed, "epochs=2"), out_dir=tmp_path / "split")
    resumed = run(cfg_factory(*SMALL, *fixed, "epochs=4", "resume=true"), out_dir=tmp_path / "split")
    assert resumed["val/loss"] == full["val/loss"] and resumed["test/loss"] == full["test/loss"]


def test_a_second_process_on_the_folder_stops_at_once(cfg_factory, tmp_path):
    with RunFolder(tmp_path):  # as another process would hold it (flock: one lock per open file)
        with pytest.raises(FolderRefused, match=rf"another process \(pid {os.getpid()}\)"):
            run(cfg_factory(*SMALL, "epochs=1"), out_dir=tmp_path)
    assert not (tmp_path / "checkpoints").exists() and not list(tmp_path.glob("events.*"))
    assert run(cfg_factory(*SMALL, "epochs=1"), out_dir=tmp_path)["status"] == "completed"


def test_an_exploding_loss_is_diverged(cfg_factory, tmp_path):
    metrics = run(cfg_factory("optimizer=adam", "optimizer.lr=1e6", "epochs=3"), out_dir=tmp_path)
    assert metrics["status"] == "diverged", metrics
    assert "divergence_factor" in metrics["reason"] and metrics["epochs"] == 0
    off = run(cfg_factory("optimizer=adam", "optimizer.lr=1e6", "epochs=1", "divergence_factor=null"),
              out_dir=tmp_path / "off")
    assert off["status"] == "completed" and off["train/loss"] > 1e3


class RecordedStop(StopOnSignal):
    """The run's signal flag, reachable from the test."""

    current: StopOnSignal | None = None

    def __enter__(self):
        RecordedStop.current = self
        return super().__enter__()


def test_a_signal_during_the_last_validation_leaves_the_run_completed(cfg_factory, tmp_path, monkeypatch):
    validate, calls = fit_module.validation_metrics, {"n": 0}

    def validating(*args):
        calls["n"] += 1
        if calls["n"] == 3:  # the untrained model's, epoch 1's, then epoch 2's: the last
            RecordedStop.current.received = signal.SIGTERM
        return validate(*args)

    monkeypatch.setattr(fit_module, "validation_metrics", validating)
    monkeypatch.setattr(run_module, "StopOnSignal", RecordedStop)
    metrics = run(cfg_factory(*SMALL, "epochs=2"), out_dir=tmp_path)
    assert calls["n"] == 3
    assert metrics["status"] == "completed" and "test/loss" in metrics and metrics["epochs"] == 2
    assert metrics["signal"] == "SIGTERM"


def test_a_resumed_run_has_no_stale_reason(cfg_factory, tmp_path, monkeypatch):
    monkeypatch.setattr(run_module, "StopOnSignal", StopAfter)
    StopAfter.calls = 5
    stopped = run(cfg_factory(*SMALL, "epochs=2"), out_dir=tmp_path)
    assert stopped["status"] == "interrupted" and "stopped at step" in stopped["reason"]
    StopAfter.calls = 10**9
    done = run(cfg_factory(*SMALL, "epochs=2", "resume=true"), out_dir=tmp_path)
    assert done["status"] == "completed" and "reason" not in done


def test_a_second_ctrl_c_during_a_checkpoint_write_leaves_metrics_and_the_last_checkpoint(
        cfg_factory, tmp_path, monkeypatch):
    save = checkpoint_module.save_checkpoint

    def interrupted_save(state, path, **kwargs):
        if state["fit"]["epoch"] == 2:
            raise KeyboardInterrupt  # what the second SIGINT's handler raises mid-write
        save(state, path, **kwargs)

    monkeypatch.setattr(checkpoint_module, "save_checkpoint", interrupted_save)
    metrics = run(cfg_factory(*SMALL, "epochs=3"), out_dir=tmp_path)
    assert metrics["status"] == "interrupted" and "second Ctrl-C" in metrics["reason"]
    assert read_metrics(tmp_path)["status"] == "interrupted"
    assert ckpt_epoch(tmp_path, "last.pt") == 1  # the previous checkpoint, intact
    monkeypatch.undo()
    assert run(cfg_factory(*SMALL, "epochs=3", "resume=true"), out_dir=tmp_path)["epochs"] == 3


@pytest.mark.parametrize("code,advice", [(errno.ENOSPC, "disk is full"), (errno.EROFS, "read-only")])
def test_a_full_or_read_only_disk_is_a_clear_error_with_the_checkpoint_intact(
        cfg_factory, tmp_path, monkeypatch, code, advice):
    fsync = os.fsync
    calls = {"n": 0}

    def failing_fsync(fd):
        calls["n"] += 1
        if calls["n"] > 2:  # epoch 1's best.pt and last.pt are written; epoch 2's first write fails
            raise OSError(code, os.strerror(code))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(StorageError, match=rf"cannot write .*checkpoints.*{advice}.*resume=true"):
        run(cfg_factory(*SMALL, "epochs=3"), out_dir=tmp_path)
    monkeypatch.undo()
    assert ckpt_epoch(tmp_path, "last.pt") == 1
    assert not list((tmp_path / "checkpoints").glob(".*.tmp"))
    assert not (tmp_path / "metrics.json").exists()


def test_a_pruned_run_is_finished(cfg_factory, tmp_path):
    """A trial the search pruned stays pruned: resume=true returns it as it is."""
    first = run(cfg_factory(*SMALL, "epochs=2"), out_dir=tmp_path)
    pruned = {**first, "status": "pruned", "reason": "pruned by the search after epoch 2"}
    (tmp_path / "metrics.json").write_text(json.dumps(pruned))
    assert run(cfg_factory(*SMALL, "epochs=5", "resume=true"), out_dir=tmp_path) == pruned


def test_how_a_run_runs_may_change_on_resume(cfg_factory, tmp_path):
    run(cfg_factory(*SMALL, "epochs=1"), out_dir=tmp_path)
    more = run(cfg_factory(*SMALL, "epochs=2", "resume=true", "threads=1", "device=cpu", "progress=true",
                           "log_every_n_steps=3", "checkpoint_every_n_epochs=2"), out_dir=tmp_path)
    assert more["epochs"] == 2 and more["resume"].startswith("continued from")


def test_metrics_older_than_the_checkpoint_are_not_returned(cfg_factory, tmp_path, monkeypatch):
    """A finished run continued with more epochs and killed before its new metrics.json: its old
    metrics no longer describe its checkpoints, so a resume finishes from the checkpoint."""
    run(cfg_factory(*SMALL, "epochs=2"), out_dir=tmp_path)

    def killed(*args, **kwargs):
        raise Killed

    monkeypatch.setattr(run_module, "write_json", killed)
    with pytest.raises(Killed):
        run(cfg_factory(*SMALL, "epochs=3", "resume=true"), out_dir=tmp_path)
    monkeypatch.undo()
    assert read_metrics(tmp_path)["epochs"] == 2 and ckpt_epoch(tmp_path, "last.pt") == 3
    again = run(cfg_factory(*SMALL, "epochs=2", "resume=true"), out_dir=tmp_path)
    assert again["epochs"] == 3 and read_metrics(tmp_path)["epochs"] == 3
    assert ckpt_epoch(tmp_path, "best.pt") == again["best_epoch"]


def test_background_checkpoints_hold_the_state_of_their_call_and_land_in_order(tmp_path, monkeypatch):
    """A run's checkpoints are serialized when asked for and written on another thread while training
    goes on: the file holds the weights of that moment, files land in the order given, and
    wait() returns only once the file is on disk."""
    import threading

    writers = []
    replace = os.replace

    def recorded(src, dst):
        writers.append((threading.current_thread().name, os.path.basename(dst)))
        replace(src, dst)

    monkeypatch.setattr(os, "replace", recorded)
    writer = checkpoint_module.BackgroundWriter()
    weights = torch.arange(6.0)
    checkpoint_module.save_checkpoint({"w": weights}, tmp_path / "best.pt", writer=writer)
    weights.add_(100)  # training goes on while the file is written
    checkpoint_module.save_checkpoint({"w": weights}, tmp_path / "last.pt", writer=writer)
    writer.close()
    assert torch.equal(load_checkpoint(tmp_path / "best.pt")["w"], torch.arange(6.0))
    assert torch.equal(load_checkpoint(tmp_path / "last.pt")["w"], torch.arange(6.0) + 100)
    assert [name for _, name in writers] == ["best.pt", "last.pt"]
    assert all(thread.startswith("checkpoint-writer") for thread, _ in writers)


def test_a_background_write_that_fails_is_the_callers_error(tmp_path):
    (tmp_path / "taken").write_text("a file where the folder should be")
    writer = checkpoint_module.BackgroundWriter()
    checkpoint_module.save_checkpoint({"w": 1}, tmp_path / "taken" / "last.pt", writer=writer)  # returns
    with pytest.raises(StorageError, match=r"cannot write .*last\.pt"):
        writer.close()
