"""torchvision image sets read from IDX files written here, in torchvision's raw layout (no network)."""

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import read_metrics
from trainer.data import load_source, make_splits
from trainer.data.vision import default_root
from trainer.run import run
from trainer.runtime.errors import DataError

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte")
FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "kmnist": "KMNIST"}


def write_idx(path, array: np.ndarray) -> None:
    """An IDX file as LeCun's MNIST files are: magic 0x08 (uint8) and ndim, big-endian sizes, bytes."""
    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root, name="mnist", n_train=60, n_test=20, seed=0) -> dict[str, np.ndarray]:
    """Small MNIST-layout files (ROOT/CLASS/raw/, uncompressed, as torchvision reads them)."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, size=(n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, size=(n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(n_test) % 10,
    }
    raw = root / FOLDERS[name] / "raw"
    raw.mkdir(parents=True)
    for file, a in arrays.items():
        write_idx(raw / file, a)
    return arrays


@pytest.mark.parametrize("name", sorted(FOLDERS))
def test_mnist_family_read_through_torchvision(tmp_path, name):
    arrays = write_mnist(tmp_path, name)
    src = load_source(name, root=str(tmp_path), download=False)
    assert src.task == "classification" and src.x.dtype == np.uint8 and src.x.shape == (60, 784)
    assert np.array_equal(src.x, arrays["train-images-idx3-ubyte"].reshape(60, -1))
    assert np.array_equal(src.y, arrays["train-labels-idx1-ubyte"])
    assert np.array_equal(src.x_test, arrays["t10k-images-idx3-ubyte"].reshape(20, -1))
    assert (tmp_path / "prepared" / f"{name}.pt").is_file()
    # The official test split is the test split; validation comes out of train; pixels in [0, 1].
    s = make_splits(src, val_fraction=0.1, test_fraction=0.0, seed=0)
    assert s.sizes() == {"train": 54, "val": 6, "test": 20} and s.num_classes == 10
    assert s.x_train.dtype == torch.float32 and 0 <= s.x_train.min() and s.x_train.max() <= 1
    assert torch.allclose(s.x_test * 255, torch.as_tensor(src.x_test, dtype=torch.float32))


def test_cache_makes_the_second_load_skip_parsing(tmp_path):
    write_mnist(tmp_path)
    first = load_source("mnist", root=str(tmp_path), download=False)
    cache = tmp_path / "prepared" / "mnist.pt"
    stamp = cache.stat().st_mtime_ns
    for file in IDX_FILES:  # without the raw files only the cache can answer
        (tmp_path / "MNIST" / "raw" / file).unlink()
    second = load_source("mnist", root=str(tmp_path), download=False)
    assert cache.stat().st_mtime_ns == stamp
    for key in ("x", "y", "x_test", "y_test"):
        assert np.array_equal(getattr(first, key), getattr(second, key))
    assert not list((tmp_path / "prepared").glob("*.tmp"))  # written atomically


def test_damaged_cache_is_rebuilt(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "prepared").mkdir()
    (tmp_path / "prepared" / "mnist.pt").write_bytes(b"not a torch file")
    assert load_source("mnist", root=str(tmp_path), download=False).x.shape == (60, 784)
    assert torch.load(tmp_path / "prepared" / "mnist.pt", weights_only=True)["x"].shape == (60, 784)


@pytest.mark.parametrize("name,folder,file", [
    ("mnist", "MNIST/raw", "train-images-idx3-ubyte"),
    ("kmnist", "KMNIST/raw", "t10k-labels-idx1-ubyte"),
    ("cifar10", "cifar-10-batches-py", "data_batch_1"),
])
def test_missing_files_name_the_folder_and_files(tmp_path, name, folder, file):
    with pytest.raises(DataError) as err:
        load_source(name, root=str(tmp_path), download=False)
    message = str(err.value)
    assert str(tmp_path / folder) in message and file in message and "data.download" in message


def test_unreadable_files_are_a_data_error(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08")
    with pytest.raises(DataError, match="could not be read"):
        load_source("mnist", root=str(tmp_path), download=False)


def test_default_root_and_environment_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("TRAINER_DATA", raising=False)
    assert str(default_root()).endswith(".cache/trainer/data")
    monkeypatch.setenv("TRAINER_DATA", str(tmp_path))
    assert default_root() == tmp_path


def test_mnist_run_from_trainer_data(cfg_factory, tmp_path, monkeypatch):
    write_mnist(tmp_path / "data")
    monkeypatch.setenv("TRAINER_DATA", str(tmp_path / "data"))
    metrics = run(cfg_factory("data=mnist", "data.download=false", "epochs=2", "model.width=16",
                              "batch_size=16"), out_dir=tmp_path / "run")
    assert metrics == read_metrics(tmp_path / "run")
    assert metrics["steps"] == 2 * 4  # 54 training images in batches of 16
    assert metrics["params"] == 784 * 16 + 16 + 16 * 16 + 16 + 16 * 10 + 10


def test_cifar10_read_through_torchvision(tmp_path, monkeypatch):
    """CIFAR-10's pickled batches; only torchvision's md5 check of the real files is bypassed."""
    import pickle

    import torchvision.datasets.cifar

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batches[name] = {"data": rng.integers(0, 256, size=(4, 3072), dtype=np.uint8),
                         "labels": list(rng.permutation(10)[:4])}
        (folder / name).write_bytes(pickle.dumps(batches[name]))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [str(i) for i in range(10)]}))
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity",
                        lambda path, md5=None: Path(path).is_file())
    src = load_source("cifar10", root=str(tmp_path), download=False)
    assert src.x.shape == (20, 3072) and src.x_test.shape == (4, 3072) and src.x.dtype == np.uint8
    first = batches["data_batch_1"]["data"][0].reshape(3, 32, 32).transpose(1, 2, 0).reshape(-1)
    assert np.array_equal(src.x[0], first)  # channels last, as torchvision's .data holds them
    assert list(src.y[:4]) == batches["data_batch_1"]["labels"]


def test_offline_download_leaves_no_folders(tmp_path):
    root = tmp_path / "data"
    with pytest.raises(DataError, match="data.download=false"):
        load_source("mnist", root=str(root), download=False)
    assert not (root / "MNIST").exists()
