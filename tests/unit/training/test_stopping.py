"""Early stopping on a scripted validation curve, and in a run; monitor=auto's choice of metric."""


import numpy as np
import pytest

from tests.conftest import read_metrics, read_scalars
from trainer.run import run
from trainer.training.stopping import EarlyStopping

SMALL = ("epochs=3", "model.width=16", "model.depth=1")


def stop_epoch(curve: list[float], **options) -> int | None:
    """The epoch after which `EarlyStopping` ends training on `curve`, or None."""
    stopping = EarlyStopping(**options)
    for epoch, value in enumerate(curve, start=1):
        if stopping.update(value):
            return epoch
    return None


CURVE = [1.0, 0.8, 0.7, 0.75, 0.72, 0.71, 0.69, 0.9]  # best at 3, a slightly better dip at 7


def test_stops_after_patience_epochs_without_improvement():
    assert stop_epoch(CURVE, patience=3) == 6  # epochs 4, 5, 6 fail to beat 0.7
    assert stop_epoch(CURVE, patience=4) is None  # epoch 7 improves, epoch 8 is one bad epoch
    assert stop_epoch(CURVE, patience=1) == 4


def test_min_delta_requires_a_real_improvement():
    # 0.69 beats 0.7 by 0.01, not by more than min_delta=0.02: epochs 4..7 are all bad.
    assert stop_epoch(CURVE, patience=4, min_delta=0.02) == 7


def test_max_mode_for_accuracy():
    assert stop_epoch([0.5, 0.6, 0.6, 0.59, 0.7], patience=2, mode="max") == 4


def test_never_stops_without_patience():
    assert stop_epoch(CURVE, patience=None) is None


def test_state_round_trips():
    stopping = EarlyStopping(patience=3)
    for value in CURVE[:5]:
        stopping.update(value)
    resumed = EarlyStopping()
    resumed.load_state_dict(stopping.state_dict())
    assert resumed.update(CURVE[5]) is True and resumed.best_epoch == 3


def test_run_stops_early(cfg_factory, tmp_path):
    # No epoch can beat the first by 100: training stops after 1 + patience epochs.
    metrics = run(cfg_factory("epochs=10", "early_stopping.patience=2", "early_stopping.min_delta=100"),
                  out_dir=tmp_path)
    assert metrics["epochs"] == 3 and metrics["stopped_by"] == "early_stopping"
    assert metrics["status"] == "completed" and metrics == read_metrics(tmp_path)
    assert [s for s, _ in read_scalars(tmp_path)["val/loss"]] == [1, 2, 3]


def test_monitor_auto_is_val_acc_for_classification(cfg_factory, tmp_path):
    metrics = run(cfg_factory(*SMALL), out_dir=tmp_path)
    assert metrics["monitor"] == "val/acc" == read_metrics(tmp_path)["monitor"]
    accs = [v for _, v in read_scalars(tmp_path)["val/acc"]]
    assert metrics["best_epoch"] == 1 + int(np.argmax(accs))  # the first epoch with the best acc
    assert metrics["val/acc"] == pytest.approx(max(accs))


def test_monitor_auto_is_val_loss_for_regression(cfg_factory, tmp_path):
    metrics = run(cfg_factory("data=regression", *SMALL), out_dir=tmp_path)
    assert metrics["monitor"] == "val/loss"
    losses = [v for _, v in read_scalars(tmp_path)["val/loss"]]
    assert metrics["val/loss"] == pytest.approx(min(losses))
