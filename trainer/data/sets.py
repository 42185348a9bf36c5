"""The data sets a config can name: each class is both the schema of its `configs/data/*.yaml`
(the keys, what each may be) and that file's `_target_`: `instantiate(cfg.data)` gives an object
whose `load()` reads the data. The split and preprocessing keys are every set's (`DataSet`).

No torch or numpy at import: Hydra registers these classes before it parses the command line.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

from trainer.runtime.checks import (
    FRACTION,
    POSITIVE,
    POSITIVE_NUMBER,
    WHOLE,
    Flag,
    Number,
    OneChar,
    OneOf,
    Text,
    key,
)

TASK_CHOICES = ("auto", "classification", "regression")
PREPROCESS = ("standardize", "whiten_pca", "whiten_zca", "none")  # trainer.data.preprocess's kinds


def data_set(cls: type) -> type:
    """A data set's schema: a dataclass whose `_target_` names the class itself, as its
    configs/data/*.yaml does (`_target_: trainer.data.sets.Spirals`)."""
    cls.__annotations__ = {"_target_": "str", **cls.__dict__.get("__annotations__", {})}
    cls._target_ = f"{cls.__module__}.{cls.__qualname__}"
    return dataclass(cls)


@data_set
class DataSet:
    """What every data set has: its name, how it is split, how its inputs are preprocessed."""

    name: Any = key(Text(optional=False))
    val_fraction: Any = key(FRACTION)  # of the whole data set (or of an official train split)
    test_fraction: Any = key(FRACTION)
    split_seed: Any = key(WHOLE)  # the split is the same whatever the training seed
    preprocess: Any = key(OneOf(PREPROCESS))  # fitted on the train split only
    whiten_eps: Any = key(POSITIVE_NUMBER, 1e-5)  # added to the covariance eigenvalues

    # The task when the set fixes it; None: only the file can tell (task: auto).
    task_known: ClassVar[str | None] = None

    def load(self) -> Any:  # -> trainer.data.base.Source
        raise NotImplementedError(f"{type(self).__name__} does not say how to load its data")


@data_set
class Digits(DataSet):
    """The 8x8 handwritten digits that scikit-learn ships (1,797 images, 10 classes), no network."""

    task_known: ClassVar[str | None] = "classification"

    def load(self) -> Any:
        from trainer.data.digits import load_digits

        return load_digits()


@data_set
class Vision(DataSet):
    """A torchvision set (mnist, fashion_mnist, kmnist, cifar10) with its official splits."""

    root: Any = key(Text(), None)  # null: $TRAINER_DATA if set, else ~/.cache/trainer/data
    download: Any = key(Flag(), True)
    task_known: ClassVar[str | None] = "classification"

    def load(self) -> Any:
        from trainer.data.vision import load_vision

        return load_vision(self.name, root=self.root, download=self.download)


@data_set
class CSV(DataSet):
    """A table of numbers in a CSV file: `data=csv data.path=FILE data.target=COLUMN`."""

    target: Any = key(Text(number_ok=True), None)
    task: Any = key(OneOf(TASK_CHOICES), "auto")
    delimiter: Any = key(OneChar(words=("auto",)), "auto")
    header: Any = key(OneOf(("auto", True, False)), "auto")
    path: Any = key(Text(required="for data=csv: give the file, e.g. data=csv data.path=my_data.csv"), None)

    def load(self) -> Any:
        from trainer.data.files import load_csv

        return load_csv(self.path, target=self.target, task=self.task, delimiter=self.delimiter,
                        header=self.header)


@data_set
class NPZ(DataSet):
    """Arrays x, y (and x_val/y_val, x_test/y_test) saved with numpy.savez."""

    task: Any = key(OneOf(TASK_CHOICES), "auto")
    path: Any = key(Text(required="for data=npz: give the file, e.g. data=npz data.path=my_data.npz"), None)

    def load(self) -> Any:
        from trainer.data.files import load_npz

        return load_npz(self.path, task=self.task)


@data_set
class Synthetic(DataSet):
    """Points drawn from a known distribution, `n_samples` before the split, by the function of
    trainer.data.synthetic named as the subclass (Spirals: `spirals`); the keys a subclass adds to
    DataSet's are its arguments."""

    n_samples: Any = key(POSITIVE, 1000)
    noise: Any = key(Number(low=0, hint=" (the std of the noise)"), 0.1)
    seed: Any = key(WHOLE, 0)  # the generator's seed; by default the split seed
    task_known: ClassVar[str | None] = "classification"

    def load(self) -> Any:
        from trainer.data import synthetic

        common = {f.name for f in fields(DataSet)}
        options = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in common}
        return getattr(synthetic, type(self).__name__.lower())(**options)


@data_set
class Spirals(Synthetic):
    classes: Any = key(Number(whole=True, low=2), 2)


@data_set
class Gaussians(Synthetic):
    classes: Any = key(Number(whole=True, low=2), 3)


@data_set
class Circles(Synthetic):
    factor: Any = key(Number(low=0, high=1, low_open=True, hint=": the inner circle's radius"), 0.5)


@data_set
class XOR(Synthetic):
    """Points in [-1, 1]^2, class 1 where x1 * x2 > 0."""


@data_set
class Regression(Synthetic):
    dim: Any = key(POSITIVE, 1)
    task_known: ClassVar[str | None] = "regression"


# Each configs/data/NAME.yaml takes its schema from here (registered as schema/data/NAME).
SCHEMAS: dict[str, type[DataSet]] = {
    "digits": Digits, "mnist": Vision, "fashion_mnist": Vision, "kmnist": Vision, "cifar10": Vision,
    "csv": CSV, "npz": NPZ, "spirals": Spirals, "gaussians": Gaussians, "circles": Circles,
    "xor": XOR, "regression": Regression,
}
