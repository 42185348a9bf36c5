"""Ensembles (docs/guides/optimization.md "Ensembles"): each member's samples, SAMME's update, the
ensemble's prediction against its members' own outputs, metrics.json against trainer.eval,
TensorBoard, resume; real runs on the digits (a few epochs each)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch.nn import functional as F

from tests.conftest import cli_in_process, make_cfg, read_scalars
from trainer.config.build import build_data, build_model
from trainer.config.validate import config_dir
from trainer.data import prepare_data
from trainer.ensemble.model import Ensemble, build_predictor, disjoint_parts, padded, samme_update
from trainer.eval import evaluate_checkpoint
from trainer.run import run
from trainer.runtime.errors import ConfigError
from trainer.runtime.seed import seed_everything
from trainer.storage.checkpoint import load_checkpoint
from trainer.storage.resume import check_config
from trainer.vectorized.grouping import unsupported

BAGGING = ("ensemble=bagging", "ensemble.members=3")
BOOSTING = ("ensemble=boosting", "ensemble.rounds=3", "optimizer.lr=0.003")


@pytest.fixture(scope="module")
def bagged(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("bagging")
    return out, run(make_cfg(*BAGGING, "epochs=2"), out_dir=out)


@pytest.fixture(scope="module")
def boosted(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("boosting")
    return out, run(make_cfg(*BOOSTING, "epochs=3", "test_on=last"), out_dir=out)


def test_samme_update_on_a_hand_example():
    weights, miss = torch.full((4,), 0.25), torch.tensor([True, False, False, False])
    step = samme_update(miss, weights, n_classes=3)
    assert step.err == pytest.approx(0.25)
    assert step.alpha == pytest.approx(math.log(0.75 / 0.25) + math.log(2))  # log 6
    # w_i exp(alpha miss_i) = (1.5, 0.25, 0.25, 0.25) / 4 ... renormalized: (6, 1, 1, 1) / 9
    assert step.weights.tolist() == pytest.approx([6 / 9, 1 / 9, 1 / 9, 1 / 9])
    chance = samme_update(torch.tensor([True, True, True, False]), weights, n_classes=3)
    assert chance.err == pytest.approx(0.75) and chance.alpha == 0.0  # err >= 1 - 1/C: left out
    assert chance.weights.tolist() == pytest.approx([0.25] * 4)
    perfect = samme_update(torch.zeros(4, dtype=torch.bool), weights, n_classes=10)
    assert perfect.err == 0.0 and perfect.alpha == pytest.approx(math.log((1 - 1e-10) / 1e-10) + math.log(9))


def test_parts_are_disjoint_and_cover_the_train_split(tmp_path):
    parts = disjoint_parts(10, 3, torch.Generator().manual_seed(1))
    assert sorted(torch.cat(parts).tolist()) == list(range(10)) and [len(p) for p in parts] == [4, 3, 3]
    index, weight = padded(parts)
    assert weight.sum(1).tolist() == [4, 3, 3] and sorted(index[weight > 0].tolist()) == list(range(10))
    metrics = run(make_cfg(*BAGGING, "ensemble.split=parts", "epochs=1"), out_dir=tmp_path)
    samples = load_checkpoint(tmp_path / "checkpoints" / "last.pt")["ensemble_samples"]
    counted = samples["index"][samples["weight"] > 0]
    assert sorted(counted.tolist()) == list(range(metrics["train_samples"]))  # each sample once
    assert (samples["weight"] > 0).sum(1).tolist() == [420, 419, 419]  # 1,258 in 3 parts


def test_bootstrap_samples_are_the_seeded_draws_and_each_member_steps_on_its_own(tmp_path):
    overrides = ("ensemble=bagging", "ensemble.members=2", "epochs=1", "max_steps=1", "batch_size=16",
                 "optimizer=sgd", "optimizer.lr=0.5", "seed=3")
    run(make_cfg(*overrides), out_dir=tmp_path)
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    cfg = make_cfg(*overrides)
    splits, _ = prepare_data(build_data(cfg.data))
    n = len(splits.x_train)
    # The rule: the resamples are drawn first from the run's generator (seeded with `seed`), then
    # each member's batch order.
    generator = torch.Generator().manual_seed(3)
    drawn = torch.randint(n, (2, n), generator=generator)
    order = torch.rand(2, n, generator=generator).argsort(1)
    assert torch.equal(ckpt["ensemble_samples"]["index"], drawn)
    distinct = [len(set(row.tolist())) / n for row in drawn]
    assert all(0.6 < d < 0.66 for d in distinct)  # 1 - 1/e of the samples appear in a resample
    # One plain SGD step of each member, from the initial weights run() builds, on its own batch.
    seed_everything(3)
    members = [build_model(cfg.model, splits.in_dim, splits.out_dim) for _ in range(2)]
    for m, member in enumerate(members):
        batch = drawn[m, order[m, :16]]
        F.cross_entropy(member(splits.x_train[batch]), splits.y_train[batch]).backward()
        for name, p in member.named_parameters():
            assert torch.allclose(ckpt["model"][f"members.{m}.{name}"], p.detach() - 0.5 * p.grad, atol=1e-6)


def members_of(ckpt: dict, cfg, in_dim: int, out_dim: int) -> list[torch.nn.Module]:
    """The checkpoint's members as standalone MLPs, in eval mode."""
    out = []
    for m in range(len(ckpt["model"]["alphas"])):
        mlp = build_model(cfg.model, in_dim, out_dim)
        prefix = f"members.{m}."
        mlp.load_state_dict({k.removeprefix(prefix): v for k, v in ckpt["model"].items()
                             if k.startswith(prefix)})
        out.append(mlp.eval())
    return out


