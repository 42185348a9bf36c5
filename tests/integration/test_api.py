"""trainer.Trainer: the command line's run from Python, on arrays and DataFrames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trainer import Trainer
from trainer.runtime.errors import ConfigError


def blobs(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(size=(n, 4)) + 3 * np.eye(3, 4)[y]  # class k shifted along feature k
    return x, y


def test_fit_on_numpy_arrays_returns_a_model_that_predicts(tmp_path):
    x, y = blobs()
    result = Trainer("epochs=10", "progress=false", out_dir=tmp_path / "run", verbose=False).fit(x, y)
    assert result.run_dir == tmp_path / "run" and (result.run_dir / "metrics.json").is_file()
    assert result.metrics["status"] == "completed" and result.metrics["test/acc"] > 0.9
    pred = result.predict(x)
    assert pred.shape == (300,) and np.mean(pred == y) > 0.9
    proba = result.predict_proba(x[:7])
    assert proba.shape == (7, 3) and np.allclose(proba.sum(1), 1, atol=1e-5)
    assert list(proba.argmax(1)) == list(pred[:7])
    # the test split's accuracy recomputed from predict: the same weights as metrics.json's test/acc
    from trainer.eval import prediction_table, rebuild
    from trainer.storage.checkpoint import load_checkpoint

    model, splits, _ = rebuild(load_checkpoint(result.run_dir / "checkpoints" / "best.pt"))
    header, rows = prediction_table(model, splits, "test")
    test_rows = [r[2] for r in rows]
    assert np.mean(result.predict(x[test_rows]) == y[test_rows]) == pytest.approx(
        result.metrics["test/acc"], abs=1e-6)


def test_fit_on_a_dataframe_with_string_labels(tmp_path):
    x, y = blobs(seed=1)
    frame = pd.DataFrame(x, columns=["a", "b", "c", "d"])
    labels = pd.Series(np.array(["cat", "dog", "emu"])[y])
    trainer = Trainer("epochs=10", "progress=false", out_dir=tmp_path / "run", verbose=False)
    result = trainer.fit(frame, labels)
    assert result.classes == ["cat", "dog", "emu"]
    assert np.mean(result.predict(frame) == labels.to_numpy()) > 0.9


def test_regression_predicts_in_the_targets_units(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2))
    y = 1000 + 50 * x[:, 0] - 20 * x[:, 1]  # far from standardized
    result = Trainer("epochs=30", "progress=false", "optimizer.lr=0.01", out_dir=tmp_path / "run",
                     verbose=False).fit(x, y)
    pred = result.predict(x)
    assert pred.shape == (400,) and np.sqrt(np.mean((pred - y) ** 2)) < 10  # targets' std is ~54
    with pytest.raises(ConfigError, match="use predict"):
        result.predict_proba(x)


def test_mistakes_are_the_command_lines_messages():
    with pytest.raises(ConfigError, match="did you mean epochs"):
        Trainer("epoch=3")
    with pytest.raises(ConfigError, match="do not compose"):
        Trainer("optimizer=adamm")
    with pytest.raises(ConfigError, match="both X and y"):
        Trainer("epochs=1").fit(np.zeros((4, 2)))


def test_no_folder_given_means_a_new_temporary_one_and_nothing_in_the_current_folder(tmp_path, monkeypatch,
                                                                                      capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("logging.root.handlers", [])  # as in a notebook: logging not set up (pytest sets it)
    x, y = blobs(120)
    result = Trainer("epochs=2", "progress=false").fit(x, y)
    assert result.run_dir.parent != tmp_path and (result.run_dir / "checkpoints" / "best.pt").is_file()
    assert list(tmp_path.iterdir()) == []
    assert "epoch 2/2" in capsys.readouterr().err  # verbose: the epoch lines, as the CLI shows them


def test_run_without_out_dir_writes_a_new_outputs_folder(tmp_path, monkeypatch):
    from tests.conftest import make_cfg
    from trainer.run import run

    monkeypatch.chdir(tmp_path)
    run(make_cfg("data=gaussians", "epochs=1"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outputs"]
    (run_dir,) = list((tmp_path / "outputs").glob("*/*"))
    assert (run_dir / "metrics.json").is_file()
