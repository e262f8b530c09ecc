"""Tests for dlcourse.data.toy2d: exact densities and scores, and samplers that match them.

Tolerances: scores are compared with autograd in float64 (relative 1e-7). Grid integrals use the midpoint rule on
a grid much finer than the narrowest feature (spectrally accurate for these smooth densities), so 1e-3 is loose.
Monte-Carlo checks allow 5 standard errors, with the standard error estimated from the same samples: a
false alarm has probability below 1e-6 per check, and the seeds are fixed anyway.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch
from scipy.special import logsumexp

from dlcourse.data import toy2d
from dlcourse.data.toy2d import Checkerboard, GaussianMixture, Rings, get_toy, two_gaussians
from dlcourse.errors import ConfigError, ShapeError

F64 = torch.float64
EXACT = ["two_gaussians", "eight_gaussians", "grid_gaussians", "checkerboard", "rings"]


def _autograd_score(dist, x, **kw):
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(dist.log_prob(x, **kw).sum(), x)
    return grad


def _probe_points(dist, n=300, seed=0):
    """Samples (where the density is large) plus uniform points far into the tails."""
    g = torch.Generator().manual_seed(seed)
    near = dist.sample(n, generator=g).to(F64)
    far = (torch.rand(n, 2, generator=g, dtype=F64) - 0.5) * 16
    return torch.cat([near, far])


def _grid(lo, hi, h):
    """Midpoint grid on [lo, hi]^2 with cell size h: points (M, 2) and cell area."""
    ticks = torch.arange(lo + h / 2, hi, h, dtype=F64)
    gx, gy = torch.meshgrid(ticks, ticks, indexing="ij")
    return torch.stack([gx.flatten(), gy.flatten()], -1), h * h


def _five_se_close(samples: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor):
    """Sample mean and covariance within 5 estimated standard errors of the exact moments."""
    n = samples.shape[0]
    x = samples.to(F64)
    m = x.mean(0)
    se_mean = x.std(0) / math.sqrt(n)
    assert torch.all((m - mean).abs() < 5 * se_mean), (m, mean, se_mean)
    c = x - m
    prods = c.unsqueeze(-1) * c.unsqueeze(-2)  # (n, 2, 2)
    se_cov = prods.std(0) / math.sqrt(n)
    assert torch.all((prods.mean(0) - cov).abs() < 5 * se_cov), (prods.mean(0), cov, se_cov)


def _random_mixture(seed=0, k=3):
    g = np.random.default_rng(seed)
    weights = g.dirichlet(np.ones(k))
    means = g.normal(0, 2, size=(k, 2))
    a = g.normal(size=(k, 2, 2))
    covs = a @ a.transpose(0, 2, 1) + 0.3 * np.eye(2)
    return weights, means, covs


# ---------------------------------------------------------------------------------------------------------------
# scores
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", EXACT)
def test_score_matches_autograd(name):
    dist = get_toy(name, dtype=F64)
    assert dist.has_density
    x = _probe_points(dist)
    expected = _autograd_score(dist, x)
    got = dist.score(x)
    assert got.shape == x.shape and got.dtype == F64
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, expected, rtol=1e-7, atol=1e-9)


def test_full_covariance_mixture_score_matches_autograd():
    w, mu, cov = _random_mixture(1)
    gm = GaussianMixture(w, mu, cov, dtype=F64)
    x = _probe_points(gm)
    torch.testing.assert_close(gm.score(x), _autograd_score(gm, x), rtol=1e-7, atol=1e-9)


def test_perturbed_mixture_per_sample_alpha_sigma():
    """Per-row (B,) alpha and sigma: score = autograd of log_prob, and each row equals the scalar-parameter law."""
    w, mu, cov = _random_mixture(2)
    gm = GaussianMixture(w, mu, cov, dtype=F64)
    g = torch.Generator().manual_seed(3)
    b = 64
    x = torch.randn(b, 2, generator=g, dtype=F64) * 3
    alpha = torch.rand(b, generator=g, dtype=F64) + 0.05
    sigma = torch.rand(b, generator=g, dtype=F64) * 3
    score = gm.score(x, alpha=alpha, sigma=sigma)
    torch.testing.assert_close(score, _autograd_score(gm, x, alpha=alpha, sigma=sigma), rtol=1e-7, atol=1e-9)
    lp = gm.log_prob(x, alpha=alpha, sigma=sigma)
    for i in range(0, b, 9):
        a, s = alpha[i].item(), sigma[i].item()
        row = x[i : i + 1]
        torch.testing.assert_close(lp[i : i + 1], gm.log_prob(row, alpha=a, sigma=s), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(lp[i : i + 1], gm.perturbed(a, s).log_prob(row), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(score[i : i + 1], gm.perturbed(a, s).score(row), rtol=1e-10, atol=1e-12)
    post = gm.posterior(x, alpha=alpha, sigma=sigma)
    assert post.shape == (b, 3)
    torch.testing.assert_close(post.sum(-1), torch.ones(b, dtype=F64))


def test_score_far_from_modes_is_stable():
    """Far from both modes the responsibilities underflow in a naive computation; the score stays exact."""
    gm = two_gaussians(dtype=F64)
    x = torch.tensor([[60.0, 60.0], [-80.0, -75.0], [0.0, 0.0]], dtype=F64)
    s = gm.score(x)
    assert torch.isfinite(s).all()
    torch.testing.assert_close(s[:2], -(x[:2] - torch.tensor([[5.0, 5.0], [-5.0, -5.0]], dtype=F64)))
    # float32 too: the default dtype must not produce NaN out there
    assert torch.isfinite(two_gaussians().score(x.float())).all()
    assert torch.isfinite(Checkerboard().score(torch.tensor([[30.0, -40.0], [0.3, 0.2]]))).all()


def test_alpha_sigma_shape_error():
    gm = two_gaussians()
    x = torch.zeros(4, 2)
    with pytest.raises(ShapeError):
        gm.score(x, sigma=torch.ones(3))
    with pytest.raises(ShapeError):
        gm.log_prob(torch.zeros(4, 3))


# ---------------------------------------------------------------------------------------------------------------
# log-densities
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, kwargs, lo, hi, h",
    [
        ("eight_gaussians", {}, -4.0, 4.0, 0.02),
        ("checkerboard", {}, -3.0, 3.0, 0.02),
        ("rings", {}, -4.0, 4.0, 0.02),
        ("rings", {"radii": (0.0, 0.5), "std": 0.2}, -2.0, 2.0, 0.01),
    ],
)
def test_log_prob_integrates_to_one(name, kwargs, lo, hi, h):
    dist = get_toy(name, dtype=F64, **kwargs)
    pts, area = _grid(lo, hi, h)
    total = dist.log_prob(pts).exp().sum().item() * area
    assert abs(total - 1.0) < 1e-3, total


def test_perturbed_mixture_integrates_to_one():
    gm = two_gaussians(dtype=F64)
    pts, area = _grid(-16.0, 16.0, 0.05)
    for alpha, sigma in [(1.0, 0.5), (0.5, 2.0), (0.1, 1.0)]:
        total = gm.log_prob(pts, alpha=alpha, sigma=sigma).exp().sum().item() * area
        assert abs(total - 1.0) < 1e-3, (alpha, sigma, total)


@pytest.mark.parametrize("alpha, sigma", [(1.0, 0.0), (0.7, 0.4)])
def test_mixture_log_prob_matches_scipy(alpha, sigma):
    w, mu, cov = _random_mixture(4)
    gm = GaussianMixture(w, mu, cov, dtype=F64)
    x = np.random.default_rng(5).normal(0, 3, size=(200, 2))
    comps = [
        np.log(w[k]) + scipy.stats.multivariate_normal(alpha * mu[k], alpha**2 * cov[k] + sigma**2 * np.eye(2)).logpdf(x)
        for k in range(len(w))
    ]
    expected = logsumexp(np.stack(comps, -1), axis=-1)
    got = gm.log_prob(torch.from_numpy(x), alpha=alpha, sigma=sigma).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)


def test_covariance_conveniences():
    means = [[0.0, 0.0], [1.0, 1.0]]
    full = GaussianMixture([1, 1], means, [[[2.0, 0], [0, 3.0]], [[0.5, 0], [0, 0.5]]], dtype=F64)
    diag = GaussianMixture([1, 1], means, [[2.0, 3.0], [0.5, 0.5]], dtype=F64)
    x = torch.randn(10, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(full.log_prob(x), diag.log_prob(x))
    iso = GaussianMixture([1, 1], means, [2.0, 2.0], dtype=F64)
    shared = GaussianMixture([1, 1], means, 2.0, dtype=F64)
    torch.testing.assert_close(iso.log_prob(x), shared.log_prob(x))
    with pytest.raises(ConfigError):
        GaussianMixture([1], [[0.0, 0.0]], [[[1.0, 2.0], [2.0, 1.0]]])  # not positive definite
    with pytest.raises(ConfigError):
        GaussianMixture([-1, 2], means, 1.0)
    with pytest.raises(ShapeError):
        GaussianMixture([1, 1], [[0.0, 0.0, 0.0]] * 2, 1.0)


def test_checkerboard_log_prob_matches_cdf_formula():
    """Independent computation with scipy's normal CDF (plain probabilities, no log-space tricks)."""
    board = Checkerboard(n=4, side=1.0, sigma=0.15, dtype=F64)
    x = np.random.default_rng(6).uniform(-2.6, 2.6, size=(300, 2))
    dens = np.zeros(len(x))
    for i in range(4):
        for j in range(4):
            if (i + j) % 2:
                continue
            a = np.array([i - 2.0, j - 2.0])
            mass = scipy.stats.norm.cdf((x - a) / 0.15) - scipy.stats.norm.cdf((x - a - 1.0) / 0.15)
            dens += mass.prod(-1)
    dens /= 8.0
    np.testing.assert_allclose(board.log_prob(torch.from_numpy(x)).exp().numpy(), dens, rtol=1e-9, atol=1e-12)


