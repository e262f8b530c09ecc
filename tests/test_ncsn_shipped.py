"""The shipped NCSN checkpoints: the toy score net's field against the exact score, annealed Langevin with it
against the mixture weights (Song & Ermon 2019, Section 4.3 / Figure 3 with a learned score), and the digits model.

Tolerances: a mode fraction of N independent chains has binomial standard error √(p(1−p)/N); 5 of them are
allowed, plus the bias of the finite sampler measured with the exact score (noted at the test).
"""

import math

import pytest
import torch

from dlcourse.checkpoint import read_manifest
from dlcourse.data.toy2d import two_gaussians
from dlcourse import load
from dlcourse.score import annealed_langevin_dynamics, sample_ncsn, sigmas_of


@pytest.fixture(scope="module")
def toy():
    torch.manual_seed(0)
    model, cfg = load("ncsn_toy")  # checks the sha256 recorded in the manifest
    return model, cfg


def test_toy_checkpoint_is_recorded_with_its_command():
    entry = read_manifest()["ncsn_toy"]
    assert entry["kind"] == "ncsn" and entry["command"].startswith("dlcourse train ncsn --preset toy")
    assert "--resume" not in entry["command"]


def test_learned_toy_score_matches_the_exact_score_where_the_data_has_mass(toy):
    """x̃ = x + σz with x from the data (so x̃ follows q_σ, where the data has mass): the net's s(x̃, σ) against
    the exact ∇log q_σ(x̃) of the Gaussian-perturbed mixture. Relative RMS error measured 0.12 at σ_L = 0.1 (the
    score is ~1/σ large and steep there) and 0.02-0.06 at σ ≥ 0.5; the bounds are ~1.6x those. A field with the
    right direction but 30% too short (relative error 0.3) is rejected by the same bounds."""
    model, cfg = toy
    mix = two_gaussians()
    g = torch.Generator().manual_seed(0)
    x = mix.sample(4000, generator=g)  # (N, 2)
    sigmas = sigmas_of(cfg)
    for sigma, bound in [(sigmas[-1].item(), 0.2), (0.5, 0.1), (1.0, 0.1), (3.0, 0.1), (10.0, 0.1)]:
        xt = x + sigma * torch.randn(x.shape, generator=g)
        with torch.no_grad():
            est = model(xt, sigma)
        exact = mix.score(xt, sigma=sigma)
        wrong = 0.7 * exact

        def rel(a):
            return ((a - exact).square().sum(1).mean() / exact.square().sum(1).mean()).sqrt().item()

        assert rel(est) < bound, (sigma, rel(est))
        assert rel(wrong) > bound, (sigma, rel(wrong))


def test_annealed_langevin_with_the_learned_score_recovers_the_mixture_weights(toy):
    """2000 chains uniform in [−8, 8]², the shipped ladder (20 levels, 20 -> 0.1), T = 20 steps per level with
    α_i = 0.5 σ_i² (paper convention), final denoising step. With the exact score these settings give 0.776 and
    0.784 (20 000 chains, two seeds): a bias of at most 0.024 from the short chains. The learned score gave 0.786
    with 20 000 chains. Bound: 0.024 + 5 se, se = √(0.8·0.2/2000) = 0.0089; plain Langevin would give ≈ 0.5."""
    model, cfg = toy
    mix = two_gaussians()
    n = 2000
    g = torch.Generator().manual_seed(0)
    x0 = 16 * torch.rand(n, 2, generator=g) - 8
    sigmas = sigmas_of(cfg)
    out = annealed_langevin_dynamics(model, x0, sigmas, 0.5 * sigmas[-1].item() ** 2, 20, convention="paper",
                                     denoise=True, generator=g)
    comp = mix.component_of(out)
    frac = (comp == 0).double().mean().item()
    assert abs(frac - 0.8) < 0.024 + 5 * math.sqrt(0.8 * 0.2 / n), frac
    # and each mode is the right Gaussian: mean ±(5, 5) (se 1/√N per coordinate), std 1 (+ the sampler's small bias)
    for k, (mean, m) in enumerate([(5.0, 0.8 * n), (-5.0, 0.2 * n)]):
        pts = out[comp == k]
        assert torch.allclose(pts.mean(0), torch.full((2,), mean), atol=5 / math.sqrt(m)), pts.mean(0)
        assert ((pts.std(0) - 1).abs() < 0.1).all(), pts.std(0)


def test_sample_ncsn_uses_the_shipped_settings(toy):
    model, cfg = toy
    out, frames = sample_ncsn(model, cfg, 8, generator=torch.Generator().manual_seed(0), record_every=100,
                              n_steps_each=5)
    assert out.shape == (8, 2) and frames.shape == (1 + 20 * 5 // 100 + 1, 8, 2)
    assert frames[0].abs().max() <= 8  # uniform start in [-8, 8]²


def test_digits_samples_are_recognisable_digits():
    """32 samples of the shipped ``ncsn_digits`` with its own sampler, judged by a logistic-regression classifier
    trained on the real 8x8 digits (96% test accuracy). Its mean top-class probability is 0.77 on real test digits,
    0.31 on uniform noise and 0.20 on the mean digit plus noise (a blurry average); the samples must score > 0.6
    (the shipped model: 0.72 on these 32, 0.76 on 256 samples, all 10 classes) and, being diverse, be assigned at
    least 8 of the 10 classes.
    Their mean brightness must match the data's (0.305) within 0.05."""
    from sklearn.linear_model import LogisticRegression

    from dlcourse.data.images import load_images

    xtr, ytr = load_images("digits", "train")
    clf = LogisticRegression(max_iter=2000, C=0.1).fit(xtr.reshape(len(xtr), -1).numpy(), ytr.numpy())
    model, cfg = load("ncsn_digits")
    assert cfg.data == "digits" and cfg.sampler.denoise
    x = sample_ncsn(model, cfg, 32, generator=torch.Generator().manual_seed(0))
    assert x.shape == (32, 1, 8, 8) and torch.isfinite(x).all()
    p = clf.predict_proba(x.clamp(0, 1).reshape(32, -1).numpy())
    assert p.max(1).mean() > 0.6, p.max(1).mean()
    assert len(set(p.argmax(1).tolist())) >= 8, p.argmax(1)
    assert abs(x.clamp(0, 1).mean().item() - xtr.mean().item()) < 0.05