def reloaded(out: Path, name: str = "best.pt"):
    ckpt = load_checkpoint(out / "checkpoints" / name)
    cfg = OmegaConf.create(ckpt["config"])
    splits, _ = prepare_data(build_data(cfg.data), prep_state=ckpt["preprocess"], target_state=ckpt["target"])
    return ckpt, cfg, splits


@torch.no_grad()
def test_bagging_averages_the_members_probabilities_and_eval_agrees(bagged):
    out, metrics = bagged
    ckpt, cfg, splits = reloaded(out)
    members = members_of(ckpt, cfg, splits.in_dim, splits.out_dim)
    x, y = splits.x_test, splits.y_test
    mean = torch.stack([mlp(x).softmax(1) for mlp in members]).mean(0)
    ensemble = build_predictor(cfg.model, cfg.ensemble, splits.in_dim, splits.out_dim, True)
    ensemble.load_state_dict(ckpt["model"])
    assert isinstance(ensemble, Ensemble)
    assert torch.allclose(ensemble.eval()(x).exp(), mean, atol=1e-6)
    assert metrics["test/acc"] == pytest.approx((mean.argmax(1) == y).float().mean().item())
    assert metrics["test/loss"] == pytest.approx(F.nll_loss(mean.log(), y).item(), rel=1e-5)
    assert evaluate_checkpoint(ckpt)["test/acc"] == metrics["test/acc"]
    assert evaluate_checkpoint(ckpt, "val")["val/acc"] == metrics["val/acc"]
    assert len(metrics["members"]) == 3
    for mlp, row in zip(members, metrics["members"], strict=True):
        assert row["alpha"] == 1.0
        assert row["test/acc"] == pytest.approx((mlp(x).argmax(1) == y).float().mean().item())
    assert metrics["params"] == 3 * sum(p.numel() for p in members[0].parameters())


def test_tensorboard_has_the_ensemble_and_each_member(bagged):
    out, metrics = bagged
    scalars = read_scalars(out)
    for m in range(3):
        assert [step for step, _ in scalars[f"member_{m}/val/acc"]] == [1, 2]
    best = dict(scalars["val/acc"])[metrics["best_epoch"]]
    assert best == pytest.approx(metrics["val/acc"])
    assert dict(scalars["member_0/val/acc"])[metrics["best_epoch"]] == pytest.approx(
        metrics["members"][0]["val/acc"])


@torch.no_grad()
def test_boosting_alphas_and_weights_are_samme_on_the_members_and_eval_agrees(boosted):
    out, metrics = boosted
    ckpt, cfg, splits = reloaded(out, "last.pt")
    members = members_of(ckpt, cfg, splits.in_dim, splits.out_dim)
    alphas = ckpt["model"]["alphas"]
    # SAMME by hand, round after round: uniform weights, then w <- w exp(alpha miss), normalized.
    n, weights = len(splits.x_train), torch.full((len(splits.x_train),), 1 / len(splits.x_train))
    for m, mlp in enumerate(members):
        miss = (mlp(splits.x_train).argmax(1) != splits.y_train).float()
        err = (weights * miss).sum() / weights.sum()
        assert 0 < err < 0.9
        assert alphas[m].item() == pytest.approx(math.log((1 - err) / err) + math.log(9), rel=1e-5)
        weights = weights * torch.exp(alphas[m] * miss)
        weights /= weights.sum()
    assert torch.allclose(ckpt["ensemble_samples"]["weight"][0], n * weights, rtol=1e-4)
    logged = read_scalars(out)
    assert [v for _, v in logged["member_2/alpha"]] == pytest.approx([alphas[2].item()])
    # The prediction: argmax of the alpha-weighted mean of the members' probabilities.
    x, y = splits.x_test, splits.y_test
    mixed = sum(a * mlp(x).softmax(1) for a, mlp in zip(alphas, members, strict=True)) / alphas.sum()
    assert metrics["test/acc"] == pytest.approx((mixed.argmax(1) == y).float().mean().item())
    assert evaluate_checkpoint(ckpt)["test/acc"] == metrics["test/acc"]
    assert [row["alpha"] for row in metrics["members"]] == pytest.approx(alphas.tolist())


