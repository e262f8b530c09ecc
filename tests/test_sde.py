"""Score SDEs (dlcourse.sde) against closed forms, simulations and a second implementation.

Tolerances: Monte Carlo checks use 5 standard errors of the estimate (a false alarm about once in 3.5 million
runs per check), plus the discretisation bias where a scheme has one, stated next to each check.
"""

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from dlcourse.data.toy2d import GaussianMixture
from dlcourse.errors import DlcourseError
from dlcourse.sde import (VESDE, VPSDE, CosineVPSDE, SubVPSDE, divergence_exact, divergence_hutchinson, image_bits_per_dim,
                          log_likelihood, make_sde, ode_sample, odeint_dopri5, pc_sample, pc_sample_reference,
                          sde_score_loss)

SDES = [VESDE(), VPSDE(), SubVPSDE(), CosineVPSDE()]
F64 = torch.float64


def gaussian_logp(x, mean, var):
    """log N(x; mean, var I) per sample, x (B, D)."""
    d = x.shape[1]
    return -0.5 * d * math.log(2 * math.pi * var) - (x - mean).pow(2).sum(1) / (2 * var)


def gaussian_family(sde, mu, s2):
    """Data N(mu, s2 I): the marginal p_t the forward SDE produces is N(alpha mu, alpha² s2 + std²) for VP and
    sub-VP; for VE it is N(mu, s2 + σ(t)² - σ_min²), and the probability-flow ODE transports N(mu, c + σ(t)²) for
    any c, so we use c = s2 - σ_min² to stay exact. Returns (mean(t), var(t)) as functions of a (B,) t."""
    def coeffs(t):
        if isinstance(sde, VESDE):
            return torch.ones_like(t), s2 + sde.sigma(t) ** 2 - sde.sigma_min ** 2
        alpha, std = sde.marginal_coeffs(t)
        return alpha, alpha ** 2 * s2 + std ** 2
    def score(x, t):
        alpha, var = coeffs(t)
        return -(x - alpha[:, None] * mu) / var[:, None]
    return coeffs, score


@pytest.mark.parametrize("sde", SDES, ids=lambda s: s.name)
def test_perturbation_kernel_matches_simulated_forward_sde(sde):
    # Euler-Maruyama with 1000 steps of the forward SDE from a fixed x0; its O(dt) bias on these linear SDEs is
    # below 0.3% of the variance, under the 5-SE band (variance SE = sqrt(2/n) = 1.6% at n = 8000).
    # The cosine schedule's β(t) grows without bound near T, so its last check is at t = 0.9 (β ≈ 20, as VP's at 1).
    gen = torch.Generator().manual_seed(0)
    n, steps = 8000, 1000
    x0 = torch.tensor([[1.5, -0.5]], dtype=F64).expand(n, 2)
    x = x0.clone()
    checkpoints = {300: None, 600: None, 900 if isinstance(sde, CosineVPSDE) else 1000: None}
    dt = sde.T / steps
    for i in range(steps):
        t = torch.full((n,), i * dt, dtype=F64)
        x = x + sde.drift(x, t) * dt + sde.diffusion(t)[:, None] * math.sqrt(dt) * torch.randn(n, 2, generator=gen, dtype=F64)
        if i + 1 in checkpoints:
            checkpoints[i + 1] = x.clone()
    for k, xs in checkpoints.items():
        t = torch.full((n,), k * dt, dtype=F64)
        mean, std = sde.marginal_prob(x0, t)
        var = std[0] ** 2 - (sde.sigma_min ** 2 if isinstance(sde, VESDE) else 0.0)  # VE: exact kernel, see VESDE
        emp_var = xs.var(0)
        se_mean = (var / n).sqrt()
        assert (xs.mean(0) - mean[0]).abs().max() < 5 * se_mean, (sde.name, k, xs.mean(0), mean[0])
        assert ((emp_var / var - 1).abs() < 5 * math.sqrt(2 / n) + 3e-3).all(), (sde.name, k, emp_var, var)


def test_subvp_variance_is_below_vp():
    t = torch.linspace(0.01, 1, 50, dtype=F64)
    _, std_vp = VPSDE().marginal_coeffs(t)
    _, std_sub = SubVPSDE().marginal_coeffs(t)
    assert (std_sub ** 2 <= std_vp ** 2 + 1e-12).all() and (std_sub < std_vp).any()


