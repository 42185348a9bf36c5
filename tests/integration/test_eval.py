"""`python -m trainer.eval`: on a data file other than the one a model was trained on, its
predictions file, regression in the targets' units, a folder without checkpoints."""

import numpy as np
import pytest

import trainer.eval as trainer_eval
from tests.conftest import make_cfg, write_values
from trainer.eval import evaluate_checkpoint, load
from trainer.run import run
from trainer.runtime.errors import ConfigError, DataError
from trainer.storage.checkpoint import load_checkpoint


def write_table(path, n, features, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features))
    label = (x[:, 0] + x[:, 1] > 0).astype(int)
    header = ",".join([f"f{i}" for i in range(features)] + ["label"])
    rows = [",".join([*(f"{v:.5f}" for v in row), str(c)]) for row, c in zip(x, label, strict=True)]
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_eval_on_another_file_uses_the_saved_preprocessing(tmp_path, capsys):
    train = write_table(tmp_path / "train.csv", 300, 3, seed=0)
    run(make_cfg("data=csv", f"data.path={train}", "data.target=label", "epochs=15",
                 "optimizer.lr=0.01"), tmp_path / "run")
    ckpt = tmp_path / "run" / "checkpoints" / "best.pt"
    fresh = write_table(tmp_path / "fresh.csv", 200, 3, seed=1)
    trainer_eval.main([f"ckpt={ckpt}", f"data={fresh}", "split=all"])
    out = capsys.readouterr().out
    acc = float(out.split("all/acc ")[1].split()[0])
    assert acc > 0.85  # the same rule, new samples

    wrong = write_table(tmp_path / "wrong.csv", 200, 4, seed=1)
    with pytest.raises(SystemExit) as exc:
        trainer_eval.main([f"ckpt={ckpt}", f"data={wrong}"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "4 features per sample" in err and "3 features" in err and "Traceback" not in err


def test_a_checkpoint_whose_config_names_no_targets_still_evaluates(tmp_path):
    # Checkpoints written before the configs named their `_target_`s: data by its name, model MLP.
    metrics = run(make_cfg("data=spirals", "data.n_samples=300", "epochs=2", "model.width=16"),
                  tmp_path / "run")
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    del ckpt["config"]["data"]["_target_"], ckpt["config"]["model"]["_target_"]
    got = trainer_eval.evaluate_checkpoint(ckpt, "test")
    assert got["test/loss"] == pytest.approx(metrics["test/loss"], rel=1e-5)
    ckpt["config"]["data"]["name"] = "gone"
    with pytest.raises(ConfigError, match="'gone' is not one this version knows"):
        trainer_eval.evaluate_checkpoint(ckpt, "test")


def read_csv(path):
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_predictions_csv_holds_every_row_its_split_and_the_reported_accuracy(tmp_path, capsys):
    table = write_table(tmp_path / "data.csv", 400, 3, seed=0)
    metrics = run(make_cfg("data=csv", f"data.path={table}", "data.target=label", "epochs=8",
                           "optimizer.lr=0.01"), tmp_path / "run")
    out = tmp_path / "preds.csv"
    trainer_eval.main([f"ckpt={tmp_path / 'run'}", "split=all", f"predictions={out}"])
    assert f"wrote {out}" in capsys.readouterr().out
    rows = read_csv(out)
    assert list(rows[0]) == ["split", "part", "row", "target", "prediction", "prob_0", "prob_1"]
    # every row of the file exactly once, in the run's split sizes
    assert sorted(int(r["row"]) for r in rows) == list(range(400))
    assert {r["part"] for r in rows} == {"data"}
    sizes = {s: sum(r["split"] == s for r in rows) for s in ("train", "val", "test")}
    assert sizes == {"train": 280, "val": 60, "test": 60}
    # targets are the file's labels at those rows; the test rows give the run's test/acc
    labels = np.loadtxt(table, delimiter=",", skiprows=1)[:, -1].astype(int)
    assert all(int(r["target"]) == labels[int(r["row"])] for r in rows)
    test = [r for r in rows if r["split"] == "test"]
    acc = np.mean([r["target"] == r["prediction"] for r in test])
    assert acc == pytest.approx(metrics["test/acc"], abs=1e-6)  # float32 in metrics.json
    probs = np.array([[float(r["prob_0"]), float(r["prob_1"])] for r in rows])
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    assert all(int(r["prediction"]) == int(np.argmax(p)) for r, p in zip(rows, probs, strict=True))


def test_regression_predictions_are_in_the_targets_units(tmp_path):
    metrics = run(make_cfg("data=regression", "data.n_samples=300", "epochs=4"), tmp_path / "run")
    out = tmp_path / "preds.csv"
    trainer_eval.main([f"ckpt={tmp_path / 'run'}", f"predictions={out}"])  # the test split
    rows = read_csv(out)
    assert list(rows[0])[:5] == ["split", "part", "row", "target", "prediction"]
    assert {r["split"] for r in rows} == {"test"} and len(rows) == 45
    err = np.array([float(r["prediction"]) - float(r["target"]) for r in rows])
    assert float(np.mean(err ** 2)) == pytest.approx(metrics["test/loss"], rel=1e-3)


def test_a_data_set_with_its_own_test_part_names_it(tmp_path):
    from trainer.data import Source, make_splits

    x = np.arange(40, dtype=np.float32).reshape(20, 2)
    src = Source(x=x, y=np.arange(20) % 2, task="classification", x_test=x[:6], y_test=np.arange(6) % 2)
    s = make_splits(src, val_fraction=0.25, test_fraction=0.1, seed=0)
    assert s.rows["test"][0] == "test" and list(s.rows["test"][1]) == list(range(6))
    assert s.rows["val"][0] == s.rows["train"][0] == "data"
    rows = np.concatenate([s.rows["train"][1], s.rows["val"][1]])
    assert sorted(rows) == list(range(20))
    assert np.array_equal(s.x_val.numpy(), x[s.rows["val"][1]])  # the rows named are the rows held


def test_regression_losses_are_in_original_units_and_eval_reproduces_them(cfg_factory, tmp_path):
    # y in the thousands: standardized for training, reported as MSE in its own units.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 2))
    y = 1000 + 300 * np.sin(x[:, 0]) + 5 * rng.normal(size=300)
    path = write_values(tmp_path / "t.csv", np.c_[x, y])
    metrics = run(cfg_factory("data=csv", f"data.path={path}", "data.task=regression", "epochs=40",
                              "model.width=32"), out_dir=tmp_path / "run")
    assert 20 < metrics["test/loss"] < 0.2 * y.var()  # learnt, far better than the mean's MSE
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    assert ckpt["target"]["kind"] == "standardize" and 900 < float(ckpt["target"]["mean"]) < 1100
    again = evaluate_checkpoint(load(tmp_path / "run"), "test")  # a run folder: its best.pt
    assert again["test/loss"] == pytest.approx(metrics["test/loss"], rel=1e-5)


def test_eval_of_a_folder_without_checkpoints_explains(tmp_path):
    with pytest.raises(DataError, match="folder without checkpoints/best.pt"):
        load(tmp_path)
