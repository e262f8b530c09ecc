"""The step convention of the SDE samplers, the final denoising step, ancestral sampling, the probability-flow
predictor and VP's two discretisations, against closed forms.

On Gaussian data N(μ, s² I) with its exact score every predictor is an affine map plus Gaussian noise, so the
mean and variance of the samples after any number of steps can be propagated exactly (`_propagate`): those
checks need no Monte Carlo tolerance. Monte Carlo checks use 5 standard errors.
"""

import math

import pytest
import torch

from dlcourse.errors import DlcourseError
from dlcourse.sde.exact import gaussian_marginal, gaussian_output_law, gaussian_score
from dlcourse.sde import (VESDE, VPSDE, CosineVPSDE, SubVPSDE, ancestral_sampling_step, ode_sample, pc_sample,
                          probability_flow_step, reverse_diffusion_step, time_grid, tweedie_denoise)

F64 = torch.float64
MU, S2 = 0.7, 0.3  # one-dimensional data N(0.7, 0.3)


def _coeffs(sde, t):
    """(α(t), the variance of p_t) for the data N(MU, S2): the mean of p_t is α MU."""
    return gaussian_marginal(sde, t, 1.0, S2)


def _score(sde):
    return gaussian_score(sde, MU, S2)


def _propagate(sde, step, n_steps):
    return gaussian_output_law(sde, step, n_steps, MU, S2)


def test_the_exact_law_matches_simulation():
    # the propagated mean and variance against 40000 simulated chains of the same predictor (5 SE)
    sde, n = VPSDE(), 40000
    m, v = _propagate(sde, reverse_diffusion_step, 50)
    x = pc_sample(sde, _score(sde), (n, 1), predictor="reverse_diffusion", corrector="none", n_steps=50,
                  denoise=False, generator=torch.Generator().manual_seed(9), dtype=F64).x
    assert abs(float(x.mean()) - m) < 5 * math.sqrt(v / n) and abs(float(x.var()) / v - 1) < 5 * math.sqrt(2 / n)


def _true_end(sde, n_steps):
    """Mean and variance of p at the time the sampler ends (t_last - dt, clamped at 0)."""
    times, dt = time_grid(sde, n_steps, dtype=F64)
    t_end = torch.tensor([max(float(times[-1]) - dt, 0.0)], dtype=F64)
    alpha, var = _coeffs(sde, t_end)
    return float(alpha * MU), float(var)


@pytest.mark.parametrize("sde", [VPSDE(), VESDE()], ids=lambda s: s.name)
def test_ancestral_and_reverse_diffusion_agree_as_steps_grow(sde):
    # Both are consistent discretisations of the reverse SDE: their output distributions (here exact, Gaussian)
    # approach each other and the truth as steps grow, at first order (VP at 1000 steps: 0.3010 against 0.3018 in
    # variance, the truth 0.3000; VE, whose σ spans 0.01 .. 50, 0.2976 against 0.3028).
    gaps = []
    for n in (50, 200, 1000):
        m_a, v_a = _propagate(sde, ancestral_sampling_step, n)
        m_r, v_r = _propagate(sde, reverse_diffusion_step, n)
        gaps.append(abs(v_a / v_r - 1) + abs(m_a - m_r))
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 0.02, gaps
    m_true, v_true = _true_end(sde, 1000)
    m_a, v_a = _propagate(sde, ancestral_sampling_step, 1000)
    assert abs(m_a - m_true) < 0.01 and abs(v_a / v_true - 1) < 0.02, (m_a, v_a, m_true, v_true)


def test_ancestral_sampling_matches_reverse_diffusion_in_distribution_by_simulation():
    # The same statement by Monte Carlo with pc_sample itself, in 2-D (each coordinate N(MU, S2)): n = 20000, 500
    # steps; means agree within 5 SE of a difference of two independent means, variances within 5 SE (sqrt(2/n) each).
    sde, n = VPSDE(), 20000
    score = _score(sde)
    a = pc_sample(sde, score, (n, 2), predictor="ancestral", corrector="none", n_steps=500, denoise=False,
                  generator=torch.Generator().manual_seed(0), dtype=F64).x
    r = pc_sample(sde, score, (n, 2), predictor="reverse_diffusion", corrector="none", n_steps=500, denoise=False,
                  generator=torch.Generator().manual_seed(1), dtype=F64).x
    se_mean = math.sqrt(2 * S2 / n)
    assert ((a.mean(0) - r.mean(0)).abs() < 5 * se_mean).all()
    assert ((a.var(0) / r.var(0) - 1).abs() < 5 * 2 * math.sqrt(2 / n)).all()
    assert ((a.mean(0) - MU).abs() < 5 * se_mean).all()


def test_subvp_has_no_ancestral_sampler():
    with pytest.raises(DlcourseError, match="no discrete ancestral sampler"):
        pc_sample(SubVPSDE(), lambda x, t: -x, (4, 2), predictor="ancestral", corrector="none", n_steps=3)