@pytest.mark.parametrize("sde", SDES, ids=lambda s: s.name)
def test_probability_flow_likelihood_matches_exact_gaussian(sde):
    # Data N(mu, 0.25 I) in 2-D with its exact score at every t. The ODE maps x to z = x(T) and returns
    # log p_T_prior(z) + ∫div; replacing the SDE's prior by the true p_T(z) must give the exact log p_eps(x).
    # Tolerance: 1e-3 nats per dimension (the bar); float64 with rtol = atol = 1e-8 reaches ~1e-6.
    mu, s2 = torch.tensor([1.0, -0.5], dtype=F64), 0.25
    coeffs, score = gaussian_family(sde, mu, s2)
    x = torch.tensor([[0.8, -0.2], [1.6, -1.0], [0.0, 0.0]], dtype=F64)
    res = log_likelihood(sde, score, x, divergence="exact", rtol=1e-8, atol=1e-8)
    alpha_T, var_T = coeffs(torch.full((3,), sde.T, dtype=F64))
    alpha_0, var_0 = coeffs(torch.full((3,), sde.t_min, dtype=F64))  # the likelihood's start time
    true_prior = gaussian_logp(res.z, alpha_T[:, None] * mu, var_T[0])
    got = res.logp - res.prior_logp + true_prior
    want = gaussian_logp(x, alpha_0[:, None] * mu, var_0[0])
    assert (got - want).abs().max() / 2 < 1e-3, (got, want)
    assert res.nfe > 0


def test_probability_flow_likelihood_direct_for_centred_vp():
    # Centred data with variance 1: VP keeps p_t = N(0, I) for all t, so the prior is exact and logp needs no fix.
    sde = VPSDE()
    _, score = gaussian_family(sde, torch.zeros(2, dtype=F64), 1.0)
    x = torch.tensor([[0.3, -1.2], [2.0, 0.5]], dtype=F64)
    res = log_likelihood(sde, score, x, rtol=1e-8, atol=1e-8)
    assert torch.allclose(res.logp, gaussian_logp(x, 0.0, 1.0), atol=2e-3)


def test_hutchinson_matches_exact_divergence_within_its_variance():
    # Linear field f(x) = A x: div = tr A; the Rademacher estimator's variance is Σ_{i<j} (A_ij + A_ji)².
    gen = torch.Generator().manual_seed(1)
    d, m = 6, 20000
    A = torch.randn(d, d, generator=gen, dtype=F64)
    fn = lambda x, t: x @ A.T
    x = torch.randn(m, d, generator=gen, dtype=F64)
    t = torch.zeros(m, dtype=F64)
    exact = divergence_exact(fn, x, t)
    assert torch.allclose(exact, torch.trace(A).expand(m))
    v = torch.sign(torch.randn(m, d, generator=gen, dtype=F64))
    est = divergence_hutchinson(fn, x, t, v)
    var = sum(float(A[i, j] + A[j, i]) ** 2 for i in range(d) for j in range(i + 1, d))
    assert abs(float(est.mean()) - float(torch.trace(A))) < 5 * math.sqrt(var / m)
    assert abs(float(est.var()) / var - 1) < 5 * math.sqrt(2 / m) * 1.5  # kurtosis allowance


def test_hutchinson_likelihood_agrees_with_exact_on_average():
    sde = VPSDE()
    mix = GaussianMixture([0.5, 0.5], [[-1.0, 0.0], [1.0, 0.5]], 0.3, dtype=F64)
    score = lambda x, t: mix.score(x, *sde.marginal_coeffs(t))
    x = mix.sample(64, generator=torch.Generator().manual_seed(2))
    exact = log_likelihood(sde, score, x, rtol=1e-6, atol=1e-6).logp
    est = log_likelihood(sde, score, x, divergence="hutchinson", rtol=1e-6, atol=1e-6,
                         generator=torch.Generator().manual_seed(3)).logp
    diff = est - exact
    # unbiased per point: the mean difference over 64 points is within 5 SE of 0
    assert abs(float(diff.mean())) < 5 * float(diff.std()) / 8 + 1e-4


