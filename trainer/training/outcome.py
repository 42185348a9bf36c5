"""A run's result: the test metrics of the chosen weights, and metrics.json."""

from __future__ import annotations

import logging
import time
from typing import Any

import torch

from models import count_parameters
from trainer.data import Splits
from trainer.data.targets import original_units
from trainer.training.loop import evaluate
from trainer.training.state import FitState, Training

log = logging.getLogger(__name__)

# A classifier whose best val/acc is within this of always answering the most frequent class
# learned nothing worth reporting.
CHANCE_MARGIN = 0.01


def test_metrics(test_on: str, training: Training, state: FitState, splits: Splits) -> dict[str, float]:
    """The test split's metrics of the best-validation weights (or, test_on=last, the last ones)."""
    model, averaging = training.model, training.averaging
    if test_on == "best" and state.best_weights is not None:
        model.load_state_dict(state.best_weights)
    elif averaging is not None and averaging.count:  # test_on=last: the last averaged weights
        model.load_state_dict(averaging.weights())
    test = evaluate(model, training.loss, splits.x_test, splits.y_test,
                    classification=splits.task == "classification")
    return original_units(test, training.loss.factor)  # regression: in the targets' own units


def run_metrics(seed: int, state: FitState, test: dict[str, float], training: Training, splits: Splits,
                started: float, meta: dict[str, str], monitor: str) -> dict[str, Any]:
    """metrics.json: the best epoch's validation metrics, the test metrics, and how the run went;
    `monitor` is the metric that picked the best epoch (`auto` resolved for the task)."""
    model = training.model
    metrics: dict[str, Any] = {**state.best_metrics, **{f"test/{k}": v for k, v in test.items()}}
    metrics.update({
        "train/loss": state.last_metrics.get("train/loss"),
        **{k: state.last_metrics[k] for k in ("train/penalty",) if k in state.last_metrics},
        "monitor": monitor,
        "best_epoch": state.best_epoch,
        "epochs": state.epoch,
        "steps": state.step,
        "train_samples": len(splits.x_train),  # samples per epoch: the report's x=samples
        "stopped_by": state.stopped_by,
        "params": count_parameters(model),
        "status": state.status,
        "wall_time_s": round(time.time() - started, 3),
        "seed": int(seed),
        **meta,
    })
    if state.reason:
        metrics["reason"] = state.reason
    warning = suspicious(state, splits)
    if warning:  # completed, exit 0, but not a result to trust: said in the log and metrics.json
        log.warning("%s", warning)
        metrics["warning"] = warning
    if test and hasattr(model, "members"):  # an ensemble: each member's own metrics beside its own
        metrics["members"] = member_report(model, splits, training.loss)
    if splits.task == "classification":
        metrics["train/acc"] = state.last_metrics.get("train/acc")
    return metrics


def suspicious(state: FitState, splits: Splits) -> str:
    """Why a completed run's numbers should not be trusted, or "": its training loss ended above
    its first epoch's (training went backwards), or its best val/acc is at chance (no better than
    always predicting the validation split's most frequent class)."""
    if state.status != "completed":
        return ""
    first, last = state.first_train_loss, state.last_metrics.get("train/loss")
    if state.epoch >= 2 and first is not None and last is not None and last > first:
        return (f"the training loss rose from {first:.4g} in epoch 1 to {last:.4g} in epoch {state.epoch}: "
                "training went backwards, usually a learning rate too large for the batch size; "
                "lower optimizer.lr")
    acc = state.best_metrics.get("val/acc")
    if acc is not None and len(splits.y_val):
        chance = float(torch.bincount(splits.y_val.cpu()).max()) / len(splits.y_val)
        if acc <= chance + CHANCE_MARGIN:
            return (f"the best val/acc {acc:.4f} is at chance (always predicting the most frequent class "
                    f"scores {chance:.4f}): the model learned nothing; lower optimizer.lr or train longer")
    return ""


def member_report(model: torch.nn.Module, splits: Splits, loss: Any) -> list[dict[str, float]]:
    """metrics.json's `members`: each member's own val/test metrics (and alpha), in the weights the
    ensemble (trainer.ensemble.model.Ensemble: its `members` and their `alphas`) was tested with;
    `loss`: the run's (trainer.training.losses.Loss)."""
    classification = splits.task == "classification"
    report = []
    for m, member in enumerate(model.members):
        row = {"alpha": float(model.alphas[m])}
        for split in ("val", "test"):
            x, y = getattr(splits, f"x_{split}"), getattr(splits, f"y_{split}")
            metrics = original_units(evaluate(member, loss, x, y, classification=classification),
                                     loss.factor)
            row.update({f"{split}/{k}": v for k, v in metrics.items()})
        report.append(row)
    return report