def test_bagging_resumes_where_it_stopped(tmp_path):
    straight = run(make_cfg(*BAGGING, "epochs=3"), out_dir=tmp_path / "straight")
    first = run(make_cfg(*BAGGING, "epochs=1"), out_dir=tmp_path / "resumed")
    resumed = run(make_cfg(*BAGGING, "epochs=3", "resume=true"), out_dir=tmp_path / "resumed")
    assert first["epochs"] == 1 and resumed["resume"].startswith("continued from")
    for key in ("val/acc", "val/loss", "test/acc", "train/loss", "steps", "best_epoch"):
        assert resumed[key] == straight[key], key
    a, b = (load_checkpoint(tmp_path / d / "checkpoints" / "last.pt") for d in ("straight", "resumed"))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert resumed["members"] == straight["members"]


def test_regression_bagging_is_the_mean_prediction(tmp_path):
    metrics = run(make_cfg("data=regression", *BAGGING, "epochs=1"), out_dir=tmp_path)
    ckpt, cfg, splits = reloaded(tmp_path)
    members = members_of(ckpt, cfg, splits.in_dim, splits.out_dim)
    ensemble = build_predictor(cfg.model, cfg.ensemble, splits.in_dim, splits.out_dim, False)
    ensemble.load_state_dict(ckpt["model"])
    with torch.no_grad():
        mean = torch.stack([mlp(splits.x_test) for mlp in members]).mean(0)
        assert torch.allclose(ensemble.eval()(splits.x_test), mean, atol=1e-6)
    assert evaluate_checkpoint(ckpt)["test/loss"] == pytest.approx(metrics["test/loss"])


def test_a_checkpoint_from_before_ensembles_resumes_as_one_model(tmp_path):
    now = OmegaConf.to_container(make_cfg(), resolve=True)
    before = {k: v for k, v in now.items() if k != "ensemble"}
    check_config(before, tmp_path / "last.pt", now)  # no ensemble key then: ensemble=none
    with pytest.raises(ConfigError, match="ensemble.kind: 'none' -> 'bagging'"):
        check_config(now, tmp_path / "last.pt", OmegaConf.to_container(make_cfg(*BAGGING), resolve=True))


def test_the_vectorized_launcher_runs_an_ensemble_job_on_its_own():
    resolved = OmegaConf.to_container(make_cfg(*BAGGING), resolve=True)
    assert "ensemble=bagging" in unsupported(resolved)
    assert unsupported(OmegaConf.to_container(make_cfg(), resolve=True)) is None
    # the stacked step logs no per-layer statistics: such a job runs alone, never silently without them
    stats = unsupported(OmegaConf.to_container(make_cfg("log_layer_stats=true"), resolve=True))
    assert stats is not None and "log_layer_stats" in stats


ARMS = sorted(p.stem for p in (Path(config_dir()) / "experiment" / "ensemble_arm").glob("*.yaml"))


@pytest.mark.parametrize("arm", ARMS)
def test_every_arm_of_the_ensembles_experiment_trains(tmp_path, arm):
    cfg = make_cfg("+experiment=digits_ensembles", f"+experiment/ensemble_arm={arm}", "arms.k=2",
                   "arms.epochs=1", "arms.longer.2=2")
    assert cfg.epochs == (1 if arm.startswith("bagging") else 2)
    assert cfg.ensemble.kind == {"longer": "none"}.get(arm, arm.split("_")[0])
    metrics = run(cfg, out_dir=tmp_path)
    assert metrics["status"] == "completed" and len(metrics.get("members", [0, 0])) == 2


def test_boosting_resumes_in_the_middle_of_a_round_only_with_its_epochs(tmp_path):
    straight = run(make_cfg(*BOOSTING, "epochs=6"), out_dir=tmp_path / "straight")
    # 20 updates an epoch, 2 epochs a round: max_steps ends the run after round 2's first epoch
    first = run(make_cfg(*BOOSTING, "epochs=6", "max_steps=60"), out_dir=tmp_path / "resumed")
    resumed = run(make_cfg(*BOOSTING, "epochs=6", "resume=true"), out_dir=tmp_path / "resumed")
    assert first["epochs"] == 3 and resumed["resume"].startswith("continued from")
    assert [r["alpha"] for r in resumed["members"]] == [r["alpha"] for r in straight["members"]]
    assert resumed["test/acc"] == straight["test/acc"] and resumed["val/loss"] == straight["val/loss"]
    with pytest.raises(ConfigError, match="trained 2 epochs per round"):
        run(make_cfg(*BOOSTING, "epochs=12", "resume=true"), out_dir=tmp_path / "resumed")


@pytest.mark.slow
def test_the_eval_command_reproduces_the_ensembles_test_metrics(bagged, tmp_path):
    out, metrics = bagged
    proc = cli_in_process(f"ckpt={out}", f"json={tmp_path / 'eval.json'}", module="trainer.eval")
    assert proc.returncode == 0, proc.stderr[-2000:]
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    assert evaluated["test/acc"] == metrics["test/acc"] and evaluated["test/loss"] == metrics["test/loss"]
    assert f"test/acc {metrics['test/acc']:.4f}" in proc.stdout
