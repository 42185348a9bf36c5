"""The vectorized engine: each member trains as its own run would (weights, batches, curves),
members end on their own, and their folders are ordinary run folders."""

from __future__ import annotations

import contextlib
import logging
import math

import pytest
import torch

from tests.conftest import make_cfg, read_metrics, read_scalars
from trainer.config.build import build_data, build_model
from trainer.data import prepare_data
from trainer.run import run
from trainer.runtime.seed import seed_everything
from trainer.training.curves import LR_TAG
from trainer.training.stacked import StackedParams
from trainer.training.stacked_backprop import StackedBackprop
from trainer.training.stacked_layers import own
from trainer.vectorized.group import Group
from trainer.vectorized.member import Member
from trainer.vectorized.runner import run_members

SETTINGS = {
    "momentum_b32": ["optimizer=momentum", "batch_size=32"],
    "adam_inverse_time": ["optimizer=adam", "scheduler=inverse_time", "scheduler.tau=20"],
    "poly_full_batch": ["optimizer=sgd", "averaging=poly", "batch_size=full"],
}
# Members of different architectures (trainer.training.stacked_layers): widths as one int and as
# per-layer lists, activations mixed, sigmoid (f(0) = 0.5) padded; with averaging, weight decay and
# clipping in the second.
SETTINGS["mixed_adam"] = ["optimizer=adam", "model.depth=2"]
SETTINGS["mixed_momentum_poly"] = ["optimizer=momentum", "averaging=poly", "optimizer.weight_decay=0.001",
                                   "grad_clip=1.0"]
# (seed, lr) of each job: members differ in both.
JOBS = {"momentum_b32": [(0, 0.01), (1, 0.05), (2, 0.02)],
        "adam_inverse_time": [(0, 0.001), (1, 0.003), (2, 0.01)],
        "poly_full_batch": [(0, 0.1), (1, 0.3), (2, 0.05)],
        "mixed_adam": [(0, 0.003), (1, 0.01), (2, 0.001), (3, 0.003)],
        "mixed_momentum_poly": [(0, 0.05), (1, 0.02), (2, 0.05)]}
# And each job's architecture, where members differ in it.
ARCHITECTURES = {
    "mixed_adam": [["model.width=16", "model.activation=sigmoid"],
                   ["model.width=[64,16]", "model.activation=tanh"],
                   ["model.width=32", "model.activation=sigmoid"],
                   ["model.width=[8,32]", "model.activation=relu"]],
    "mixed_momentum_poly": [["model.width=[16,64]", "model.activation=relu"],
                            ["model.width=[48,8]", "model.activation=sigmoid"], ["model.width=[4,4]"]]}


def job_cfgs(setting: str, epochs: int = 5) -> list:
    extra = ARCHITECTURES.get(setting, [[]] * len(JOBS[setting]))
    return [make_cfg(*SETTINGS[setting], *own, f"seed={seed}", f"optimizer.lr={lr}", f"epochs={epochs}")
            for (seed, lr), own in zip(JOBS[setting], extra, strict=True)]


def curve(run_dir, tag: str = "val/loss") -> list[float]:
    return [v for _, v in read_scalars(run_dir)[tag]]


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_member_starts_as_its_run_and_draws_its_batches(setting, tmp_path):
    cfgs = job_cfgs(setting)
    splits, prep = prepare_data(build_data(cfgs[0].data), "cpu")
    with contextlib.ExitStack() as stack:
        members = [Member.open(c, tmp_path / str(i), splits, prep, torch.device("cpu"), stack)
                   for i, c in enumerate(cfgs)]
        group = Group(members, lambda: False, "test", False)
        for k, cfg in enumerate(cfgs):  # what run() builds: seed, (data draws nothing), model
            seed_everything(cfg.seed)
            alone = build_model(cfg.model, splits.in_dim, splits.out_dim).state_dict()
            for name, stacked in group.stacked.params.items():  # its own corner of the padded stack
                assert torch.equal(stacked[(k, *own(alone[name].shape))].detach(), alone[name])
        group._start_epoch()
        for k, cfg in enumerate(cfgs):  # fit()'s first epoch order: randperm of the run's generator
            generator = torch.Generator().manual_seed(int(cfg.seed))
            assert torch.equal(group.perms[k], torch.randperm(len(splits.x_train), generator=generator))


