"""torchvision image sets, flattened for the MLP, read straight into tensors and cached."""

from __future__ import annotations

import logging
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import torch

from trainer.data.base import Source
from trainer.runtime.errors import DataError
from trainer.runtime.files import atomic_write

log = logging.getLogger(__name__)

# data.name -> torchvision.datasets class name
VISION = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "kmnist": "KMNIST", "cifar10": "CIFAR10"}
CACHE_VERSION = 1  # bump when the cached layout changes, so old caches are rebuilt
DOWNLOAD_TIMEOUT_S = 60  # torchvision's urlopen has no timeout; do not hang on a dead network


def default_root() -> Path:
    """$TRAINER_DATA, else ~/.cache/trainer/data."""
    return Path(os.environ.get("TRAINER_DATA") or "~/.cache/trainer/data").expanduser()


def expected_files(cls: type, root: Path) -> tuple[Path, list[str]]:
    """The folder torchvision reads `cls` from and the file names it expects there."""
    if hasattr(cls, "resources"):  # the MNIST family: uncompressed IDX files in ROOT/CLASS/raw
        return root / cls.__name__ / "raw", [Path(url).name.removesuffix(".gz") for url, _ in cls.resources]
    names = [name for name, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    return root / cls.base_folder, names


def _read(name: str, root: Path, download: bool) -> dict[str, torch.Tensor]:
    """Read the train and test splits with torchvision: (N, D) uint8 pixels and int64 labels."""
    import torchvision.datasets

    cls = getattr(torchvision.datasets, VISION[name])
    folder, files = expected_files(cls, root)
    present = all((folder / f).is_file() for f in files)
    # The folders a failed download would leave behind (empty, or with partial files): only those
    # that do not exist yet, outermost first, so that a failure removes exactly what it made.
    created = [p for p in (*reversed(folder.relative_to(root).parents), folder.relative_to(root))
               if not (root / p).exists()]
    made_root = not root.exists()
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        sets = [cls(str(root), train=train, download=download and not present) for train in (True, False)]
    except Exception as exc:  # torchvision raises RuntimeError, URLError, OSError, ValueError ...
        if made_root:
            shutil.rmtree(root, ignore_errors=True)
        elif created:
            shutil.rmtree(root / created[0], ignore_errors=True)
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        if present:
            raise DataError(f"data set {name!r}: the files in {folder} could not be read ({reason}); "
                            "delete them to download them again") from exc
        how = f"the download failed ({reason})" if download else "data.download=false"
        raise DataError(
            f"data set {name!r} is not in {folder} and {how}. Expected the files {files} there. "
            "Run once with a network connection (data.download=true), or copy the files into that "
            "folder; data.root=DIR or the TRAINER_DATA environment variable choose another root."
        ) from exc
    finally:
        socket.setdefaulttimeout(previous)
    out = {}
    for split, ds in zip(("", "_test"), sets, strict=True):
        data = ds.data if isinstance(ds.data, torch.Tensor) else torch.from_numpy(ds.data)
        out["x" + split] = data.reshape(len(data), -1).contiguous()  # (N, H*W*C) uint8
        out["y" + split] = torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)
    return out


def load_vision(name: str, root: str | None = None, download: bool = True) -> Source:
    """Official train and test splits of a torchvision set; pixels uint8, scaled to [0, 1] later."""
    folder = Path(root).expanduser() if root else default_root()
    cache = folder / "prepared" / f"{name}.pt"
    arrays = None
    if cache.is_file():
        try:
            arrays = torch.load(cache, map_location="cpu", weights_only=True, mmap=True)
        except Exception as exc:  # a damaged cache is rebuilt from the raw files
            log.warning("ignoring the unreadable cache %s (%s)", cache, exc)
        if arrays is not None and arrays.get("version") != CACHE_VERSION:
            arrays = None
    if arrays is None:
        arrays = {**_read(name, folder, download), "version": CACHE_VERSION}
        try:
            atomic_write(cache, lambda f: torch.save(arrays, f))
        except OSError as exc:  # a read-only data folder still trains, just without the cache
            log.warning("could not cache %s in %s (%s)", name, cache, exc)
    return Source(x=arrays["x"].numpy(), y=arrays["y"].numpy(), task="classification",
                  x_test=arrays["x_test"].numpy(), y_test=arrays["y_test"].numpy(), x_scale=1 / 255)
