"""Image quality figures with their floors and ceilings.

- **Fréchet distance** between two sets of features (Heusel et al. 2017, "GANs trained by a two time-scale update
  rule converge to a local Nash equilibrium", eq. (6)): with (μ, Σ) the mean and covariance of each set,

      d² = ‖μ₁ - μ₂‖² + Tr(Σ₁ + Σ₂ - 2 (Σ₁ Σ₂)^{1/2}).

  On a classifier's penultimate features it fits the data (Fashion-MNIST's own classifier, not ImageNet's);
  with `InceptionFeatures` (pool3 of the FID Inception network, as the papers report) it is the standard FID.
- **Classifier score** (the Inception score of Salimans et al. 2016, Section 4, with our classifier):
  exp(E_x KL(p(y | x) ‖ p(y))), between 1 (every sample looks the same, or nothing is recognisable) and the
  number of classes (confident predictions spread over every class).

A figure is only meaningful next to its floor and ceiling: `reference_quality` gives both for real test images
(the real-vs-real Fréchet distance between two halves of the test set, the test set's classifier score) and for
noise.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import DataMissingError, ShapeError

__all__ = ["feature_stats", "frechet_distance", "fid_from_features", "classifier_score", "image_quality",
           "reference_quality", "model_quality", "nearest_training_images", "InceptionFeatures", "features_and_logits"]


def feature_stats(features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(μ (D,), Σ (D, D)) of features (N, D) in float64, Σ with the unbiased 1/(N - 1)."""
    if features.dim() != 2 or features.shape[0] < 2:
        raise ShapeError(f"features must be (N, D) with N >= 2, got {tuple(features.shape)}")
    f = features.detach().double().cpu().numpy()
    return f.mean(0), np.cov(f, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """d² between N(μ₁, Σ₁) and N(μ₂, Σ₂) (module docstring). The matrix square root of Σ₁ Σ₂ is taken as
    (Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2} conjugated back, whose trace is the same and which is symmetric positive
    semi-definite, so it is computed by two symmetric eigendecompositions (no complex round-off)."""
    from scipy.linalg import eigh

    w1, v1 = eigh(sigma1)
    root1 = (v1 * np.sqrt(np.clip(w1, 0, None))) @ v1.T  # Σ₁^{1/2}
    w = eigh(root1 @ sigma2 @ root1, eigvals_only=True)
    trace_sqrt = float(np.sqrt(np.clip(w, 0, None)).sum())  # Tr (Σ₁ Σ₂)^{1/2}
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)


def fid_from_features(a: torch.Tensor, b: torch.Tensor) -> float:
    """The Fréchet distance between two sets of features (N, D) and (M, D)."""
    return frechet_distance(*feature_stats(a), *feature_stats(b))


def classifier_score(logits: torch.Tensor) -> float:
    """exp(E_x KL(p(y|x) ‖ p(y))) of class logits (N, K), p(y) the mean prediction over the N images."""
    log_p = torch.log_softmax(logits.double(), -1)  # (N, K)
    log_marginal = torch.logsumexp(log_p, 0) - math.log(log_p.shape[0])  # (K,)
    kl = (log_p.exp() * (log_p - log_marginal)).sum(-1)  # (N,)
    return float(kl.mean().exp())


@torch.no_grad()
def features_and_logits(extractor, images: torch.Tensor, batch_size: int = 500):
    """Features (N, D) of images, and class logits (N, K) if the extractor is a classifier (has ``head``)."""
    device = next(extractor.parameters()).device
    feats, logits = [], []
    for chunk in images.split(batch_size):
        f = extractor.features(chunk.to(device).float())
        feats.append(f.cpu())
        if hasattr(extractor, "head"):
            logits.append(extractor.head(f).cpu())
    return torch.cat(feats), (torch.cat(logits) if logits else None)


def image_quality(images: torch.Tensor, extractor, reference: torch.Tensor) -> dict[str, float]:
    """Fréchet distance on the extractor's features between ``images`` (N, C, H, W) in [0, 1] and ``reference``
    (real test images), and, for a classifier, the classifier score of ``images``."""
    if images.dim() != 4 or images.shape[1:] != reference.shape[1:]:
        raise ShapeError(f"images {tuple(images.shape)} do not match the reference {tuple(reference.shape)}")
    f_img, logits = features_and_logits(extractor, images.clamp(0, 1))
    f_ref, _ = features_and_logits(extractor, reference)
    out = {"fid": fid_from_features(f_img, f_ref), "n": float(len(images))}
    if logits is not None:
        out["classifier_score"] = classifier_score(logits)
    return out


