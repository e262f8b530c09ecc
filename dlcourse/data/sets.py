"""The data sets the score families (``ncsn``, ``sde``) train on, one registry of names: a 2-D toy or an image set.

Each entry knows the shape of one example and, for images, its number of grey levels (the dequantisation bins of
bits/dim). `train_sampler` and `held_out` give training batches and test points in the model's range: images in
[0, 1], or [-1, 1] with ``centred=True``; toys as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ..config import Registry
from .toy2d import toy_names

__all__ = ["DataSet", "DATASETS", "DataName", "ToyName", "data_shape", "train_sampler", "held_out"]


@dataclass(frozen=True)
class DataSet:
    name: str
    shape: tuple[int, ...]      #: one example: (2,) for the toys, (C, H, W) for images
    levels: int | None = None   #: grey levels of an image set (None for the continuous toys)
    what: str = ""


DATASETS: Registry[DataSet] = Registry("data set")
for _d in (DataSet("toy", (2,), None, "a 2-D distribution of dlcourse.data.toy2d (the config's `toy`)"),
           DataSet("digits", (1, 8, 8), 17, "scikit-learn's 8x8 digits, 1500 train / 297 test"),
           DataSet("mnist", (1, 28, 28), 256, "MNIST, 60000 / 10000"),
           DataSet("fashion-mnist", (1, 28, 28), 256, "Fashion-MNIST, 60000 / 10000"),
           DataSet("cifar10", (3, 32, 32), 256, "CIFAR-10, 50000 / 10000")):
    DATASETS.register(_d.name, _d)

DataName = DATASETS.literal()
ToyName = Literal[tuple(toy_names())]


def data_shape(name: str) -> tuple[int, ...]:
    """Shape of one example of data set ``name``."""
    return DATASETS.get(name).shape


def _images(name: str, split: str, limit: int, centred: bool) -> torch.Tensor:
    from .images import load_images

    images, _ = load_images(name, split, limit=limit or None)
    return 2 * images - 1 if centred else images


def train_sampler(name: str, toy: str = "two_gaussians", limit: int = 0, centred: bool = False):
    """``sampler(generator, n)`` of training examples (see `dlcourse.train`): fresh toy samples every step, or
    random training images (the first ``limit`` only, if > 0)."""
    from ..train import DistributionSampler, TensorSampler
    from .toy2d import get_toy

    if name == "toy":
        return DistributionSampler(get_toy(toy))  # (n, 2) fresh every step
    return TensorSampler(_images(name, "train", limit, centred))  # (n, C, H, W)


def held_out(name: str, toy: str = "two_gaussians", n: int | None = None, seed: int = 0,
             centred: bool = False) -> torch.Tensor:
    """Test points: ``n`` (default 1000) fresh toy samples from seed ``seed``, or the first ``n`` test images (all
    when n is None)."""
    from .toy2d import get_toy

    if name == "toy":
        return get_toy(toy).sample(n or 1000, generator=torch.Generator().manual_seed(seed))
    x = _images(name, "test", 0, centred)
    return x if n is None else x[:n]