def test_rings_density_formula_at_a_point():
    """One ring at radius R: p(x) = exp(-(|x|-R)^2/2s^2) / Z with Z from a 1-D quadrature of 2 pi r exp(...)."""
    import scipy.integrate

    radius, s = 1.5, 0.3
    rings = Rings(radii=[radius], std=s, dtype=F64)
    z, _ = scipy.integrate.quad(lambda r: 2 * math.pi * r * math.exp(-((r - radius) ** 2) / (2 * s * s)), 0, np.inf)
    x = torch.tensor([[1.0, 1.2], [0.1, -0.2]], dtype=F64)
    r = x.norm(dim=-1)
    expected = -(r - radius) ** 2 / (2 * s * s) - math.log(z)
    torch.testing.assert_close(rings.log_prob(x), expected, rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------------------------------------------------------
# samplers
# ---------------------------------------------------------------------------------------------------------------


def test_mixture_samples_match_moments_and_weights():
    w, mu, cov = _random_mixture(7)
    gm = GaussianMixture(w, mu, cov, dtype=F64)
    x = gm.sample(40_000, generator=torch.Generator().manual_seed(8))
    _five_se_close(x, gm.mean(), gm.cov())
    gm2 = two_gaussians()
    n = 20_000
    y = gm2.sample(n, generator=torch.Generator().manual_seed(9))
    assert y.dtype == torch.float32 and y.shape == (n, 2)
    frac = (gm2.component_of(y) == 0).double().mean().item()
    assert abs(frac - 0.8) < 5 * math.sqrt(0.8 * 0.2 / n), frac


@pytest.mark.parametrize("alpha, sigma", [(1.0, 2.0), (0.6, 0.8)])
def test_perturbed_samples_match_closed_form_moments(alpha, sigma):
    gm = two_gaussians(dtype=F64)
    g = torch.Generator().manual_seed(10)
    x = gm.sample(40_000, generator=g)
    y = alpha * x + sigma * torch.randn(x.shape, generator=g, dtype=F64)
    law = gm.perturbed(alpha, sigma)
    _five_se_close(y, law.mean(), law.cov())
    eye = torch.eye(2, dtype=F64)
    torch.testing.assert_close(law.cov(), alpha**2 * gm.cov() + sigma**2 * eye)
    torch.testing.assert_close(law.mean(), alpha * gm.mean())


def test_checkerboard_samples_match_moments_and_density():
    board = Checkerboard(dtype=F64)
    x = board.sample(40_000, generator=torch.Generator().manual_seed(11))
    _five_se_close(x, board.mean(), board.cov())
    # A point lands on a dark square ((floor x + floor y) even) iff the noise moves it across a square edge along
    # both axes or neither; per axis that happens with probability q = 2 int_0^1 Phi(-u/sigma) du ~ 2 sigma / sqrt(2 pi)
    # (the board pattern extends past its border, so edges of the board behave like inner edges).
    q = 2 * board.sigma / math.sqrt(2 * math.pi)
    p_dark = (1 - q) ** 2 + q**2
    dark = ((torch.floor(x[:, 0]) + torch.floor(x[:, 1])) % 2 == 0).double().mean().item()
    assert abs(dark - p_dark) < 5 * math.sqrt(p_dark * (1 - p_dark) / x.shape[0]), (dark, p_dark)


def test_rings_samples_match_density():
    """E|X|^2 from samples vs the grid integral of |x|^2 p(x); ring frequencies vs weights."""
    rings = Rings(dtype=F64)
    n = 30_000
    x = rings.sample(n, generator=torch.Generator().manual_seed(12))
    pts, area = _grid(-4.0, 4.0, 0.02)
    second_moment = ((pts**2).sum(-1) * rings.log_prob(pts).exp()).sum().item() * area
    r2 = (x**2).sum(-1)
    assert abs(r2.mean().item() - second_moment) < 5 * r2.std().item() / math.sqrt(n)
    nearest = (x.norm(dim=-1).unsqueeze(-1) - rings.radii).abs().argmin(-1)
    for k, wk in enumerate(rings.weights.tolist()):
        frac = (nearest == k).double().mean().item()
        assert abs(frac - wk) < 5 * math.sqrt(wk * (1 - wk) / n), (k, frac, wk)


@pytest.mark.parametrize("name", toy2d.toy_names())
def test_generator_reproducibility(name):
    dist = get_toy(name)
    a = dist.sample(100, generator=torch.Generator().manual_seed(0))
    b = dist.sample(100, generator=torch.Generator().manual_seed(0))
    c = dist.sample(100, generator=torch.Generator().manual_seed(1))
    assert a.shape == (100, 2) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.isfinite(a).all()
    assert dist.sample(0).shape == (0, 2)


def test_sample_only_distributions():
    for name in ["swiss_roll", "moons"]:
        dist = get_toy(name)
        assert not dist.has_density
        with pytest.raises(NotImplementedError):
            dist.log_prob(torch.zeros(1, 2))
    moons = get_toy("moons", noise=0.0).sample(2000, generator=torch.Generator().manual_seed(0))
    upper = moons + torch.tensor([0.5, 0.25])
    lower = moons + torch.tensor([0.5, 0.25]) - torch.tensor([1.0, 0.5])
    on_circle = torch.minimum((upper.norm(dim=-1) - 1).abs(), (lower.norm(dim=-1) - 1).abs())
    assert on_circle.max() < 1e-5


def test_registry_errors():
    with pytest.raises(ConfigError) as err:
        get_toy("nine_gaussians")
    msg = str(err.value)
    assert "\n" not in msg and "two_gaussians" in msg and "checkerboard" in msg
    with pytest.raises(ConfigError):
        get_toy("rings", sigma=0.3)  # rings take std=, not sigma=
    assert get_toy("Swiss-Roll").name == "swiss_roll"
    assert get_toy("two_gaussians").mean().dtype == torch.float32


def test_to_dtype_and_device_follows_data():
    gm = two_gaussians()
    x = torch.zeros(3, 2, dtype=F64)
    assert gm.score(x).dtype == F64  # computes in x's dtype
    gm64 = gm.to(dtype=F64)
    assert gm64.sample(2).dtype == F64 and gm.sample(2).dtype == torch.float32
