"""Faults caused for real: stops, resumes, divergence, bad values, concurrent runs."""

from __future__ import annotations

import pytest
import torch
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError

import trainer.run as run_module
from tests.conftest import read_metrics, read_scalars
from trainer.run import run
from trainer.runtime.errors import ConfigError
from trainer.runtime.signals import StopOnSignal
from trainer.storage.checkpoint import load_checkpoint

# Dropout, momentum and a per-epoch schedule: every state a resume must restore is in play.
STATEFUL = ("model.dropout=0.2", "optimizer=momentum", "scheduler=step", "scheduler.step_size=1",
            "scheduler.gamma=0.7", "batch_size=50")


def weights(run_dir) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]


def assert_same_run(a, b, metrics_a, metrics_b):
    for key, value in weights(a).items():
        assert torch.equal(value, weights(b)[key]), key
    for key in ("val/loss", "val/acc", "test/loss", "test/acc", "steps", "epochs", "best_epoch"):
        assert metrics_a[key] == metrics_b[key], key


def test_resume_after_two_epochs_is_identical_to_four(cfg_factory, tmp_path):
    full = run(cfg_factory("epochs=4", *STATEFUL), out_dir=tmp_path / "full")
    first = run(cfg_factory("epochs=2", *STATEFUL), out_dir=tmp_path / "split")
    assert first["epochs"] == 2
    resumed = run(cfg_factory("epochs=4", "resume=true", *STATEFUL), out_dir=tmp_path / "split")
    assert resumed["status"] == "completed"
    assert_same_run(tmp_path / "full", tmp_path / "split", full, resumed)
    # The TensorBoard curve of the resumed run is continuous: one point per epoch.
    assert [s for s, _ in read_scalars(tmp_path / "split")["val/loss"]] == [1, 2, 3, 4]


def test_ckpt_path_continues_into_a_new_directory(cfg_factory, tmp_path):
    full = run(cfg_factory("epochs=3", *STATEFUL), out_dir=tmp_path / "full")
    run(cfg_factory("epochs=1", *STATEFUL), out_dir=tmp_path / "one")
    resumed = run(cfg_factory("epochs=3", f"ckpt={tmp_path / 'one'}", *STATEFUL),
                  out_dir=tmp_path / "two")
    assert_same_run(tmp_path / "full", tmp_path / "two", full, resumed)


class StopAfter(StopOnSignal):
    """Stands in for a SIGTERM arriving after `calls` optimizer steps."""

    calls = 0

    def __call__(self) -> bool:
        StopAfter.calls -= 1
        return StopAfter.calls < 0


def test_stop_mid_epoch_then_resume_is_identical(cfg_factory, tmp_path, monkeypatch):
    full = run(cfg_factory("epochs=3", *STATEFUL), out_dir=tmp_path / "full")
    monkeypatch.setattr(run_module, "StopOnSignal", StopAfter)
    StopAfter.calls = 37  # asked after each of the 26 steps of an epoch and at its end
    stopped = run(cfg_factory("epochs=3", *STATEFUL), out_dir=tmp_path / "stopped")
    assert stopped["status"] == "interrupted" and stopped["steps"] == 37
    assert stopped["epochs"] == 1 and "test/loss" not in stopped
    ckpt = load_checkpoint(tmp_path / "stopped" / "checkpoints" / "last.pt")
    assert ckpt["fit"]["cursor"]["next_batch"] == 37 - 26
    StopAfter.calls = 10**9
    resumed = run(cfg_factory("epochs=3", "resume=true", *STATEFUL), out_dir=tmp_path / "stopped")
    assert_same_run(tmp_path / "full", tmp_path / "stopped", full, resumed)


def test_resume_true_without_checkpoint_starts_fresh(cfg_factory, tmp_path):
    metrics = run(cfg_factory("epochs=1", "resume=true"), out_dir=tmp_path)
    assert metrics["status"] == "completed" and metrics["epochs"] == 1


def test_divergence_stops_at_once(cfg_factory, tmp_path):
    metrics = run(cfg_factory("optimizer=sgd", "optimizer.lr=1e12", "epochs=5",
                              "nan_check_every_n_steps=1"), out_dir=tmp_path)
    assert metrics["status"] == "diverged"
    assert metrics["steps"] < 20 and metrics["epochs"] == 0  # stopped inside the first epoch
    assert "not finite" in metrics["reason"]
    assert read_metrics(tmp_path)["status"] == "diverged"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    assert "status/text_summary" in acc.Tags()["tensors"]
    text = acc.Tensors("status/text_summary")[0].tensor_proto.string_val[0].decode()
    assert text.startswith("diverged")


def test_unknown_key_from_an_experiment_file_is_caught(cfg_factory, tmp_path):
    # The schema (trainer/config/schema.py) refuses it while Hydra composes, naming file and key.
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "typo.yaml").write_text("# @package _global_\nepoch: 5\n")
    with pytest.raises(ConfigCompositionException, match="(?s)experiment/typo.*Key 'epoch' not in"):
        cfg_factory(f"hydra.searchpath=[file://{tmp_path}]", "+experiment=typo")
    with pytest.raises(ConfigAttributeError, match="widht"):  # a node of the schema refuses it too
        cfg_factory().model.widht = 5
    cfg = cfg_factory()  # and run() checks a config built some other way
    OmegaConf.set_struct(cfg, False)
    cfg.epoch = 5
    with pytest.raises(ConfigError, match="unknown config key epoch"):
        run(cfg, out_dir=tmp_path / "run")


def test_unreadable_checkpoint_is_a_clear_error(cfg_factory, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="cannot be read"):
        run(cfg_factory(f"ckpt={bad}"), out_dir=tmp_path / "run")


def test_checkpoint_of_another_model_is_a_clear_error(cfg_factory, tmp_path):
    run(cfg_factory("epochs=1"), out_dir=tmp_path / "a")
    with pytest.raises(ConfigError, match=r"differs .*model.width: 128 -> 32"):
        run(cfg_factory("epochs=2", "model.width=32", f"ckpt={tmp_path / 'a'}"), out_dir=tmp_path / "b")


def test_a_signal_is_announced_by_the_next_check_not_inside_its_handler(caplog):
    """Logging inside a signal handler can re-enter a log stream that the interrupted code was writing
    (RuntimeError: reentrant call, a traceback on stderr): the handler only records the signal, and
    the loop's next check (or the end of the `with`) logs it, once."""
    import signal

    with caplog.at_level("WARNING", logger="trainer.runtime.signals"), StopOnSignal() as stop:
        stop._handle(signal.SIGTERM, None)
        assert stop.received == signal.SIGTERM and not caplog.records  # nothing logged by the handler
        assert stop() and stop()
    assert [r.getMessage() for r in caplog.records] == [
        "SIGTERM received: finishing the current step, then saving a checkpoint (press Ctrl-C again to "
        "stop at once)"]
    caplog.clear()
    with caplog.at_level("WARNING", logger="trainer.runtime.signals"), StopOnSignal() as stop:
        stop._handle(signal.SIGINT, None)  # after the last check
    assert len(caplog.records) == 1 and caplog.records[0].getMessage().startswith("SIGINT received")
    with StopOnSignal() as stop, pytest.raises(KeyboardInterrupt):
        stop._handle(signal.SIGINT, None)
        stop._handle(signal.SIGINT, None)  # the second Ctrl-C stops at once
