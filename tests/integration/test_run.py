"""`run(cfg)` in-process on the embedded digits: metrics, files and TensorBoard events."""

import pytest
import torch

from tests.conftest import read_metrics, read_scalars
from trainer.logs.dashboard import FINAL
from trainer.run import run
from trainer.storage.checkpoint import load_checkpoint
from trainer.training.curves import LR_TAG, SPEED_TAG


def test_run_trains_and_writes_everything(cfg_factory, tmp_path):
    cfg = cfg_factory("epochs=6", "log_every_n_steps=1")
    metrics = run(cfg, out_dir=tmp_path)
    assert metrics == read_metrics(tmp_path)
    assert metrics["status"] == "completed"
    assert metrics["epochs"] == 6
    n_train = 1797 - round(0.15 * 1797) - round(0.15 / 0.85 * (1797 - round(0.15 * 1797)))
    assert metrics["steps"] == 6 * -(-n_train // 64)
    assert metrics["params"] == 64 * 128 + 128 + 128 * 128 + 128 + 128 * 10 + 10
    assert metrics["val/acc"] > 0.9 and metrics["test/acc"] > 0.9  # chance is 0.1
    for key in ("val/loss", "val/acc", "test/loss", "test/acc"):
        assert isinstance(metrics[key], float)

    scalars = read_scalars(tmp_path)
    for tag in ("train/loss", "train/acc", "val/loss", "val/acc", LR_TAG, SPEED_TAG,
                f"{FINAL}test/loss", f"{FINAL}test/acc", f"{FINAL}best/val_loss", f"{FINAL}best/val_acc"):
        assert tag in scalars, tag
    train_loss = [v for _, v in scalars["train/loss"]]
    assert [s for s, _ in scalars["train/loss"]] == list(range(1, 7))
    assert train_loss[-1] < 0.5 * train_loss[0]
    assert len(scalars[LR_TAG]) == metrics["steps"]
    assert scalars[f"{FINAL}test/acc"][0][1] == pytest.approx(metrics["test/acc"])

    ckpt = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert ckpt["fit"]["epoch"] == 6 and ckpt["fit"]["step"] == metrics["steps"]
    assert ckpt["config"]["optimizer"]["_target_"] == "torch.optim.Adam"
    assert set(ckpt["preprocess"]) == {"kind", "mean", "std"}
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert best["fit"]["best_epoch"] == metrics["best_epoch"]


def test_hparams_written_in_run_dir(cfg_factory, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    run(cfg_factory("epochs=1", "optimizer.lr=0.003"), out_dir=tmp_path)
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")
    session = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hp = session.session_start_info.hparams
    assert hp["optimizer.lr"].number_value == pytest.approx(0.003)
    assert hp["model.activation"].string_value == "relu"
    # No experiment summary: TensorBoard computes one from the runs (and a sweep writes its own).
    assert "_hparams_/experiment" not in content
    assert set(acc.Tags()["tensors"]) >= {"config/text_summary", "command/text_summary",
                                          "custom_scalars__config__"}


def test_test_on_best_uses_best_weights(cfg_factory, tmp_path):
    metrics = run(cfg_factory("epochs=4", "test_on=best"), out_dir=tmp_path)
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert best["fit"]["epoch"] == metrics["best_epoch"]
    model_keys = set(best["model"])
    assert model_keys == set(load_checkpoint(tmp_path / "checkpoints" / "last.pt")["model"])


def test_same_seed_same_result(cfg_factory, tmp_path):
    a = run(cfg_factory("epochs=2", "seed=7"), out_dir=tmp_path / "a")
    b = run(cfg_factory("epochs=2", "seed=7"), out_dir=tmp_path / "b")
    c = run(cfg_factory("epochs=2", "seed=8"), out_dir=tmp_path / "c")
    assert a["val/loss"] == b["val/loss"] != c["val/loss"]


def test_full_batch_is_one_update_per_epoch(cfg_factory, tmp_path):
    metrics = run(cfg_factory("epochs=3", "batch_size=full", "optimizer=sgd"), out_dir=tmp_path)
    assert metrics["steps"] == 3


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda(cfg_factory, tmp_path):
    metrics = run(cfg_factory("epochs=2", "device=cuda"), out_dir=tmp_path)
    assert metrics["device"].startswith("cuda") and metrics["val/acc"] > 0.5