@pytest.mark.parametrize("predictor,corrector", [("reverse_diffusion", "none"), ("euler_maruyama", "none"),
                                                 ("reverse_diffusion", "langevin")])
def test_samplers_reproduce_mixture_weights_and_moments(predictor, corrector):
    # Exact score of a perturbed 2-D mixture (0.8 / 0.2). n = 2000: weight SE = sqrt(.16 / n) = 0.009, so the
    # 5-SE band is ±0.045; with 200 steps the samplers land within 0.01 of 0.8 (their discretisation bias).
    # Corrector-only sampling is left out on purpose: at 200 steps it still under-weights the big mode (about
    # 0.73), which is the paper's point that the predictor does most of the work (Song et al. 2021, Table 1).
    sde = VPSDE()
    mix = GaussianMixture([0.8, 0.2], [[2.0, 2.0], [-2.0, -2.0]], 0.25, dtype=F64)
    score = lambda x, t: mix.score(x, *sde.marginal_coeffs(t))
    n = 2000
    out = pc_sample(sde, score, (n, 2), predictor=predictor, corrector=corrector, n_steps=200, snr=0.16,
                    generator=torch.Generator().manual_seed(4), dtype=F64)
    frac = float((out.x.sum(1) > 0).double().mean())
    assert abs(frac - 0.8) < 5 * math.sqrt(0.16 / n), frac
    mean, cov = mix.mean(), mix.cov()
    se = (torch.diagonal(cov) / n).sqrt()
    assert ((out.x.mean(0) - mean).abs() < 5 * se + 0.02).all(), (out.x.mean(0), mean)
    assert torch.allclose(torch.cov(out.x.T), cov, rtol=0.1, atol=0.1)
    assert out.nfe == 200 * ((predictor != "none") + (corrector != "none")) + 1  # + the final denoising


def test_ode_sampler_reproduces_mixture_and_is_deterministic():
    sde = VPSDE()
    mix = GaussianMixture([0.8, 0.2], [[2.0, 2.0], [-2.0, -2.0]], 0.25, dtype=F64)
    score = lambda x, t: mix.score(x, *sde.marginal_coeffs(t))
    x_T = sde.prior_sample((2000, 2), generator=torch.Generator().manual_seed(5), dtype=F64)
    a = ode_sample(sde, score, x_T=x_T, rtol=1e-5, atol=1e-5)
    b = ode_sample(sde, score, x_T=x_T, rtol=1e-5, atol=1e-5)
    assert torch.equal(a.x, b.x)
    frac = float((a.x.sum(1) > 0).double().mean())
    assert abs(frac - 0.8) < 5 * math.sqrt(0.16 / 2000)
    assert 20 < a.nfe < 2000


@pytest.mark.parametrize("sde", SDES, ids=lambda s: s.name)
@pytest.mark.parametrize("predictor,corrector", [("reverse_diffusion", "langevin"), ("euler_maruyama", "none")])
def test_batched_sampler_equals_written_out_loop(sde, predictor, corrector):
    mix = GaussianMixture([0.5, 0.5], [[1.0, 1.0], [-1.0, -1.0]], 0.5, dtype=F64)
    score = lambda x, t: mix.score(x, *sde.marginal_coeffs(t))
    n, steps, seed = 5, 20, 6
    fast = pc_sample(sde, score, (n, 2), predictor=predictor, corrector=corrector, n_steps=steps,
                     generator=torch.Generator().manual_seed(seed), dtype=F64).x
    gen = torch.Generator().manual_seed(seed)  # replay the same draws in the same order
    x_T = sde.prior_sample((n, 2), generator=gen, dtype=F64)
    draws = ((corrector != "none") + (predictor != "none")) * steps
    noises = [torch.randn(n, 2, generator=gen, dtype=F64) for _ in range(draws)]
    slow = pc_sample_reference(sde, score, x_T, noises, predictor=predictor, corrector=corrector, n_steps=steps)
    assert torch.allclose(fast, slow, rtol=1e-10, atol=1e-10)


