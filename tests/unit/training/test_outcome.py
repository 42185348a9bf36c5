"""trainer.training.outcome: what a finished run reports, and the warning on numbers not to be trusted."""

import torch

from tests.conftest import make_cfg
from trainer.data.split import Splits
from trainer.run import run
from trainer.training.outcome import suspicious
from trainer.training.state import FitState


def splits_with_val_labels(labels: list[int]) -> Splits:
    y = torch.tensor(labels)
    x = torch.zeros(len(labels), 2)
    return Splits(x, y, x, y, x, y, task="classification", num_classes=int(y.max()) + 1)


def state(first: float, last: float, acc: float, epochs: int = 5) -> FitState:
    s = FitState(epoch=epochs, status="completed", first_train_loss=first)
    s.last_metrics, s.best_metrics = {"train/loss": last}, {"val/acc": acc}
    return s


def test_a_training_loss_that_rose_is_suspicious():
    splits = splits_with_val_labels([0, 1, 2, 3] * 5)  # chance 0.25
    assert suspicious(state(2.0, 1.0, 0.9), splits) == ""
    assert "rose from 2 in epoch 1 to 3.5 in epoch 5" in suspicious(state(2.0, 3.5, 0.9), splits)
    assert suspicious(state(2.0, 3.5, 0.9, epochs=1), splits) == ""  # one epoch: nothing to compare
    stopped = state(2.0, 3.5, 0.9)
    stopped.status = "interrupted"
    assert suspicious(stopped, splits) == ""


def test_accuracy_at_the_majority_class_rate_is_suspicious():
    splits = splits_with_val_labels([0] * 12 + [1] * 4 + [2] * 4)  # always class 0: 0.6
    assert "at chance" in suspicious(state(2.0, 1.0, 0.6), splits)
    assert "scores 0.6000" in suspicious(state(2.0, 1.0, 0.605), splits)
    assert suspicious(state(2.0, 1.0, 0.65), splits) == ""


def test_a_run_gone_wrong_says_so_in_metrics_and_the_log(tmp_path, caplog):
    # SGD's default rate 0.1 on single samples of digits: the README's example of a run gone wrong
    metrics = run(make_cfg("optimizer=sgd", "batch_size=1", "epochs=2"), tmp_path / "run")
    assert metrics["status"] == "completed" and "went backwards" in metrics["warning"]  # 8.5, then 35.5
    assert any("went backwards" in r.message and r.levelname == "WARNING" for r in caplog.records)
    good = run(make_cfg("data=gaussians", "epochs=3"), tmp_path / "good")
    assert good["status"] == "completed" and "warning" not in good
