"""The ``classifier`` family: the small image classifier whose penultimate features give the Fréchet distance of the
28x28 models and whose predictions give their classifier score (`dlcourse.quality.metrics`).

    dlcourse train classifier --preset fashion --export dlcourse/checkpoints/fashion_classifier.safetensors
    dlcourse eval classifier --checkpoint fashion_classifier --accuracy
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config, Presets, TrainConfig
from ..data.sets import DataName, data_shape
from ..errors import ConfigError
from ..registry import Family
from ..utils import count_parameters

__all__ = ["ClassifierConfig", "ImageClassifier", "FAMILY"]


@dataclass
class ClassifierConfig(Config):
    """An image classifier run."""

    #: the image set (its train split trains, its test split evaluates)
    data: DataName = "fashion-mnist"
    #: channels of the two convolution stages
    channels: tuple[int, int] = (32, 64)
    #: width of the penultimate layer (the features of the Fréchet distance)
    features: int = 128
    #: dropout before the last layer
    dropout: float = 0.3
    #: the shared training loop
    train: TrainConfig = field(default_factory=TrainConfig)

    def check(self) -> None:
        if self.data == "toy":
            raise ConfigError("the classifier needs an image set, not the 2-D toys")


class ImageClassifier(nn.Module):
    """Two stages of (conv 3x3, ReLU, conv 3x3, ReLU, max-pool 2), then a linear layer to ``n_features`` (ReLU):
    the features; a dropout and a linear layer to the class logits: the head."""

    def __init__(self, in_channels: int, image_size: int, channels: tuple[int, int] = (32, 64),
                 n_features: int = 128, n_classes: int = 10, dropout: float = 0.3) -> None:
        super().__init__()
        c1, c2 = channels
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3, padding=1), nn.ReLU(), nn.Conv2d(c1, c1, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.Conv2d(c2, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(c2 * (image_size // 4) ** 2, n_features), nn.ReLU())
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(n_features, n_classes)
        # The test split's feature mean and covariance (float64), stored with the weights after training so that a
        # Fréchet distance against the real test set needs only this checkpoint, not the data (see `reference`).
        self.register_buffer("ref_mean", torch.zeros(n_features, dtype=torch.float64))
        self.register_buffer("ref_cov", torch.zeros(n_features, n_features, dtype=torch.float64))
        self.register_buffer("ref_count", torch.zeros((), dtype=torch.int64))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (B, n_features) of images (B, C, H, W) in [0, 1]."""
        return self.body(x)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits (B, K) from features."""
        return self.out(self.drop(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    @torch.no_grad()
    def store_reference(self, test_images: torch.Tensor) -> None:
        """Compute and keep the feature statistics of ``test_images`` (N, C, H, W) in [0, 1]."""
        from .metrics import feature_stats, features_and_logits

        mean, cov = feature_stats(features_and_logits(self, test_images)[0])
        self.ref_mean.copy_(torch.from_numpy(mean))
        self.ref_cov.copy_(torch.from_numpy(cov))
        self.ref_count.fill_(len(test_images))

    def reference(self):
        """(μ (F,), Σ (F, F)) of the test split's features as numpy float64, or None if none was stored."""
        if int(self.ref_count) == 0:
            return None
        return self.ref_mean.cpu().numpy(), self.ref_cov.cpu().numpy()


class ClassifierFamily(Family):
    name = "classifier"
    config = ClassifierConfig
    presets = Presets("classifier", fashion=ClassifierConfig(
        data="fashion-mnist", train=TrainConfig(steps=2000, batch_size=128, lr=1e-3, warmup=100, ema_decay=0.998,
                                                log_every=100, ckpt_every=1000, grad_clip=None)),
        mnist=ClassifierConfig(data="mnist", train=TrainConfig(steps=2000, batch_size=128, lr=1e-3, warmup=100,
                                                               ema_decay=0.999, log_every=100, ckpt_every=1000)))
    aliases = {"data": "data"}

    def build_model(self, cfg: ClassifierConfig) -> ImageClassifier:
        c, h, _ = data_shape(cfg.data)
        return ImageClassifier(c, h, cfg.channels, cfg.features, 10, cfg.dropout)

    def train_data(self, cfg: ClassifierConfig):
        from ..data.images import load_images
        from ..train import TensorSampler

        return TensorSampler(*load_images(cfg.data, "train"))

    def loss(self, cfg: ClassifierConfig):
        def loss_fn(model, batch):
            x, y = batch
            logits = model(x)
            return F.cross_entropy(logits, y), {"accuracy": (logits.argmax(-1) == y).float().mean()}

        return loss_fn

    def after_training(self, cfg: ClassifierConfig, model) -> dict[str, float]:
        from ..data.images import load_images

        model.eval()
        model.store_reference(load_images(cfg.data, "test")[0])
        return {"test_accuracy": _accuracy(model, cfg)}

    def describe(self, cfg: ClassifierConfig, model) -> tuple[str, str]:
        return (f"image classifier ({count_parameters(model) / 1e6:.2f}M parameters, two conv stages, "
                f"{cfg.features}-d penultimate features) for the Fréchet distance and classifier score of "
                f"{cfg.data} samples (dlcourse.quality.metrics)", f"{cfg.data} train split, pixels in [0, 1]")

    def add_eval_args(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--accuracy", action="store_true", required=True,
                       help="test accuracy, and the quality figures of real test images and of noise")

    def evaluate(self, model, cfg: ClassifierConfig, args) -> dict:
        from ..data.images import load_images
        from .metrics import reference_quality

        test, _ = load_images(cfg.data, "test")
        train, _ = load_images(cfg.data, "train")
        ref = reference_quality(model, test, train)
        return {"test_accuracy": _accuracy(model, cfg), "real_vs_real_fid": ref["real"]["fid"],
                "real_classifier_score": ref["real"]["classifier_score"], "noise_fid": ref["noise"]["fid"],
                "noise_classifier_score": ref["noise"]["classifier_score"]}


@torch.no_grad()
def _accuracy(model, cfg: ClassifierConfig) -> float:
    from ..data.images import load_images

    x, y = load_images(cfg.data, "test")
    model.eval()
    device = next(model.parameters()).device
    hits = sum(int((model(xb.to(device)).argmax(-1).cpu() == yb).sum()) for xb, yb in zip(x.split(1000), y.split(1000)))
    return hits / len(y)


FAMILY = ClassifierFamily()
