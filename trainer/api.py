"""`Trainer`: the command line's runs from Python, on a config's data or on arrays in memory.

    from trainer import Trainer
    result = Trainer("optimizer=adam", "epochs=20").fit(X, y)   # numpy arrays or pandas objects
    result.predict(X_new), result.predict_proba(X_new), result.metrics, result.run_dir

The arguments are the command line's `key=value` overrides, composed from the same configs and
checked by the same code (`trainer.config.overrides`, `trainer.config.validate`), so a mistake raises the
CLI's one-paragraph message as a `trainer.runtime.errors.ConfigError`. Arrays are saved as the run's
`data.npz` and trained as `data=npz`: the split, the standardization with train statistics and
the checkpoints are the CLI's, and `python -m trainer.eval ckpt=RUN_DIR` works on the folder.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainer.runtime.errors import ConfigError

log = logging.getLogger("trainer")


def compose_config(overrides: list[str]) -> Any:
    """The configs composed with `overrides`, as `python -m trainer OVERRIDES` composes them."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from trainer.config.overrides import check_override_keys
    from trainer.config.validate import config_dir

    check_override_keys(overrides)  # the CLI's "is not a config key; did you mean ..."
    try:
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            return compose(config_name="config", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"the overrides {overrides} do not compose: {first}") from None


def as_array(values: Any, name: str) -> np.ndarray:
    """A numpy array of a numpy array, list, or pandas DataFrame/Series."""
    array = np.array(values.to_numpy() if hasattr(values, "to_numpy") else values)  # a writable copy
    if array.dtype == object and name.startswith("X"):
        raise ConfigError(f"{name} holds non-numeric values (dtype object); pass numbers, e.g. "
                          "encode text columns first")
    return array


def encode_labels(y: np.ndarray) -> tuple[np.ndarray, list | None]:
    """Class labels that are not 0..K-1 integers (strings, or integers like 3 and 7) as codes 0..K-1
    with the labels they stand for; floats and 0..K-1 integers as they are."""
    if y.ndim != 1 or y.dtype.kind == "f":
        return y, None
    classes = np.unique(y)
    if y.dtype.kind in "iu" and classes.min() >= 0 and classes.max() == len(classes) - 1:
        return y, None
    return np.searchsorted(classes, y), classes.tolist()


@contextmanager
def console_log(verbose: bool) -> Iterator[None]:
    """The run's log lines on stderr while it trains, unless the program set up logging itself."""
    if not verbose or logging.getLogger().handlers or log.handlers:
        yield
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    level = log.level
    log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


@dataclass
class FitResult:
    """A finished run: its folder, its metrics.json, and the chosen weights (best.pt) as a model."""

    run_dir: Path
    metrics: dict[str, Any]
    model: Any  # torch.nn.Module in eval mode, the weights chosen on validation
    classes: list | None = None  # the labels of classes 0..K-1 when they were not 0..K-1 themselves
    _prep: Any = None
    _target: Any = None

    @property
    def classification(self) -> bool:
        return "val/acc" in self.metrics

    def _outputs(self, X: Any) -> Any:
        import torch

        x = self._prep(torch.as_tensor(as_array(X, "X"), dtype=torch.float32))  # statistics on the CPU
        with torch.no_grad():
            return self.model(x.to(next(self.model.parameters()).device)).float().cpu()

    def predict(self, X: Any) -> np.ndarray:
        """Classes (as the labels given to fit) or regression values in the targets' units."""
        out = self._outputs(X)
        if not self.classification:
            pred = self._target.inverse(out).numpy()
            return pred[:, 0] if pred.shape[1] == 1 else pred
        codes = out.argmax(dim=1).numpy()
        return np.asarray(self.classes)[codes] if self.classes is not None else codes

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, (N, K), columns in the order of `classes` (or 0..K-1)."""
        if not self.classification:
            raise ConfigError("predict_proba is for classification; this run is a regression: use predict")
        return self._outputs(X).softmax(dim=1).numpy()


class Trainer:
    """A run configured like the command line: `Trainer("optimizer=sgd", "epochs=5")`."""

    def __init__(self, *overrides: str, out_dir: str | Path | None = None, verbose: bool = True) -> None:
        self.overrides, self.out_dir, self.verbose = list(overrides), out_dir, verbose
        self.config = compose_config(self.overrides)  # a mistake fails here, before any data

    def fit(self, X: Any = None, y: Any = None, *, X_val: Any = None, y_val: Any = None,
            X_test: Any = None, y_test: Any = None) -> FitResult:
        """Train on the config's data (no arrays) or on X, y (and optional own val/test splits);
        return the result. The run's files go to `out_dir`, or a new temporary folder."""
        from trainer.run import run

        out = Path(self.out_dir) if self.out_dir is not None else Path(tempfile.mkdtemp(prefix="trainer-"))
        cfg, classes, written = self.config, None, None
        if X is not None or y is not None:
            if X is None or y is None:
                raise ConfigError("fit takes both X and y (or neither, to train on the config's data=)")
            if any(o.startswith("data=") for o in self.overrides):
                raise ConfigError("pass arrays or choose data= in the overrides, not both")
            arrays = {"x": as_array(X, "X"), "y": as_array(y, "y")}
            arrays["y"], classes = encode_labels(arrays["y"])
            for name, value in (("x_val", X_val), ("y_val", y_val), ("x_test", X_test), ("y_test", y_test)):
                if value is not None:
                    arrays[name] = as_array(value, name)
                    if name.startswith("y") and classes is not None:
                        arrays[name] = np.searchsorted(classes, arrays[name])
            out.mkdir(parents=True, exist_ok=True)
            written = out / "data.npz"
            np.savez(written, **arrays)
            cfg = compose_config([*self.overrides, "data=npz", f"data.path={written}"])
        try:
            with console_log(self.verbose):
                metrics = run(cfg, out)
        except BaseException:
            if written is not None and not (out / "metrics.json").exists():
                written.unlink(missing_ok=True)
            raise
        if metrics["status"] != "completed":
            log.warning("the run ended %s: %s", metrics["status"], metrics.get("reason", ""))
        return load_result(out, metrics, classes)


def load_result(out: Path, metrics: dict[str, Any], classes: list | None) -> FitResult:
    """The result of the run in `out`: its best.pt as a model, with the saved preprocessing."""
    from omegaconf import OmegaConf

    from trainer.data import load_preprocessor
    from trainer.data.targets import TargetScaler
    from trainer.eval import load_model, with_targets
    from trainer.storage.checkpoint import load_checkpoint

    found = [p for p in (out / "checkpoints" / n for n in ("best.pt", "last.pt")) if p.is_file()]
    if not found:  # e.g. diverged in its first epoch: nothing to predict with
        raise ConfigError(f"the run in {out} ended {metrics['status']} before writing a checkpoint "
                          f"({metrics.get('reason', '')}); change the config and fit again")
    ckpt = load_checkpoint(found[0])
    cfg = with_targets(OmegaConf.create(ckpt["config"]))
    model = load_model(ckpt, cfg, "val/acc" in metrics, str(cfg.get("device", "auto")))
    return FitResult(out, metrics, model, classes, load_preprocessor(ckpt["preprocess"]),
                     TargetScaler.from_state_dict(ckpt.get("target")))
