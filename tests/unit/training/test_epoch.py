"""The one loss and the carriers of a learning rate that never step themselves: the stacked losses
(a vectorized group's, an ensemble's) are the run's `Loss` per member, and a carrier's scheduler
never hears from torch that it stepped before its optimizer."""

from __future__ import annotations

import warnings

import pytest
import torch

from tests.conftest import make_cfg
from trainer.config.build import build_data, build_loss
from trainer.data import prepare_data
from trainer.run import run
from trainer.storage.setup import build_training
from trainer.training.losses import FOR_TASK, Loss
from trainer.training.schedules import Schedule

SCHEDULER_FIRST = "lr_scheduler.step()` before `optimizer.step()"


@pytest.mark.parametrize(("task", "name"), [(t, n) for t, names in FOR_TASK.items() for n in names])
def test_the_stacked_losses_are_the_runs_loss_of_each_member(task, name):
    g = torch.Generator().manual_seed(0)
    out = torch.randn(3, 7, 4, generator=g)  # (M, b, K)
    if task == "classification":
        y = torch.randint(0, 4, (3, 7), generator=g)
    else:
        y = torch.randn(3, 7, 4, generator=g)
    loss = Loss(name, task, scale=2.0, huber_delta=0.5)
    alone = torch.stack([loss(out[m], y[m]) for m in range(3)])
    torch.testing.assert_close(loss.member_means(out, y), alone)
    torch.testing.assert_close(loss.samples(out, y).mean(1), alone)


def steps_first(schedule: Schedule) -> list[str]:
    """The warnings of the schedule's first epoch step."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        schedule.after_epoch(1, 1.0)
    return [str(w.message) for w in caught]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_carrier_steps_once_without_gradients_changing_nothing_and_its_scheduler_is_quiet(optimizer):
    model = torch.nn.Linear(3, 2)
    build = {"sgd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), "adam": lambda p: torch.optim.Adam(p)}
    opt = build[optimizer](model.parameters())
    warned = Schedule(opt, torch.optim.lr_scheduler.StepLR(opt, 1), "epoch")
    assert any(SCHEDULER_FIRST in m for m in steps_first(warned))  # what the carrier's step prevents

    opt = build[optimizer](model.parameters())
    schedule = Schedule(opt, torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5), "epoch")
    weights, state = [p.clone() for p in model.parameters()], repr(opt.state_dict())
    assert schedule.carried() is schedule
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters(), strict=True))
    assert repr(opt.state_dict()) == state
    assert steps_first(schedule) == [] and opt.param_groups[0]["lr"] == pytest.approx(opt.defaults["lr"] / 2)


def test_a_vectorized_jobs_training_carries_the_scheduled_rate_quietly():
    cfg = make_cfg("data=gaussians", "scheduler=step", "scheduler.step_size=1")
    splits, _ = prepare_data(build_data(cfg.data))
    training = build_training(cfg, splits, 16, "val/loss", build_loss(cfg.loss, cfg.huber_delta, splits))
    assert training.step is None  # its updates are its group's
    assert steps_first(training.schedule) == []
    assert training.optimizer.param_groups[0]["lr"] == pytest.approx(cfg.optimizer.lr * 0.1)


def test_an_ensembles_scheduled_run_is_quiet(tmp_path):
    cfg = make_cfg("data=gaussians", "ensemble=bagging", "ensemble.members=2", "epochs=2", "model.width=8",
                   "scheduler=step", "scheduler.step_size=1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = run(cfg, out_dir=tmp_path)
    assert metrics["status"] == "completed"
    assert not [w for w in caught if SCHEDULER_FIRST in str(w.message)]