def test_dopri5_matches_scipy_and_closed_form():
    # y' = -y + sin(t) y² (nonlinear), against scipy's RK45 at tight tolerance; and y' = A y against expm.
    f = lambda t, y: -y + torch.sin(t) * y ** 2
    y0 = torch.tensor([0.5, -0.3, 1.1], dtype=F64)
    ts = torch.tensor([0.0, 0.7, 2.0], dtype=F64)
    sol = odeint_dopri5(f, y0, ts, rtol=1e-9, atol=1e-10)
    ref = solve_ivp(lambda t, y: -y + np.sin(t) * y ** 2, (0, 2), y0.numpy(), t_eval=[0.7, 2.0], rtol=1e-11, atol=1e-12)
    assert np.allclose(sol.ys[1:].numpy(), ref.y.T, atol=1e-7)
    A = torch.tensor([[-0.5, 1.0], [-1.0, -0.5]], dtype=F64)
    y0 = torch.tensor([1.0, 0.0], dtype=F64)
    sol = odeint_dopri5(lambda t, y: A @ y, y0, torch.tensor([1.0, 0.0], dtype=F64), rtol=1e-9, atol=1e-10)  # backward
    assert torch.allclose(sol.ys[-1], torch.linalg.matrix_exp(-A) @ y0, atol=1e-7)


def test_dsm_loss_with_exact_score_equals_closed_form():
    # Gaussian data N(0, s² I): with the exact score of p_t, E‖std·s + z‖² = D α² s² / v with v = α² s² + std²
    # (the irreducible part of the denoising loss), and the likelihood weighting divides by std² and multiplies by g².
    sde, D, n, s2 = VPSDE(), 3, 200000, 0.5
    gen = torch.Generator().manual_seed(7)
    _, score = gaussian_family(sde, torch.zeros(D, dtype=F64), s2)
    x0 = math.sqrt(s2) * torch.randn(n, D, generator=gen, dtype=F64)
    t = torch.full((n,), 0.3, dtype=F64)
    alpha, std = sde.marginal_coeffs(t[:1])
    v = alpha ** 2 * s2 + std ** 2
    want = 0.5 * D * alpha ** 2 * s2 / v
    per = sde_score_loss(score, sde, x0, t=t, generator=gen, reduction="none")
    assert abs(float(per.mean() - want)) < 5 * float(per.std()) / math.sqrt(n)
    per_l = sde_score_loss(score, sde, x0, t=t, weighting="likelihood", generator=gen, reduction="none")
    want_l = want * sde.diffusion(t[:1]) ** 2 / std ** 2
    assert abs(float(per_l.mean() - want_l)) < 5 * float(per_l.std()) / math.sqrt(n)
    # a wrong score (off by a factor of 2) costs more
    bad = sde_score_loss(lambda x, t: 2 * score(x, t), sde, x0, t=t, generator=gen)
    assert bad > want * 1.05


def test_image_bits_per_dim_of_uniform_model_is_eight():
    # A model whose p_0 is uniform on [0,1]^D gives exactly 8 bits/dim; here: standard-normal data under a
    # VP SDE (p_t = N(0, I) for all t), evaluated through the centred map, is checked against its closed form.
    sde = VPSDE()
    _, score = gaussian_family(sde, torch.zeros(4, dtype=F64), 1.0)
    x = torch.rand(3, 1, 2, 2, generator=torch.Generator().manual_seed(8), dtype=F64)
    score_img = lambda z, t: score(z.reshape(z.shape[0], -1), t).reshape(z.shape)
    gen = torch.Generator().manual_seed(9)
    bpd, nfe = image_bits_per_dim(sde, score_img, x, generator=gen, rtol=1e-7, atol=1e-7)
    # replay the dequantisation noise to get the exact answer
    from dlcourse.sde import dequantize
    y = dequantize(x, generator=torch.Generator().manual_seed(9))
    z = (2 * y - 1).reshape(3, -1)
    logp_y = gaussian_logp(z, 0.0, 1.0) + 4 * math.log(2)
    want = (-logp_y + 4 * math.log(256)) / (4 * math.log(2))
    assert torch.allclose(bpd, want, atol=1e-4) and nfe > 0


def test_bad_names_give_one_line_errors():
    with pytest.raises(DlcourseError, match="unknown SDE"):
        make_sde("vx")
    with pytest.raises(DlcourseError, match="unknown predictor"):
        pc_sample(VPSDE(), lambda x, t: x, (2, 2), predictor="heun")
    with pytest.raises(DlcourseError, match="sigma_min < sigma_max"):
        VESDE(sigma_min=5, sigma_max=1)
