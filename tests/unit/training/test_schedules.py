"""Learning-rate schedules: the notes' formulas, read back from TensorBoard, and their composition."""

import logging
import math

import pytest
import torch
from torch.optim.lr_scheduler import ReduceLROnPlateau, StepLR
from torch.optim.swa_utils import SWALR

from tests.conftest import read_scalars
from trainer.run import run
from trainer.training.curves import LR_TAG
from trainer.training.schedules import Schedule, inverse_sqrt, inverse_time


def sgd(lr: float = 0.1) -> torch.optim.SGD:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=lr)


def rates(schedule: Schedule, optimizer: torch.optim.Optimizer, epochs: int, per_epoch: int,
          val_losses: list[float] | None = None) -> list[float]:
    """The rate each update uses, driving `schedule` like fit() does."""
    used = []
    for epoch in range(1, epochs + 1):
        for _ in range(per_epoch):
            used.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            schedule.after_update()
        schedule.after_epoch(epoch, val_losses[epoch - 1] if val_losses else 0.0)
    return used


def test_inverse_time_rates_in_tensorboard_match_the_formula(cfg_factory, tmp_path):
    metrics = run(cfg_factory("optimizer=sgd", "optimizer.lr=0.2", "scheduler=inverse_time",
                              "scheduler.tau=7", "epochs=2", "log_every_n_steps=1"), out_dir=tmp_path)
    lr = read_scalars(tmp_path)[LR_TAG]
    assert [k for k, _ in lr] == list(range(1, metrics["steps"] + 1))  # logged after every update
    for k, value in lr:  # the rate after k updates
        assert value == pytest.approx(0.2 / (1 + k / 7), rel=1e-6)


def test_warmup_multiplies_the_schedule(cfg_factory, tmp_path):
    run(cfg_factory("optimizer=sgd", "optimizer.lr=0.2", "scheduler=inverse_time", "scheduler.tau=50",
                    "warmup_steps=10", "warmup_start_factor=0.1", "epochs=1", "log_every_n_steps=1"),
        out_dir=tmp_path)
    for k, value in read_scalars(tmp_path)[LR_TAG]:
        warm = 0.1 + 0.9 * min(k, 10) / 10
        assert value == pytest.approx(0.2 * warm / (1 + k / 50), rel=1e-6)


def test_inverse_sqrt_formula():
    opt = sgd(0.5)
    used = rates(Schedule(opt, inverse_sqrt(opt, tau=3.0), "step"), opt, epochs=2, per_epoch=10)
    assert used == pytest.approx([0.5 / (1 + k / 3) ** 0.5 for k in range(20)], rel=1e-9)


def test_epoch_step_decay_with_step_warmup():
    opt = sgd(1.0)
    schedule = Schedule(opt, StepLR(opt, step_size=2, gamma=0.1), "epoch", warmup_steps=4,
                        warmup_start_factor=0.2)
    used = rates(schedule, opt, epochs=4, per_epoch=3)
    warm = [0.2 + 0.8 * min(k, 4) / 4 for k in range(12)]
    decay = [0.1 ** ((k // 3) // 2) for k in range(12)]  # x0.1 after epochs 2 and 4
    assert used == pytest.approx([w * d for w, d in zip(warm, decay, strict=True)], rel=1e-9)


def test_plateau_divides_by_ten_when_val_loss_stalls():
    opt = sgd(1.0)
    schedule = Schedule(opt, ReduceLROnPlateau(opt, factor=0.1, patience=1), "epoch")
    # Epoch 3 and 4 fail to improve on 0.5: after epoch 4 (patience 1 exceeded) the rate drops.
    used = rates(schedule, opt, epochs=6, per_epoch=1, val_losses=[1.0, 0.5, 0.6, 0.7, 0.4, 0.3])
    assert used == pytest.approx([1.0, 1.0, 1.0, 1.0, 0.1, 0.1])


def test_plateau_composes_with_warmup():
    opt = sgd(1.0)
    schedule = Schedule(opt, ReduceLROnPlateau(opt, factor=0.1, patience=0), "epoch", warmup_steps=2,
                        warmup_start_factor=0.5)
    used = rates(schedule, opt, epochs=3, per_epoch=2, val_losses=[1.0, 2.0, 3.0])
    assert used == pytest.approx([0.5, 0.75, 1.0, 1.0, 0.1, 0.1])


def test_swalr_takes_over_from_start_epoch():
    opt = sgd(1.0)
    swa = SWALR(opt, swa_lr=0.05, anneal_epochs=1)
    schedule = Schedule(opt, inverse_time(opt, tau=1.0), "step", swa=(swa, 2))
    used = rates(schedule, opt, epochs=3, per_epoch=2)
    assert used[:4] == pytest.approx([1.0, 1 / 2, 1 / 3, 1 / 4])
    assert used[4:] == pytest.approx([0.05, 0.05])  # annealed to swa_lr after epoch 2


def test_schedule_state_round_trips():
    opt = sgd(1.0)
    schedule = Schedule(opt, inverse_time(opt, tau=2.0), "step", warmup_steps=3)
    rates(schedule, opt, epochs=1, per_epoch=2)
    opt2 = sgd(1.0)
    restored = Schedule(opt2, inverse_time(opt2, tau=2.0), "step", warmup_steps=3)
    restored.load_state_dict(schedule.state_dict())
    opt2.load_state_dict(opt.state_dict())
    assert rates(restored, opt2, 1, 3) == pytest.approx(rates(schedule, opt, 1, 3))


def test_cosine_per_update_spans_the_whole_run(cfg_factory, tmp_path):
    metrics = run(cfg_factory("optimizer=sgd", "optimizer.lr=0.2", "scheduler=cosine",
                              "schedule.interval=step", "epochs=2", "log_every_n_steps=1"), out_dir=tmp_path)
    total = metrics["steps"]
    for k, value in read_scalars(tmp_path)[LR_TAG]:
        assert value == pytest.approx(0.2 * (1 + math.cos(math.pi * k / total)) / 2, rel=1e-5, abs=1e-7)


@pytest.mark.slow  # over a second on 2 cores
def test_per_arm_options_apply_to_the_arm_that_takes_them(cfg_factory, tmp_path, caplog):
    # The README's `python -m trainer -m +experiment=digits_schedules schedule.per_arm.tau=1000`,
    # each of its four scheduler arms in-process (one seed, one rate, one epoch; this was also a
    # CLI sweep of those four, test_cli_sweep_arms: the command line's sweeps are test_cli.py's).
    common = ("+experiment=digits_schedules", "schedule.per_arm.tau=1000", "epochs=1", "model.width=16",
              "averaging=none", "optimizer.lr=0.1", "seed=0")
    for arm in ("none", "step", "inverse_time", "plateau"):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="trainer.config.build"):
            metrics = run(cfg_factory(*common, f"scheduler={arm}"), out_dir=tmp_path / arm)
        assert metrics["status"] == "completed", arm
        said = "schedule.per_arm.tau=1000" in caplog.text and "an option of another arm" in caplog.text
        assert said == (arm in ("step", "plateau")), (arm, caplog.text)  # tau ignored, and said
    lrs = dict(read_scalars(tmp_path / "inverse_time")[LR_TAG])
    k = max(lrs)
    assert lrs[k] == pytest.approx(0.1 / (1 + k / 1000), rel=1e-5)  # tau=1000, not the default 100
