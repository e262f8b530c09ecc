"""Image datasets as plain tensors: ``images`` float32 (N, C, H, W) in [0, 1] and ``labels`` int64 (N,).

=============  =========  ================================================================================
name           shape      source
=============  =========  ================================================================================
digits         (1, 8, 8)  scikit-learn's bundled 8x8 digits (1797 images, offline); values 0..16 / 16
mnist          (1, 28,28) torchvision ``MNIST`` under ROOT/MNIST/raw/
fashion-mnist  (1, 28,28) torchvision ``FashionMNIST`` under ROOT/FashionMNIST/raw/
cifar10        (3, 32,32) torchvision ``CIFAR10`` under ROOT/cifar-10-batches-py/
=============  =========  ================================================================================

ROOT is ``root`` if given, else ``dlcourse.data.paths.data_root()`` (``$DLCOURSE_DATA``). The torchvision sets are
downloaded there on first use; without a network a `DataMissingError` says which files to fetch, from where, and
into which folder. For MNIST and Fashion-MNIST, gzip files placed in the raw folder by hand are unpacked for
torchvision (whose own check would reject recompressed copies by their md5).

The digits split is fixed and needs no randomness at load time: a permutation of the 1797 indices by
``numpy.random.RandomState(0)`` (a legacy generator whose stream NumPy promises never to change); its first
1500 indices are "train", the last 297 "test". Both splits keep the permuted order, so ``limit=n`` gives a
class-mixed subset.

Models usually work in [-1, 1]: `to_model_range` and `from_model_range` convert (x -> 2x - 1 and back).
"""

from __future__ import annotations

import gzip
import os
import pathlib
import shutil
import tempfile
from urllib.error import URLError

import numpy as np
import torch

from ..errors import ConfigError, DataMissingError
from .paths import data_root

__all__ = [
    "IMAGE_SHAPES",
    "IMAGE_DATASETS",
    "DIGITS_SPLIT_SEED",
    "DIGITS_TRAIN_SIZE",
    "load_images",
    "to_model_range",
    "from_model_range",
]

IMAGE_SHAPES: dict[str, tuple[int, int, int]] = {
    "digits": (1, 8, 8),
    "mnist": (1, 28, 28),
    "fashion-mnist": (1, 28, 28),
    "cifar10": (3, 32, 32),
}
IMAGE_DATASETS = tuple(IMAGE_SHAPES)

DIGITS_SPLIT_SEED = 0
DIGITS_TRAIN_SIZE = 1500  # of 1797; the remaining 297 are the test split

_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

# Where each torchvision set comes from and where torchvision looks for it (a folder relative to ROOT).
_MNIST_GZ = ", ".join(f + ".gz" for f in _MNIST_FILES)
_SOURCES = {
    "mnist": {
        "folder": ("MNIST", "raw"),
        "how": f"download {_MNIST_GZ} from https://ossci-datasets.s3.amazonaws.com/mnist/ (mirror of "
               "http://yann.lecun.com/exdb/mnist/) and put them, gzipped or not, in {folder}",
    },
    "fashion-mnist": {
        "folder": ("FashionMNIST", "raw"),
        "how": f"download {_MNIST_GZ} from http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/ and put "
               "them, gzipped or not, in {folder}",
    },
    "cifar10": {
        "folder": (),
        "how": "download https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz and extract it in {folder} "
               "(so that {folder}/cifar-10-batches-py/ exists)",
    },
}


def _canonical_name(name: str) -> str:
    key = str(name).strip().lower().replace("_", "-")
    key = {"fashion": "fashion-mnist", "fashionmnist": "fashion-mnist", "cifar-10": "cifar10"}.get(key, key)
    if key not in IMAGE_SHAPES:
        raise ConfigError(f"unknown image dataset {name!r}; valid names: {', '.join(IMAGE_DATASETS)}")
    return key


def _check_split(split: str) -> bool:
    """True for the training split."""
    if split not in ("train", "test"):
        raise ConfigError(f"image split must be 'train' or 'test', got {split!r}")
    return split == "train"