@pytest.mark.parametrize("sde", [VPSDE(), VESDE(), SubVPSDE(), CosineVPSDE()], ids=lambda s: s.name)
def test_tweedie_denoise_is_the_posterior_mean(sde):
    # For Gaussian data E[x0 | xt] = MU + S2 α (xt - α MU) / (α² S2 + std²) in closed form.
    t = torch.tensor([0.05, 0.3, 0.8], dtype=F64)
    x = torch.tensor([[0.2], [-1.0], [2.5]], dtype=F64)
    alpha, var = _coeffs(sde, t)
    want = MU + S2 * alpha[:, None] * (x - alpha[:, None] * MU) / var[:, None]
    got = tweedie_denoise(sde, x, _score(sde)(x, t), t)
    if isinstance(sde, VESDE):  # the paper's std = σ(t) instead of sqrt(σ(t)² - σ_min²): off by σ_min² s
        assert torch.allclose(got, want, atol=sde.sigma_min ** 2 * 10)
    else:
        assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)


def test_final_denoising_removes_the_last_noise():
    # VE at its last time still has σ(eps) = 0.01-ish noise; one Tweedie step moves the sample variance to the data's
    # posterior-mean variance, below that of p_eps (exactly: S2² / (S2 + σ²) < S2 + σ²).
    sde = VESDE()
    m_r, v_r = _propagate(sde, reverse_diffusion_step, 200)
    out = pc_sample(sde, _score(sde), (20000, 1), predictor="reverse_diffusion", corrector="none", n_steps=200,
                    generator=torch.Generator().manual_seed(2), dtype=F64)
    assert out.nfe == 201
    raw = pc_sample(sde, _score(sde), (20000, 1), predictor="reverse_diffusion", corrector="none", n_steps=200,
                    denoise=False, generator=torch.Generator().manual_seed(2), dtype=F64)
    assert raw.nfe == 200 and float(out.x.var()) < float(raw.x.var())
    assert abs(float(raw.x.var()) / v_r - 1) < 5 * math.sqrt(2 / 20000)


def test_a_step_function_of_ones_own_plugs_into_pc_sample():
    # A student's predictor with the package's signature gives the same samples as the built-in one.
    sde = VPSDE()

    def my_step(sde, x, score, t, dt, z):
        beta = sde.discrete_beta(t, dt)[:, None]
        return (2 - torch.sqrt(1 - beta)) * x + beta * score + torch.sqrt(beta) * z

    kw = dict(corrector="none", n_steps=30, generator=None, dtype=F64)
    ours = pc_sample(sde, _score(sde), (50, 1), predictor=my_step, **{**kw, "generator": torch.Generator().manual_seed(3)})
    pkg = pc_sample(sde, _score(sde), (50, 1), predictor="reverse_diffusion",
                    **{**kw, "generator": torch.Generator().manual_seed(3)})
    assert torch.allclose(ours.x, pkg.x, rtol=1e-12, atol=1e-12) and ours.nfe == pkg.nfe


def test_probability_flow_predictor_converges_to_the_ode():
    # Deterministic: from the same x(T) the probability-flow steps approach the adaptive ODE solve at first order
    # (largest gap 0.061 at 500 steps, 0.015 at 2000, 0.0038 at 8000).
    sde = VPSDE()
    x_T = sde.prior_sample((64, 1), generator=torch.Generator().manual_seed(4), dtype=F64)
    ode = ode_sample(sde, _score(sde), x_T=x_T, rtol=1e-8, atol=1e-8, denoise=False).x
    gaps = [float((pc_sample(sde, _score(sde), (64, 1), predictor=probability_flow_step, corrector="none",
                             n_steps=n, x_init=x_T, denoise=False, dtype=F64).x - ode).abs().max())
            for n in (500, 2000)]
    assert gaps[1] < 0.02 and gaps[1] < gaps[0] / 3, gaps


def test_vp_discretisations_trade_stability_for_accuracy():
    # DDPM's table β_i = β(t) Δt exceeds 1 below 20 steps (NaN), the exact-OU β_i never does; at 20 and 100 steps
    # the table is the more accurate (relative variance error of the predictor's output on Gaussian data).
    exact, ddpm = VPSDE(discretization="exact"), VPSDE(discretization="ddpm")
    _, v = _propagate(ddpm, reverse_diffusion_step, 10)
    assert math.isnan(v)
    assert math.isfinite(_propagate(exact, reverse_diffusion_step, 10)[1])
    for n in (20, 100):
        v_true = _true_end(exact, n)[1]
        err_exact = abs(_propagate(exact, reverse_diffusion_step, n)[1] / v_true - 1)
        err_ddpm = abs(_propagate(ddpm, reverse_diffusion_step, n)[1] / v_true - 1)
        assert err_ddpm < err_exact, (n, err_exact, err_ddpm)


def test_cosine_schedule_matches_nichol_and_dhariwal():
    # ᾱ(t) = cos²(π/2 (t + s)/(1 + s)) / cos²(π/2 s/(1 + s)) (their eq. 17) is the kernel's α², and β = -d log ᾱ / dt.
    sde, s = CosineVPSDE(), 0.008
    t = torch.linspace(0.0, 0.99, 12, dtype=F64)
    f = lambda u: torch.cos(0.5 * math.pi * (u + s) / (1 + s)) ** 2
    alpha_bar = f(t) / f(torch.zeros(1, dtype=F64))
    alpha, std = sde.marginal_coeffs(t)
    assert torch.allclose(alpha ** 2, alpha_bar, rtol=1e-12) and torch.allclose(std ** 2, 1 - alpha_bar, atol=1e-12)
    tt = t.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(torch.log(f(tt)).sum(), tt)
    assert torch.allclose(sde.beta(t), -grad, rtol=1e-10)
    assert sde.T < 1 and float(sde.marginal_coeffs(torch.tensor([sde.T], dtype=F64))[0]) < 2e-3
