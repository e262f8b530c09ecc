"""Image quality figures (dlcourse.quality): the Fréchet distance against closed forms and a second implementation,
the classifier score at its two ends, nearest training images, the classifier family, and the offline FID error."""

import math
import urllib.error

import numpy as np
import pytest
import torch
from scipy.linalg import sqrtm

from dlcourse.cli import main
from dlcourse.errors import DataMissingError
from dlcourse.quality.metrics import (InceptionFeatures, classifier_score, fid_from_features, frechet_distance,
                                      nearest_training_images)


def _random_cov(d, seed):
    a = np.random.RandomState(seed).randn(d, d)
    return a @ a.T / d + 0.1 * np.eye(d)


def test_frechet_distance_of_diagonal_gaussians_is_the_closed_form():
    # commuting (diagonal) covariances: d² = ‖μ₁ - μ₂‖² + Σ (√a_i - √b_i)²
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([0.5, 1.0, 0.0])
    a, b = np.array([1.0, 4.0, 0.25]), np.array([2.0, 1.0, 0.25])
    want = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert math.isclose(frechet_distance(mu1, np.diag(a), mu2, np.diag(b)), want, rel_tol=1e-12)
    assert abs(frechet_distance(mu1, np.diag(a), mu1, np.diag(a))) < 1e-10


def test_frechet_distance_equals_the_sqrtm_formula_for_any_covariances():
    s1, s2 = _random_cov(6, 0), _random_cov(6, 1)
    mu1, mu2 = np.random.RandomState(2).randn(6), np.random.RandomState(3).randn(6)
    ref = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * sqrtm(s1 @ s2).real)
    assert math.isclose(frechet_distance(mu1, s1, mu2, s2), ref, rel_tol=1e-9)


def test_fid_from_samples_approaches_the_gaussians_distance():
    # A stand-in feature extractor (the identity on Gaussian features): with N = 20000 samples per side in D = 4 the
    # plug-in estimate is biased upward by about Tr(Σ₁ + Σ₂)/N-ish terms and spread by O(1/sqrt(N)); 0.03 covers both.
    d, n = 4, 20000
    s1, s2 = _random_cov(d, 4), _random_cov(d, 5)
    mu1, mu2 = np.zeros(d), np.full(d, 0.3)
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, d, generator=g, dtype=torch.float64) @ torch.from_numpy(np.linalg.cholesky(s1)).T
    b = torch.randn(n, d, generator=g, dtype=torch.float64) @ torch.from_numpy(np.linalg.cholesky(s2)).T + 0.3
    assert abs(fid_from_features(a, b) - frechet_distance(mu1, s1, mu2, s2)) < 0.03


def test_classifier_score_at_its_two_ends():
    assert math.isclose(classifier_score(torch.zeros(50, 10)), 1.0, rel_tol=1e-9)  # nothing recognisable
    confident = torch.full((100, 10), -30.0)
    confident[torch.arange(100), torch.arange(100) % 10] = 30.0  # sure of itself, every class alike
    assert math.isclose(classifier_score(confident), 10.0, rel_tol=1e-6)
    one_class = torch.full((100, 10), -30.0)
    one_class[:, 3] = 30.0  # sure, but always the same class (a collapsed generator)
    assert math.isclose(classifier_score(one_class), 1.0, rel_tol=1e-6)


def test_nearest_training_images_finds_copies():
    train = torch.rand(50, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    samples = torch.cat([train[[7, 21]], torch.rand(1, 1, 8, 8)])
    idx, dist = nearest_training_images(samples, train)
    assert idx[:2].tolist() == [7, 21] and float(dist[:2].max()) < 1e-5 and float(dist[2]) > 0.5


def test_offline_inception_is_one_clear_error(monkeypatch):
    import pytorch_fid.inception as inception

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(inception, "load_state_dict_from_url", refuse)
    with pytest.raises(DataMissingError, match="FID Inception weights could not be downloaded"):
        InceptionFeatures()


def test_classifier_family_learns_digits(tmp_path, capsys):
    # 150 steps on the 8x8 digits: well above chance (0.1) on the test split
    assert main(["train", "classifier", "--data", "digits", "--set", "train.steps=150", "--set", "train.ema_decay=null",
                 "--set", "train.progress=false", "--out", str(tmp_path / "run"), "--device", "cpu",
                 "--export", str(tmp_path / "clf.safetensors")]) == 0
    out = capsys.readouterr().out
    accuracy = float(out.split("test_accuracy ")[1].split()[0].rstrip(","))
    assert accuracy > 0.6, out
    # the test split's feature statistics travel with the exported weights: a reloaded classifier gives the Fréchet distance
    # against the test set without the data, equal to the one computed from the images
    from dlcourse import load
    from dlcourse.data.images import load_images
    from dlcourse.quality.metrics import feature_stats, features_and_logits, image_quality, model_quality

    clf, _ = load(str(tmp_path / "clf.safetensors"))
    test, _ = load_images("digits", "test")
    mean, cov = clf.reference()
    want_mean, want_cov = feature_stats(features_and_logits(clf, test)[0])
    assert np.allclose(mean, want_mean, atol=1e-5) and np.allclose(cov, want_cov, atol=1e-5)
    train, _ = load_images("digits", "train")
    stored = model_quality(lambda b, g: train[:b], "digits", n=100, classifier=str(tmp_path / "clf.safetensors"))
    direct = image_quality(train[:100], clf, test)
    assert math.isclose(stored["fid"], direct["fid"], rel_tol=1e-4), (stored, direct)
