"""Weight averaging: the notes' recurrence by hand, EMA, SWA, and averaged weights in a run."""

import pytest
import torch
from torch import nn

from tests.conftest import read_metrics, read_scalars
from trainer.run import run
from trainer.storage.checkpoint import load_checkpoint
from trainer.training.averaging import WeightAverage
from trainer.training.curves import LR_TAG


def iterates(n: int) -> list[torch.Tensor]:
    """n weight vectors of a 3->2 linear layer (weight and bias flattened), float64 for the hand sums."""
    g = torch.Generator().manual_seed(0)
    return [torch.randn(3 * 2 + 2, generator=g, dtype=torch.float64) for _ in range(n)]


def average(kind: str, ws: list[torch.Tensor], start_epoch: int = 1, epochs: list[int] | None = None,
            **options) -> torch.Tensor:
    model = nn.Linear(3, 2).double()
    avg = WeightAverage(model, kind, start_epoch=start_epoch, **options)
    for w, epoch in zip(ws, epochs or [1] * len(ws), strict=True):
        nn.utils.vector_to_parameters(w, model.parameters())  # as if an optimizer step had made w
        avg.update(model, epoch)
    return nn.utils.parameters_to_vector(avg.module.parameters())


def test_polynomial_decay_matches_the_notes_recurrence():
    ws, gamma = iterates(6), 3.0
    expected = ws[0].clone()  # t = 1: (gamma + 1) / (1 + gamma) = 1
    for t, w in enumerate(ws[1:], start=2):
        a = (gamma + 1) / (t + gamma)
        expected = (1 - a) * expected + a * w
    assert torch.allclose(average("poly", ws, gamma=gamma), expected, rtol=1e-12, atol=1e-12)


def test_poly_with_gamma_zero_and_swa_are_the_mean():
    ws = iterates(5)
    mean = torch.stack(ws).mean(0)
    assert torch.allclose(average("poly", ws, gamma=0.0), mean, atol=1e-12)
    assert torch.allclose(average("swa", ws), mean, atol=1e-12)


def test_ema_recurrence():
    ws, decay = iterates(4), 0.9
    expected = ws[0].clone()
    for w in ws[1:]:
        expected = decay * expected + (1 - decay) * w
    assert torch.allclose(average("ema", ws, decay=decay), expected, atol=1e-12)


def test_updates_before_start_epoch_are_ignored():
    ws = iterates(4)
    got = average("swa", ws, start_epoch=2, epochs=[1, 1, 2, 2])
    assert torch.allclose(got, (ws[2] + ws[3]) / 2, atol=1e-12)


def test_state_dict_round_trip():
    model = nn.Linear(3, 2)
    avg = WeightAverage(model, "poly")
    for _ in range(3):
        avg.update(model, 1)
    restored = WeightAverage(nn.Linear(3, 2), "poly")
    restored.load_state_dict(avg.state_dict())
    assert restored.count == 3
    assert all(torch.equal(a, b) for a, b in zip(restored.module.parameters(), avg.module.parameters(),
                                                   strict=True))


@pytest.mark.parametrize("kind", ["poly", "ema"])
def test_run_evaluates_averaged_weights_and_logs_raw_beside(cfg_factory, tmp_path, kind):
    metrics = run(cfg_factory(f"averaging={kind}", "epochs=2"), out_dir=tmp_path)
    assert metrics == read_metrics(tmp_path)
    scalars = read_scalars(tmp_path)
    for tag in ("val/loss", "val/acc", "val_raw/loss", "val_raw/acc"):
        assert [s for s, _ in scalars[tag]] == [1, 2], tag
    assert scalars["val/loss"][-1][1] != scalars["val_raw/loss"][-1][1]
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert last["averaging"]["count"] == metrics["steps"]
    assert metrics["best_epoch"] == 2  # the averaged weights keep improving here
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    averaged = {k.removeprefix("module."): v for k, v in last["averaging"]["averaged"].items()
                if k.startswith("module.")}
    assert set(best["model"]) == set(averaged)
    assert all(torch.equal(best["model"][k], averaged[k]) for k in averaged)  # best = the average
    assert not torch.equal(best["model"]["net.0.weight"], last["model"]["net.0.weight"])  # not raw


