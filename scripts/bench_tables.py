"""Small tables with the trainer's defaults against scikit-learn's MLPClassifier and MLPRegressor.

    python scripts/bench_tables.py [--seeds 3] [--output FILE] [--sets iris wine ...] [key=value ...]

Each of scikit-learn's bundled tables (breast cancer, wine, iris: classification; diabetes:
regression; no network) is written to a CSV file and trained as a user would,
`python -m trainer data=csv data.path=FILE` with the defaults (plus any `key=value` overrides),
in-process. scikit-learn's MLP, with its defaults behind a StandardScaler, trains on the same train
split and is scored on the same test split. Per seed of the model (the split stays fixed),
test accuracy (classification) or test mean squared error in the target's units (regression);
the table gives the median and the range over seeds. Writes a new Markdown file (default
outputs/bench/tables-DATE-TIME.md) and prints it.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hydra import compose, initialize_config_dir  # noqa: E402

from trainer.config.validate import config_dir  # noqa: E402
from trainer.data import load_source, make_splits  # noqa: E402
from trainer.run import run  # noqa: E402

SETS = ("breast_cancer", "wine", "iris", "diabetes")


def write_csv(name: str, folder: Path) -> Path:
    """scikit-learn's bundled table `name` as a CSV file with a header row, target last."""
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, f"load_{name}")()
    path = folder / f"{name}.csv"
    header = ",".join([f"x{i}" for i in range(bunch.data.shape[1])] + ["target"])
    np.savetxt(path, np.c_[bunch.data, bunch.target], delimiter=",", header=header, comments="",
               fmt="%.10g")
    return path


def sklearn_score(data_cfg, seed: int) -> tuple[float, str]:
    """scikit-learn's MLP (defaults, standardized inputs) on the trainer's train split, scored on its
    test split: (accuracy or MSE, task)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    source = load_source("csv", path=data_cfg.path, task=data_cfg.task)
    s = make_splits(source, data_cfg.val_fraction, data_cfg.test_fraction, data_cfg.split_seed)
    x_train, y_train = s.x_train.numpy(), s.y_train.numpy()
    x_test, y_test = s.x_test.numpy(), s.y_test.numpy()
    mlp = MLPClassifier if s.task == "classification" else MLPRegressor
    model = make_pipeline(StandardScaler(), mlp(random_state=seed))
    with warnings.catch_warnings():  # its 200 iterations often stop short of convergence
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x_train, y_train)
    pred = model.predict(x_test)
    if s.task == "classification":
        return float((pred == y_test).mean()), s.task
    return float(((pred - y_test) ** 2).mean()), s.task


def trainer_score(path: Path, seed: int, overrides: list[str], out: Path) -> tuple[float, float]:
    """The trainer with its defaults on the CSV: (test accuracy or MSE, seconds)."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["data=csv", f"data.path={path}", f"seed={seed}",
                                                       "progress=false", *overrides])
    t0 = time.perf_counter()
    metrics = run(cfg, out_dir=out)
    seconds = time.perf_counter() - t0
    return metrics["test/acc"] if "test/acc" in metrics else metrics["test/loss"], seconds


def cell(values: list[float], digits: int) -> str:
    return f"{statistics.median(values):,.{digits}f} ({min(values):,.{digits}f}-{max(values):,.{digits}f})"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("overrides", nargs="*", help="trainer overrides, e.g. epochs=100")
    p.add_argument("--seeds", type=int, default=3, help="model seeds per table; medians are reported")
    p.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    p.add_argument("--output", type=Path, default=None,
                   help="the Markdown table (default: outputs/bench/tables-DATE-TIME.md)")
    args = p.parse_args(argv)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    output = args.output or Path("outputs", "bench", f"tables-{stamp}.md")
    logging.basicConfig(level=logging.WARNING)
    lines = ["| table | task | metric | trainer | scikit-learn MLP | trainer s/run |",
             "|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory(prefix="trainer-tables-") as tmp:
        for name in args.sets:
            path = write_csv(name, Path(tmp))
            with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
                data_cfg = compose(config_name="config", overrides=["data=csv", f"data.path={path}",
                                                                    *args.overrides]).data
            ours, theirs, seconds = [], [], []
            for seed in range(args.seeds):
                value, s = trainer_score(path, seed, args.overrides, Path(tmp, f"{name}-{seed}"))
                ours.append(value)
                seconds.append(s)
                value, task = sklearn_score(data_cfg, seed)
                theirs.append(value)
            metric, digits = ("test accuracy", 3) if task == "classification" else ("test MSE", 0)
            lines.append(f"| {name} | {task} | {metric} | {cell(ours, digits)} | {cell(theirs, digits)} "
                         f"| {statistics.median(seconds):.1f} |")
            print(lines[-1], flush=True)
    text = "\n".join([f"Median (min-max) over {args.seeds} model seeds, same split; trainer overrides: "
                      f"{' '.join(args.overrides) or 'none (defaults)'}.", "", *lines, ""])
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    print(f"\n{text}\nwritten to {output}")


if __name__ == "__main__":
    main()