@pytest.mark.slow
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_members_match_sequential_runs(setting, tmp_path):
    cfgs = job_cfgs(setting)
    together = run_members(cfgs, [tmp_path / f"vec{i}" for i in range(len(cfgs))])
    for i, cfg in enumerate(cfgs):
        alone = run(cfg, out_dir=tmp_path / f"seq{i}")
        mine = together[i]
        assert mine.keys() == alone.keys()
        assert mine["epochs"] == alone["epochs"] == 5 and mine["steps"] == alone["steps"]
        seq, vec = curve(tmp_path / f"seq{i}"), curve(tmp_path / f"vec{i}")
        assert len(seq) == len(vec) == 5
        for a, b in zip(seq, vec, strict=True):
            assert b == pytest.approx(a, rel=1e-3)
        assert mine["test/acc"] == pytest.approx(alone["test/acc"], abs=2 / 360)
        lrs_seq = read_scalars(tmp_path / f"seq{i}").get(LR_TAG, [])
        lrs_vec = read_scalars(tmp_path / f"vec{i}").get(LR_TAG, [])
        assert [s for s, _ in lrs_seq] == [s for s, _ in lrs_vec]
        assert [v for _, v in lrs_vec] == pytest.approx([v for _, v in lrs_seq], rel=1e-6)