def test_swa_with_swa_lr(cfg_factory, tmp_path):
    metrics = run(cfg_factory("averaging=swa", "averaging.start_epoch=2", "averaging.swa_lr=0.0005",
                              "averaging.anneal_epochs=1", "epochs=3", "log_every_n_steps=1"),
                  out_dir=tmp_path)
    per_epoch = metrics["steps"] // 3
    lr = dict(read_scalars(tmp_path)[LR_TAG])
    assert lr[per_epoch] == pytest.approx(0.001)  # adam's rate up to the end of start_epoch
    assert lr[2 * per_epoch + 1] == pytest.approx(0.0005)
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert last["averaging"]["count"] == 2 * per_epoch  # epochs 2 and 3


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_averaging_update_does_not_sync_the_host():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2)).cuda()
    for kind in ("poly", "ema", "swa"):
        avg = WeightAverage(model, kind)
        torch.cuda.set_sync_debug_mode("error")
        try:
            for _ in range(3):
                avg.update(model, 1)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        assert avg.count == 3


def test_resume_restores_averaging_warmup_and_early_stopping(cfg_factory, tmp_path):
    from tests.integration.test_reliability import assert_same_run

    opts = ("averaging=poly", "warmup_steps=30", "scheduler=plateau", "scheduler.patience=0",
            "early_stopping.patience=3", "early_stopping.min_delta=0.01", "optimizer=momentum",
            "batch_size=50")
    full = run(cfg_factory("epochs=4", *opts), out_dir=tmp_path / "full")
    run(cfg_factory("epochs=2", *opts), out_dir=tmp_path / "split")
    resumed = run(cfg_factory("epochs=4", "resume=true", *opts), out_dir=tmp_path / "split")
    assert_same_run(tmp_path / "full", tmp_path / "split", full, resumed)
    for name in ("full", "split"):
        ckpt = load_checkpoint(tmp_path / name / "checkpoints" / "last.pt")
        assert ckpt["averaging"]["count"] == full["steps"]
    a, b = (load_checkpoint(tmp_path / n / "checkpoints" / "last.pt") for n in ("full", "split"))
    assert a["early_stopping"] == b["early_stopping"] and a["scheduler"] == b["scheduler"]
    assert all(torch.equal(v, b["averaging"]["averaged"][k]) for k, v in a["averaging"]["averaged"].items())


def test_swa_tests_averaged_weights_even_when_a_plain_epoch_validated_better(tmp_path):
    from trainer.training.epoch import FitState, keep_if_best

    class Average:  # what keep_if_best reads of a WeightAverage
        def __init__(self, start_epoch, count):
            self.start_epoch, self.count = start_epoch, count
            self.module = torch.nn.Linear(1, 1)

    plain = torch.nn.Linear(1, 1)
    state = FitState()
    for epoch, loss in ((1, 0.5), (2, 0.1)):  # before averaging: plain weights, best kept as usual
        state.epoch = epoch
        keep_if_best(state, {"val/loss": loss}, "val/loss", plain, Average(3, 0))
    assert state.best_epoch == 2 and state.best_value == 0.1
    avg = Average(3, 5)
    state.epoch = 3  # the first averaged epoch validates worse, and still becomes the best
    keep_if_best(state, {"val/loss": 0.3, "val_raw/loss": 0.2}, "val/loss", plain, avg)
    assert state.best_epoch == 3 and state.best_value == 0.3
    assert torch.equal(state.best_weights["weight"], avg.module.weight)
    state.epoch = 4  # from then on, only a better averaged epoch replaces it
    keep_if_best(state, {"val/loss": 0.4}, "val/loss", plain, avg)
    assert state.best_epoch == 3


def test_a_swa_run_reports_its_averaged_weights(tmp_path):
    from tests.conftest import make_cfg
    from trainer.run import run

    metrics = run(make_cfg("data=gaussians", "epochs=6", "averaging=swa", "averaging.start_epoch=5"),
                  tmp_path / "run")
    assert metrics["best_epoch"] >= 5 and "val_raw/loss" in metrics