def reference_quality(classifier, test_images: torch.Tensor, train_images: torch.Tensor, n: int = 1000,
                      seed: int = 0) -> dict[str, dict]:
    """The floor and the ceiling of `image_quality` with ``n`` images against the test set: ``n`` real training
    images (what a perfect model's ``n`` samples would score) and ``n`` images of uniform noise."""
    g = torch.Generator().manual_seed(seed)
    real = train_images[torch.randperm(len(train_images), generator=g)[:n]]
    noise = torch.rand((n, *test_images.shape[1:]), generator=g)
    return {"real": image_quality(real, classifier, test_images), "noise": image_quality(noise, classifier, test_images)}


def model_quality(sample, data: str, n: int = 1000, classifier: str = "fashion_classifier", batch_size: int = 100,
                  seed: int = 0) -> dict[str, float]:
    """`image_quality` of ``n`` samples against the test split of ``data``: ``sample(batch, generator)`` returns
    images (batch, C, H, W) in [0, 1]; ``classifier`` is a shipped name or a path of a ``classifier`` export.
    The test split's feature statistics come with the classifier, so the data need not be on this machine."""
    from .. import load
    from ..data.images import load_images

    from ..train import Distributed

    clf, clf_cfg = load(classifier)
    if clf_cfg.data != data:
        raise DataMissingError(f"{classifier} classifies {clf_cfg.data}, not {data}; train one with "
                               f"dlcourse train classifier --data {data}")
    reference = clf.reference() if hasattr(clf, "reference") else None
    if reference is None:  # a classifier exported before the statistics were stored with it: use the data
        reference = feature_stats(features_and_logits(clf, load_images(data, "test")[0])[0])
    group = Distributed.from_env(torch.device("cpu"))  # under torchrun each process draws a share of the samples
    share = group.shard(n)
    g = torch.Generator().manual_seed(seed + group.rank)
    images = torch.cat([sample(min(batch_size, share.stop - i), g).cpu() for i in range(share.start, share.stop,
                                                                                         batch_size)])
    f_img, logits = features_and_logits(clf, images.clamp(0, 1))
    f_img, logits = group.gather(f_img), group.gather(logits)
    return {"fid": frechet_distance(*feature_stats(f_img), *reference), "n": float(len(f_img)),
            "classifier_score": classifier_score(logits)}


def add_quality_args(p) -> None:
    """``--quality``-related flags of ``dlcourse eval ncsn|sde`` (the family adds its sampler flags)."""
    p.add_argument("--classifier", default="fashion_classifier",
                   help="the classifier export whose features and predictions score the samples (default: %(default)s)")


def family_quality(family, model, cfg, args) -> dict[str, float]:
    """``dlcourse eval FAMILY --quality``: `model_quality` of ``args.n`` samples drawn by the family's sampler
    with the sampler flags of ``args``."""
    notes = []

    def sample(batch, generator):
        out = family.sample(model, cfg, batch, generator, args)
        notes.append(out.note)
        return out.data

    out = model_quality(sample, cfg.data, args.n or 1000, args.classifier, seed=args.seed)
    return {**out, "sampler": notes[0]}


def nearest_training_images(samples: torch.Tensor, train: torch.Tensor, batch_size: int = 256
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """For each sample (N, ...) its nearest training image in Euclidean distance: (indices (N,), distances (N,)).
    A memorising model has samples at distance ≈ 0 from some training image."""
    flat_train = train.reshape(len(train), -1).float()
    sq_train = flat_train.pow(2).sum(1)  # (M,)
    idx, dist = [], []
    for chunk in samples.reshape(len(samples), -1).float().split(batch_size):
        d2 = chunk.pow(2).sum(1, keepdim=True) - 2 * chunk @ flat_train.T + sq_train[None, :]  # (n, M)
        d, i = d2.clamp(min=0).min(1)
        idx.append(i)
        dist.append(d.sqrt())
    return torch.cat(idx), torch.cat(dist)


class InceptionFeatures(torch.nn.Module):
    """The 2048-d pool3 features of the FID Inception network (the TensorFlow weights of Heusel et al., through
    the ``pytorch-fid`` package), for the standard FID of CIFAR-10: ``features(images in [0, 1])``. The weights are
    downloaded on first use; without a network the error says so in one line."""

    def __init__(self) -> None:
        super().__init__()
        try:
            from pytorch_fid.inception import InceptionV3

            self.net = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]], normalize_input=True).eval()
        except Exception as exc:  # URLError, HTTPError, OSError from the weights download
            raise DataMissingError(f"the FID Inception weights could not be downloaded ({type(exc).__name__}: "
                                   f"{str(exc).splitlines()[0][:120] if str(exc) else ''}); on a machine with a network "
                                   "run it once to cache them under ~/.cache/torch/hub/checkpoints") from None

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        return self.net(images)[0].flatten(1)  # (N, 2048)