def test_diverging_member_leaves_the_others_alone(tmp_path):
    base = ["optimizer=sgd", "epochs=3", "divergence_factor=null"]
    jobs = [["seed=0", "optimizer.lr=0.05"], ["seed=1", "optimizer.lr=0.1"]]
    clean = run_members([make_cfg(*base, *j) for j in jobs], [tmp_path / "a0", tmp_path / "a1"])
    blown = run_members([make_cfg(*base, *j) for j in [jobs[0], ["seed=2", "optimizer.lr=1e6"], jobs[1]]],
                        [tmp_path / "b0", tmp_path / "bad", tmp_path / "b1"])
    assert blown[1]["status"] == "diverged" and "not finite" in blown[1]["reason"]
    assert read_metrics(tmp_path / "bad")["status"] == "diverged"
    # as a run alone: no checkpoint before its first validated epoch; the others' ordinary files only
    assert sorted(p.name for p in (tmp_path / "bad" / "checkpoints").iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "b0" / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    for a, b in ((clean[0], blown[0]), (clean[1], blown[2])):
        assert b["status"] == "completed"
        for key in ("val/loss", "val/acc", "test/loss", "test/acc", "train/loss", "best_epoch"):
            assert b[key] == pytest.approx(a[key], rel=1e-5)
    assert curve(tmp_path / "b1") == pytest.approx(curve(tmp_path / "a1"), rel=1e-5)


def test_members_end_on_their_own(tmp_path):
    cfgs = [make_cfg("epochs=4", "seed=0"), make_cfg("epochs=2", "seed=1"),
            make_cfg("epochs=4", "seed=2", "max_steps=30"),
            make_cfg("epochs=4", "seed=3", "early_stopping.patience=1", "optimizer.lr=0.5")]
    out = run_members(cfgs, [tmp_path / str(i) for i in range(4)])
    assert [m["epochs"] for m in out[:3]] == [4, 2, 2]
    assert out[2]["steps"] == 30 and out[2]["stopped_by"] == "max_steps"
    assert out[3]["stopped_by"] in ("early_stopping", "epochs")
    # member 0 trained on at full speed after the others left: its curve is its own run's
    alone = run(cfgs[0], out_dir=tmp_path / "alone")
    assert out[0]["val/loss"] == pytest.approx(alone["val/loss"], rel=1e-4)
    assert len(curve(tmp_path / "1")) == 2 and math.isfinite(out[1]["test/acc"])


def test_max_members_splits_a_group_into_parts(tmp_path, caplog):
    cfgs = [make_cfg("epochs=2", f"seed={s}", "optimizer.lr=0.003") for s in range(3)]
    caplog.set_level(logging.INFO, logger="trainer.vectorized")
    parts = run_members(cfgs, [tmp_path / f"p{i}" for i in range(3)], max_members=2)
    assert "group part 2/2: 1 jobs" in caplog.text
    whole = run_members(cfgs, [tmp_path / f"w{i}" for i in range(3)])
    for a, b in zip(parts, whole, strict=True):
        assert a["status"] == b["status"] == "completed"
        assert a["val/loss"] == pytest.approx(b["val/loss"], rel=1e-5)


MORE = {  # per-member weight decay (coupled and decoupled), clipping, warm-up, plateau, EMA
    "adamw_decay": (["optimizer=adamw"], [["optimizer.weight_decay=0.1"], ["optimizer.weight_decay=0.0",
                                                                           "seed=1"]]),
    "sgd_l2_clip": (["optimizer=nesterov"], [["optimizer.weight_decay=0.001", "grad_clip=0.5"],
                                             ["seed=1", "optimizer.lr=0.05"]]),
    "plateau_warmup_ema": (["optimizer=rmsprop", "scheduler=plateau", "scheduler.patience=0",
                            "averaging=ema", "averaging.decay=0.9"],
                           [["warmup_steps=30"], ["seed=1", "scheduler.factor=0.5"]]),
}


@pytest.mark.slow
@pytest.mark.parametrize("setting", list(MORE))
def test_member_options_match_sequential_runs(setting, tmp_path):
    base, jobs = MORE[setting]
    cfgs = [make_cfg(*base, *job, "epochs=3") for job in jobs]
    together = run_members(cfgs, [tmp_path / f"vec{i}" for i in range(len(cfgs))])
    for i, cfg in enumerate(cfgs):
        alone = run(cfg, out_dir=tmp_path / f"seq{i}")
        assert together[i]["steps"] == alone["steps"]
        assert curve(tmp_path / f"vec{i}") == pytest.approx(curve(tmp_path / f"seq{i}"), rel=1e-3)
        lrs = curve(tmp_path / f"seq{i}", LR_TAG)
        assert curve(tmp_path / f"vec{i}", LR_TAG) == pytest.approx(lrs, rel=1e-6)


def test_a_bad_value_of_one_member_is_that_jobs_error_alone(tmp_path):
    from trainer.runtime.errors import ConfigError

    cfgs = [make_cfg("epochs=0"), make_cfg("epochs=1", "seed=1")]
    out = run_members(cfgs, [tmp_path / "bad", tmp_path / "ok"])
    assert isinstance(out[0], ConfigError) and "epochs=0 must be a positive whole number" in str(out[0])
    assert out[1]["status"] == "completed" and read_metrics(tmp_path / "ok")["epochs"] == 1
    assert not (tmp_path / "bad" / "metrics.json").exists()


CHAOS = ["data=spirals", "data.n_samples=300", "model.width=32", "batch_size=16", "monitor=val/loss"]


@pytest.mark.slow  # four runs of about a second
@pytest.mark.parametrize(("optimizer", "lr", "epochs", "amplified"), [
    ("adam", 0.05, 30, True),  # chaotic: its measured change was 4e-2, 400,000 times the nudge
    ("sgd", 0.01, 20, False),  # stable: measured 1e-7, the nudge itself
])
def test_a_nudge_of_1e7_to_the_initial_weights_is_amplified_only_in_a_chaotic_run(
        tmp_path, monkeypatch, optimizer, lr, epochs, amplified):
    """Why the vectorized launcher equals the basic one only on stable settings
    (docs/guides/vectorized.md): the basic launcher alone, run twice, the second time with every
    initial weight moved by 1e-7 (about what a different order of floating-point sums does). A
    chaotic run (Adam at a high rate) ends far apart, with this launcher too; a stable one stays
    within rounding."""
    import trainer.storage.setup as run_module

    cfg = [*CHAOS, f"optimizer={optimizer}", f"optimizer.lr={lr}", f"epochs={epochs}"]
    plain = run(make_cfg(*cfg), out_dir=tmp_path / "plain")

    def nudged(*args, **kwargs):
        model = build_model(*args, **kwargs)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1e-7)
        return model

    monkeypatch.setattr(run_module, "build_model", nudged)
    moved = run(make_cfg(*cfg), out_dir=tmp_path / "nudged")
    assert plain["status"] == moved["status"] == "completed"
    change = abs(moved["val/loss"] - plain["val/loss"]) / plain["val/loss"]
    if amplified:
        assert change > 1e-4, change  # over 1,000 times the nudge
    else:
        assert change < 1e-5, change


