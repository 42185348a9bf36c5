"""`python -m trainer.eval` on a data file other than the one a model was trained on."""

import numpy as np
import pytest

import trainer.eval as trainer_eval
from tests.conftest import make_cfg
from trainer.checkpoint import load_checkpoint
from trainer.errors import ConfigError
from trainer.run import run


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
