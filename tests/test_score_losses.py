"""Score-matching losses against closed forms for Gaussian data.

Tolerances: every Monte Carlo check allows 5 standard errors of the estimate (a false alarm in fewer than 1 in
10⁶ runs for a Gaussian error), with the standard error either known in closed form or measured from the
per-sample losses of the same run; all runs are seeded, so the tests are also deterministic.
"""

import math

import pytest
import torch

from dlcourse.nn import MLP
from dlcourse.score import (dsm_loss, dsm_optimal_loss_gaussian, dsm_target, exact_sm_loss, ncsn_loss,
                            sliced_sm_loss)

D = 4
MU = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
S = 0.7  # data std


def _gaussian_data(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return MU + S * torch.randn(n, D, generator=g, dtype=torch.float64)


def _optimal_score(x_tilde, sigma):
    """Score of N(μ, (s² + σ²) I), the σ-perturbed data law."""
    return -(x_tilde - MU) / (S**2 + sigma.reshape(-1, 1) ** 2)


def test_dsm_target_is_the_conditional_score():
    x = torch.randn(5, 3)
    z = torch.randn(5, 3)
    sigma = torch.tensor([0.1, 0.5, 1.0, 2.0, 4.0])
    x_tilde = x + sigma.reshape(-1, 1) * z
    assert torch.allclose(dsm_target(x_tilde, x, sigma), -z / sigma.reshape(-1, 1), atol=1e-5)


@pytest.mark.parametrize("sigma", [0.1, 1.0, 5.0])
def test_dsm_with_the_optimal_score_gives_the_analytic_minimum(sigma):
    """½ D s²/(s² + σ²): the per-sample loss is ½ v χ²_D with v = s²/(s² + σ²), so its standard deviation is
    v √(D/2) and the standard error of a mean over N samples is v √(D/(2N))."""
    n = 100_000
    x = _gaussian_data(n)
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    loss = dsm_loss(_optimal_score, x, sigma, noise=z)
    expected = dsm_optimal_loss_gaussian(S, sigma, D).item()
    v = S**2 / (S**2 + sigma**2)
    se = v * math.sqrt(D / (2 * n))
    assert abs(loss.item() - expected) < 5 * se, (loss.item(), expected, se)
    # It is the minimum: any other score pays ½ σ² E‖s − s*‖² more (here 1.2 s*: ½ σ² 0.04 D/(s²+σ²)).
    # (the per-sample differences' measured spread gives the tolerance)
    best = dsm_loss(_optimal_score, x, sigma, noise=z, reduction="none")
    worse = dsm_loss(lambda xt, sg: 1.2 * _optimal_score(xt, sg), x, sigma, noise=z, reduction="none")
    _assert_mc(worse - best, 0.5 * sigma**2 * 0.04 * D / (S**2 + sigma**2))
    assert (worse - best).mean() > 0


def test_dsm_weighting_and_per_sample_sigmas():
    x = _gaussian_data(8)
    z = torch.randn(8, D, dtype=torch.float64)
    sigma = torch.linspace(0.1, 3.0, 8, dtype=torch.float64)
    score = lambda xt, sg: torch.zeros_like(xt)  # noqa: E731
    per = dsm_loss(score, x, sigma, noise=z, reduction="none")
    # with s = 0 the residual is z/σ, so σ² · ½‖z/σ‖² = ½‖z‖²
    assert torch.allclose(per, 0.5 * z.square().sum(1))
    unweighted = dsm_loss(score, x, sigma, noise=z, weighted=False, reduction="none")
    assert torch.allclose(unweighted * sigma**2, per)
    # a float sigma equals a constant per-sample one
    assert torch.allclose(dsm_loss(score, x, 0.5, noise=z), dsm_loss(score, x, torch.full((8,), 0.5, dtype=torch.float64), noise=z))


def test_ncsn_loss_averages_the_levels():
    """With the optimal score, E[loss] = (1/L) Σᵢ ½ D s²/(s² + σᵢ²) (levels uniform); the per-sample losses'
    standard deviation, measured, gives the tolerance."""
    torch.manual_seed(0)
    sigmas = torch.tensor([3.0, 1.0, 0.3, 0.1], dtype=torch.float64)
    x = _gaussian_data(100_000, seed=2)
    per = ncsn_loss(_optimal_score, x, sigmas, generator=torch.Generator().manual_seed(3), reduction="none")
    expected = dsm_optimal_loss_gaussian(S, sigmas, D).mean().item()
    se = per.std().item() / math.sqrt(len(per))
    assert abs(per.mean().item() - expected) < 5 * se


# A fixed linear model score s(x) = −A(x − m) on Gaussian data N(μ, Σ) in 2-D. Then
#   tr ∇s = −tr A, and E½‖s‖² = ½ tr(A Σ Aᵀ) + ½‖A(μ − m)‖², so
#   J = −tr A + ½ tr(A Σ Aᵀ) + ½‖A(μ − m)‖²  for exact SM and (in expectation over v) for both sliced variants.
A = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
M = torch.tensor([0.3, -0.2], dtype=torch.float64)
MU2 = torch.tensor([1.0, 0.5], dtype=torch.float64)
SIGMA2 = torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=torch.float64)


