"""Tests for dlcourse.data.images, offline: scikit-learn's bundled digits and tiny idx files written here."""

from __future__ import annotations

import gzip
import struct
import urllib.request
from urllib.error import URLError

import numpy as np
import pytest
import torch

from dlcourse.data.images import IMAGE_SHAPES, from_model_range, load_images, to_model_range
from dlcourse.errors import ConfigError, DataMissingError

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _write_idx(folder, n_train=7, n_test=3, gz=False):
    """Tiny Fashion-MNIST-format files (IDX: big-endian magic 2051/2049, then dims, then uint8 data)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        arrays[split] = (images, labels)
        img_name, lab_name = IDX_FILES[split]
        payloads = {
            img_name: struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes(),
            lab_name: struct.pack(">II", 2049, n) + labels.tobytes(),
        }
        for fname, data in payloads.items():
            if gz:
                with gzip.open(folder / (fname + ".gz"), "wb") as f:
                    f.write(data)
            else:
                (folder / fname).write_bytes(data)
    return arrays


@pytest.fixture
def no_network(monkeypatch):
    """Every urllib request fails as it would on a machine without internet access."""

    def refuse(*args, **kwargs):
        raise URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def test_digits_offline_split():
    x_tr, y_tr = load_images("digits", "train")
    x_te, y_te = load_images("digits", "test")
    assert x_tr.shape == (1500, *IMAGE_SHAPES["digits"]) and x_te.shape == (297, 1, 8, 8)
    assert x_tr.dtype == torch.float32 and y_tr.dtype == torch.int64
    assert x_tr.min() >= 0 and x_tr.max() <= 1 and x_tr.max() == 1
    # the two splits partition the 1797 digits: label counts add up to the full set's
    from sklearn.datasets import load_digits

    full = load_digits()
    counts = np.bincount(full.target, minlength=10)
    np.testing.assert_array_equal(np.bincount(y_tr.numpy(), minlength=10) + np.bincount(y_te.numpy(), minlength=10), counts)
    assert set(y_te.tolist()) == set(range(10))
    # deterministic
    x2, y2 = load_images("digits", "train")
    assert torch.equal(x_tr, x2) and torch.equal(y_tr, y2)
    # images match the sklearn array (scaled by 1/16) row for row, via the labels and pixel sums
    sums = np.sort(full.images.reshape(1797, -1).sum(-1) / 16.0)
    both = torch.cat([x_tr, x_te]).flatten(1).sum(-1).double().numpy()
    np.testing.assert_allclose(np.sort(both), sums, rtol=1e-5)
    x_lim, y_lim = load_images("digits", "test", limit=10)
    assert torch.equal(x_lim, x_te[:10]) and torch.equal(y_lim, y_te[:10])


@pytest.mark.parametrize("gz", [False, True])
def test_fashion_mnist_from_local_idx(tmp_path, gz, no_network):
    arrays = _write_idx(tmp_path / "FashionMNIST" / "raw", gz=gz)
    for split in ("train", "test"):
        x, y = load_images("fashion-mnist", split, root=tmp_path, download=False)
        images, labels = arrays[split]
        assert x.shape == (len(labels), 1, 28, 28) and x.dtype == torch.float32
        assert y.dtype == torch.int64
        np.testing.assert_allclose(x.squeeze(1).numpy(), images / 255.0, rtol=0, atol=1e-7)
        np.testing.assert_array_equal(y.numpy(), labels)
    x, _ = load_images("fashion-mnist", "train", root=tmp_path, limit=2)
    assert x.shape[0] == 2


def test_data_root_env_is_used(tmp_path, monkeypatch, no_network):
    _write_idx(tmp_path / "FashionMNIST" / "raw")
    monkeypatch.setenv("DLCOURSE_DATA", str(tmp_path))
    x, y = load_images("fashion_mnist", "test")
    assert x.shape == (3, 1, 28, 28)


def test_missing_mnist_without_download(tmp_path):
    with pytest.raises(DataMissingError) as err:
        load_images("mnist", "train", root=tmp_path, download=False)
    msg = str(err.value)
    assert "\n" not in msg
    assert str(tmp_path / "MNIST" / "raw") in msg
    assert "https://" in msg and "train-images-idx3-ubyte.gz" in msg


@pytest.mark.parametrize("name, folder, url", [
    ("cifar10", "", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
    ("mnist", "MNIST/raw", "https://ossci-datasets.s3.amazonaws.com/mnist/"),
])
def test_missing_with_blocked_network(tmp_path, no_network, capsys, name, folder, url):
    with pytest.raises(DataMissingError) as err:
        load_images(name, "test", root=tmp_path, download=True)
    msg = str(err.value)
    assert "\n" not in msg
    assert str(tmp_path / folder if folder else tmp_path) in msg
    assert url in msg


def test_unknown_name_and_split():
    with pytest.raises(ConfigError) as err:
        load_images("imagenet")
    assert "digits" in str(err.value) and "cifar10" in str(err.value)
    with pytest.raises(ConfigError):
        load_images("digits", split="valid")


def test_model_range_round_trip():
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = to_model_range(x)
    assert y.min() >= -1 and y.max() <= 1
    torch.testing.assert_close(from_model_range(y), x)
    assert from_model_range(torch.tensor([-3.0, 3.0])).tolist() == [0.0, 1.0]