def to_model_range(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1]: x -> 2x - 1 (the range of DDPM / score-SDE image models)."""
    return 2.0 * x - 1.0


def from_model_range(x: torch.Tensor, clamp: bool = True) -> torch.Tensor:
    """[-1, 1] -> [0, 1]: x -> (x + 1) / 2, clamped to [0, 1] by default (model samples overshoot a little)."""
    y = (x + 1.0) / 2.0
    return y.clamp(0.0, 1.0) if clamp else y


def _load_digits(train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 8x8 digits, split by the fixed permutation documented in the module docstring."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float32) / 16.0  # (1797, 8, 8) in [0, 1]
    labels = np.asarray(bunch.target, dtype=np.int64)  # (1797,)
    perm = np.random.RandomState(DIGITS_SPLIT_SEED).permutation(len(labels))
    idx = perm[:DIGITS_TRAIN_SIZE] if train else perm[DIGITS_TRAIN_SIZE:]
    return torch.from_numpy(images[idx]).unsqueeze(1), torch.from_numpy(labels[idx])  # (N, 1, 8, 8), (N,)


def _gunzip_placed_files(raw: pathlib.Path) -> None:
    """Unpack ``X.gz`` into ``X`` in an MNIST-style raw folder where only the gzip is there.

    Writes to a temporary file first and renames it, so an interrupted run never leaves a half file; an existing
    ``X`` is never touched.
    """
    if not raw.is_dir():
        return
    for stem in _MNIST_FILES:
        target, packed = raw / stem, raw / (stem + ".gz")
        if target.exists() or not packed.is_file():
            continue
        fd, tmp = tempfile.mkstemp(dir=raw, prefix=f".{stem}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, gzip.open(packed, "rb") as src:
                shutil.copyfileobj(src, out)
            os.replace(tmp, target)
        except BaseException:
            pathlib.Path(tmp).unlink(missing_ok=True)
            raise


def _missing(name: str, root: pathlib.Path, reason: str) -> DataMissingError:
    src = _SOURCES[name]
    folder = root.joinpath(*src["folder"])
    how = src["how"].format(folder=folder)
    return DataMissingError(f"{name} is not in {folder} and {reason}: {how} (or point $DLCOURSE_DATA or root= at "
                            "a folder that has it)")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:197] + "..."


def _load_torchvision(name: str, train: bool, root: pathlib.Path, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    from torchvision import datasets

    cls = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST, "cifar10": datasets.CIFAR10}[name]
    if name != "cifar10":
        _gunzip_placed_files(root.joinpath(*_SOURCES[name]["folder"]))
    try:
        ds = cls(str(root), train=train, download=False)
    except RuntimeError:  # torchvision: "Dataset not found ..."
        if not download:
            raise _missing(name, root, "download=False") from None
        try:
            root.mkdir(parents=True, exist_ok=True)
            ds = cls(str(root), train=train, download=True)
        except (URLError, RuntimeError, OSError, ValueError) as exc:
            raise _missing(name, root, f"could not be downloaded ({type(exc).__name__}: {_one_line(exc)})") from exc

    if name == "cifar10":
        images = torch.from_numpy(np.asarray(ds.data)).permute(0, 3, 1, 2)  # (N, 32, 32, 3) -> (N, 3, 32, 32)
        labels = torch.as_tensor(ds.targets, dtype=torch.int64)
    else:
        images = ds.data.unsqueeze(1)  # (N, 28, 28) uint8 -> (N, 1, 28, 28)
        labels = ds.targets.to(torch.int64)
    return images, labels


def load_images(name: str, split: str = "train", root: str | os.PathLike | None = None, download: bool = True,
                limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Load an image dataset as tensors.

    Args:
        name: "digits", "mnist", "fashion-mnist" or "cifar10" (see ``IMAGE_SHAPES``).
        split: "train" or "test".
        root: dataset folder; default ``data_root()``. Ignored for "digits" (bundled with scikit-learn).
        download: fetch missing torchvision files from the official URLs.
        limit: keep only the first ``limit`` images of the split.

    Returns:
        images float32 (N, C, H, W) in [0, 1], labels int64 (N,).

    Raises:
        ConfigError: unknown name or split.
        DataMissingError: files missing and not downloadable; the one-line message names the files, the URL and the
            folder to put them in.
    """
    key = _canonical_name(name)
    train = _check_split(split)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ConfigError(f"limit must be a non-negative int or None, got {limit!r}")
    if key == "digits":
        images, labels = _load_digits(train)
    else:
        base = pathlib.Path(root).expanduser() if root is not None else data_root()
        images, labels = _load_torchvision(key, train, base, download)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    if images.dtype == torch.uint8:
        images = images.to(torch.float32) / 255.0
    return images.contiguous(), labels.contiguous()