def _linear_score(x):
    return -(x - M) @ A.T


def _closed_form_sm():
    d = A @ (MU2 - M)
    return (-torch.trace(A) + 0.5 * torch.trace(A @ SIGMA2 @ A.T) + 0.5 * d @ d).item()


def _data2(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return MU2 + torch.randn(n, 2, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(SIGMA2).T


def _assert_mc(per_sample, expected):
    se = per_sample.std().item() / math.sqrt(len(per_sample))
    assert abs(per_sample.mean().item() - expected) < 5 * se, (per_sample.mean().item(), expected, se)


def test_exact_sm_matches_the_closed_form():
    per = exact_sm_loss(_linear_score, _data2(50_000), reduction="none")
    _assert_mc(per, _closed_form_sm())


def test_exact_sm_of_the_true_score_is_minus_half_the_fisher_trace():
    # s = ∇log p = −Σ⁻¹(x − μ): J = −tr Σ⁻¹ + ½ tr Σ⁻¹ = −½ tr Σ⁻¹, and every other linear score does worse.
    prec = torch.linalg.inv(SIGMA2)
    x = _data2(50_000, seed=1)
    per = exact_sm_loss(lambda y: -(y - MU2) @ prec.T, x, reduction="none")
    _assert_mc(per, -0.5 * torch.trace(prec).item())
    assert exact_sm_loss(_linear_score, x) > per.mean()


@pytest.mark.parametrize("projection", ["gaussian", "rademacher"])
@pytest.mark.parametrize("variance_reduction", [False, True])
def test_sliced_sm_agrees_with_exact_sm_in_expectation(projection, variance_reduction):
    x = _data2(50_000, seed=2)
    per = sliced_sm_loss(_linear_score, x, variance_reduction=variance_reduction, projection=projection,
                         generator=torch.Generator().manual_seed(0), reduction="none")
    _assert_mc(per, _closed_form_sm())


def test_variance_reduction_reduces_the_variance():
    x = _data2(20_000, seed=3)
    g = torch.Generator().manual_seed(0)
    plain = sliced_sm_loss(_linear_score, x, generator=g, reduction="none")
    vr = sliced_sm_loss(_linear_score, x, variance_reduction=True, generator=g, reduction="none")
    assert vr.var() < plain.var()


def test_sliced_sm_with_many_projections_approaches_exact_sm_for_a_network():
    """For a nonlinear score net, per point: the mean of R one-projection SSM estimates → the exact-SM value as
    R grows; the tolerance is 5 standard errors of that mean (measured over the R projections)."""
    torch.manual_seed(0)
    net = MLP(2, hidden=32, num_blocks=2).double()
    score = lambda y: net(y, torch.zeros(len(y), dtype=y.dtype))  # noqa: E731
    x = torch.randn(16, 2, dtype=torch.float64)
    exact = exact_sm_loss(score, x, reduction="none")  # (16,)
    r = 2000
    per = sliced_sm_loss(score, x.repeat(r, 1), generator=torch.Generator().manual_seed(1), reduction="none")
    per = per.reshape(r, 16)  # (R, 16)
    se = per.std(0) / math.sqrt(r)
    assert ((per.mean(0) - exact).abs() < 5 * se + 1e-9).all()
    # and with many projections per call the batch estimate is close too
    many = sliced_sm_loss(score, x, n_projections=500, variance_reduction=True,
                          generator=torch.Generator().manual_seed(2))
    assert abs(many.item() - exact.mean().item()) < 0.05 * abs(exact.mean().item()) + 0.05


def test_losses_are_differentiable_in_the_parameters():
    torch.manual_seed(0)
    net = MLP(2, hidden=16, num_blocks=1)
    x = torch.randn(32, 2)
    for loss in (exact_sm_loss(lambda y: net(y, torch.zeros(len(y))), x),
                 sliced_sm_loss(lambda y: net(y, torch.zeros(len(y))), x),
                 ncsn_loss(lambda y, s: net(y, s.log()) / s.reshape(-1, 1), x, torch.tensor([1.0, 0.1]))):
        net.zero_grad()
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