def test_a_mixed_group_is_estimated_at_its_padded_size():
    """The memory estimate and the log line take the stack's padded widths; the widest jobs first,
    so that parts beyond what fits pad the least."""
    from trainer.vectorized.runner import _padded

    cfgs = [make_cfg("model.width=16"), make_cfg("model.width=[64,8]", "model.activation=tanh"),
            make_cfg("model.width=[8,32]")]
    order, widths, note = _padded(cfgs, [0, 1, 2])
    assert order == [1, 2, 0] and widths == [64, 32]
    assert note == (", padded to the widest member: hidden widths [16, 16] [64, 8] [8, 32], "
                    "activations relu tanh")
    assert _padded(cfgs[:1], [0]) == ([0], [16, 16], "")
    same_widths = [cfgs[0], make_cfg("model.width=16", "model.activation=tanh")]
    assert _padded(same_widths, [0, 1]) == ([0, 1], [16, 16], ", activations relu tanh")  # nothing padded


def training_batches(monkeypatch, by_hand: bool = True) -> list[int]:
    """The dimensions of the batches the group's training steps feed its first layer, step by step:
    2, one (b, D) batch shared by all members; 3, each member's own rows (M, b, D)."""
    seen: list[int] = []
    if by_hand:
        real = StackedBackprop.__call__

        def spy(self, x, y):
            seen.append(x.dim())
            return real(self, x, y)
        monkeypatch.setattr(StackedBackprop, "__call__", spy)
    else:
        real_call = StackedParams.__call__

        def spy(self, x, train=True):
            if train:  # validation always shares its rows
                seen.append(x.dim())
            return real_call(self, x, train)
        monkeypatch.setattr(StackedParams, "__call__", spy)
    return seen


@pytest.mark.parametrize("backprop", ["auto", "autograd"])
def test_an_lr_sweep_shares_its_batches_and_a_seed_sweep_does_not(monkeypatch, tmp_path, backprop):
    base = ["data=gaussians", "epochs=2", f"backprop={backprop}"]
    seen = training_batches(monkeypatch, by_hand=backprop == "auto")
    run_members([make_cfg(*base, "seed=3", f"optimizer.lr={lr}") for lr in (0.01, 0.02, 0.05)],
                 [tmp_path / f"lr{i}" for i in range(3)])
    assert len(seen) == 2 * 11 and set(seen) == {2}  # 700 training rows, batches of 64
    seen.clear()
    run_members([make_cfg(*base, f"seed={s}", "optimizer.lr=0.01") for s in range(3)],
                [tmp_path / f"seed{i}" for i in range(3)])
    assert len(seen) == 2 * 11 and set(seen) == {3}


def test_members_share_once_those_with_other_batches_left(monkeypatch, tmp_path):
    """Two jobs of one seed and one of another that ends after its first epoch: the group's
    batches are each member's own in epoch 1, shared once the other seed's member has left."""
    seen = training_batches(monkeypatch)
    base = ["data=gaussians", "optimizer=sgd"]
    cfgs = [make_cfg(*base, "seed=0", "optimizer.lr=0.1", "epochs=3"),
            make_cfg(*base, "seed=1", "optimizer.lr=0.1", "epochs=1"),
            make_cfg(*base, "seed=0", "optimizer.lr=0.3", "epochs=3")]
    together = run_members(cfgs, [tmp_path / f"vec{i}" for i in range(3)])
    assert seen == [3] * 11 + [2] * 22
    for i in (0, 2):  # and the sharing members still train as their own runs
        alone = run(cfgs[i], out_dir=tmp_path / f"seq{i}")
        assert together[i]["steps"] == alone["steps"] == 33
        assert curve(tmp_path / f"vec{i}") == pytest.approx(curve(tmp_path / f"seq{i}"), rel=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["adam", "momentum"])
def test_lr_sweep_members_match_sequential_runs(optimizer, tmp_path):
    """One seed, M learning rates: the members share every batch, and each still matches its run."""
    cfgs = [make_cfg(f"optimizer={optimizer}", "seed=0", f"optimizer.lr={lr}", "epochs=4")
            for lr in (0.003, 0.01, 0.03)]
    together = run_members(cfgs, [tmp_path / f"vec{i}" for i in range(len(cfgs))])
    for i, cfg in enumerate(cfgs):
        alone = run(cfg, out_dir=tmp_path / f"seq{i}")
        assert together[i]["steps"] == alone["steps"]
        seq, vec = curve(tmp_path / f"seq{i}"), curve(tmp_path / f"vec{i}")
        assert len(seq) == len(vec) == 4
        assert vec == pytest.approx(seq, rel=1e-3)
        assert together[i]["test/acc"] == pytest.approx(alone["test/acc"], abs=2 / 360)
