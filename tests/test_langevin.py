"""Langevin samplers: the step convention, its stationary variance, Figure 3 of Song & Ermon (2019), and the
batched sampler against the written-out Algorithm 1.

Tolerances:
- a sample variance of N independent Gaussian chains has standard error v √(2/(N−1)); we allow 5 of them.
- a mode fraction of N independent chains has binomial standard error √(p(1−p)/N); we allow 5 of them plus the
  bias of the finite sampler, measured once with 20 000 chains and two seeds (noted at each test).
"""

import math

import pytest
import torch

from dlcourse.data.toy2d import two_gaussians
from dlcourse.score import (annealed_langevin_dynamics, annealed_langevin_reference, annealed_step_sizes,
                            geometric_sigmas, langevin_dynamics, langevin_step, stationary_variance_gaussian,
                            tweedie_denoise)


def test_langevin_step_conventions():
    x, s, z = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.5, -1.0]]), torch.tensor([[0.3, 0.1]])
    a = 0.04
    # paper (Song & Ermon 2019, eq. 2): x + a/2 s + √a z
    assert torch.allclose(langevin_step(x, s, a, z), x + 0.02 * s + 0.2 * z)
    # code: x + a s + √(2a) z
    assert torch.allclose(langevin_step(x, s, a, z, convention="code"), x + 0.04 * s + math.sqrt(0.08) * z)
    # per-sample step sizes broadcast with unsqueeze_as
    xb = torch.zeros(3, 2, 2)
    out = langevin_step(xb, torch.ones_like(xb), torch.tensor([0.0, 1.0, 4.0]), torch.zeros_like(xb))
    assert torch.allclose(out[:, 0, 0], torch.tensor([0.0, 0.5, 2.0]))
    with pytest.raises(Exception, match="convention"):
        langevin_step(x, s, a, z, convention="half")


def test_stationary_variance_formula():
    # the brief's form ε/(1 − (1 − ε/(2s²))²) for x ← x + (ε/2)(−x/s²) + √ε z
    for eps, s2 in [(0.1, 1.0), (0.5, 2.0), (1e-3, 0.01)]:
        assert stationary_variance_gaussian(eps, s2) == pytest.approx(eps / (1 - (1 - eps / (2 * s2)) ** 2))
        assert stationary_variance_gaussian(eps, s2) == pytest.approx(s2 / (1 - eps / (4 * s2)))
        assert stationary_variance_gaussian(eps, s2, "code") == pytest.approx(stationary_variance_gaussian(2 * eps, s2))
    assert stationary_variance_gaussian(5.0, 1.0) == math.inf  # unstable: α ≥ 4 s²


@pytest.mark.parametrize("convention,alpha,expected_factor", [
    ("paper", 0.5, 1 / (1 - 0.5 / 4)),  # α = 0.5 s²: v = s²/(1 − α/(4s²)) = 1.143 s²
    ("code", 0.5, 1 / (1 - 1.0 / 4)),   # α' = 0.5 s² is α = s² in the paper's convention: v = 1.333 s²
])
def test_discretised_chain_has_the_predicted_stationary_variance(convention, alpha, expected_factor):
    """Target N(0, s²), s = 1.5; 40 000 independent chains, 150 steps (the start is forgotten: contraction per
    step ≤ 0.875, 0.875¹⁵⁰ < 1e-8). The two conventions differ by 17%, the tolerance (5 se) is 3.5%."""
    s2 = 1.5**2
    n = 40_000
    g = torch.Generator().manual_seed(0)
    x0 = 3.0 * torch.randn(n, 1, generator=g, dtype=torch.float64)
    x = langevin_dynamics(lambda y: -y / s2, x0, alpha * s2, 150, convention=convention, generator=g)
    v = stationary_variance_gaussian(alpha * s2, s2, convention)
    assert v == pytest.approx(expected_factor * s2)
    se = v * math.sqrt(2 / (n - 1))
    assert abs(x.var().item() - v) < 5 * se, (x.var().item(), v, se)
    assert abs(x.mean().item()) < 5 * math.sqrt(v / n)


def test_annealed_step_sizes_and_tweedie():
    sigmas = torch.tensor([4.0, 2.0, 1.0, 0.5])
    assert torch.allclose(annealed_step_sizes(sigmas, 0.1), 0.1 * sigmas**2 / 0.25)
    # Tweedie for N(μ, s²) data: E[x | x̃] = μ + s²/(s² + σ²)(x̃ − μ) = x̃ + σ² ∇log q_σ(x̃)
    mu, s2, sigma = 1.5, 0.5, 0.8
    xt = torch.linspace(-3, 3, 7)
    score = -(xt - mu) / (s2 + sigma**2)
    assert torch.allclose(tweedie_denoise(xt, score, sigma), mu + s2 / (s2 + sigma**2) * (xt - mu))


def _mode_fraction(mix, x):
    """Fraction of samples whose most likely component is the first, the weight-0.8 mode at (5, 5)."""
    return (mix.component_of(x) == 0).double().mean().item()


def test_figure3_plain_langevin_keeps_the_initial_weights_annealed_recovers_them():
    """Song & Ermon (2019), Figure 3: 0.8 N((5,5), I) + 0.2 N((−5,−5), I) with its exact (perturbed) scores,
    4000 chains started uniform in [−8, 8]².

    Plain Langevin (ε = 0.1, 1000 steps) leaves each chain in the basin where it started: the (5,5) fraction stays
    at the initial fraction of points on that side of the basin boundary x₁ + x₂ = −ln 4 / 10 ≈ −0.14, which for the
    uniform start is 0.5 + 0.14/16 ≈ 0.509 (chains that start within a noise step, √0.1 ≈ 0.3, of the boundary
    may go either way: about 3% of them, hence the 0.03 allowance). Annealed Langevin with the paper's settings (σ 20 → 1 in 10 levels,
    ε = 0.1, T = 100, paper convention) gives 0.779 (measured: 0.7784, 0.7793 with 20 000 chains; a bias of
    −0.021 from the finite T; T = 300 gives 0.792). Tolerance: bias + 5 se, se = √(0.8·0.2/4000) = 0.0063.
    """
    mix = two_gaussians(dtype=torch.float64)
    n = 4000
    se = math.sqrt(0.8 * 0.2 / n)
    g = torch.Generator().manual_seed(0)
    x0 = 16 * torch.rand(n, 2, generator=g, dtype=torch.float64) - 8
    start = (x0.sum(1) > -math.log(4) / 10).double().mean().item()

    plain = langevin_dynamics(mix.score, x0, 0.1, 1000, generator=g)
    frac_plain = _mode_fraction(mix, plain)
    assert abs(frac_plain - start) < 0.03  # no chain crosses the barrier once it has fallen into a basin
    assert abs(frac_plain - 0.509) < 5 * math.sqrt(0.25 / n)

    sigmas = geometric_sigmas(20.0, 1.0, 10).double()
    annealed = annealed_langevin_dynamics(lambda x, s: mix.score(x, sigma=s), x0, sigmas, 0.1, 100, generator=g)
    frac_annealed = _mode_fraction(mix, annealed)
    assert abs(frac_annealed - 0.8) < 0.021 + 5 * se, frac_annealed
    assert frac_annealed - frac_plain > 0.2
    # and the modes themselves are right: each sample's law at the last level is N(μ_k, (1 + σ_L²) I)
    top = annealed[mix.component_of(annealed) == 0]
    assert torch.allclose(top.mean(0), torch.tensor([5.0, 5.0], dtype=torch.float64), atol=0.15)


def _mixture_score(x, sigma):
    return two_gaussians(dtype=x.dtype).score(x, sigma=sigma)


@pytest.mark.parametrize("convention,denoise", [("paper", False), ("code", True)])
def test_batched_sampler_equals_the_written_out_algorithm(convention, denoise):
    sigmas = geometric_sigmas(10.0, 0.5, 5)
    x0 = 16 * torch.rand(256, 2, generator=torch.Generator().manual_seed(0)) - 8
    fast = annealed_langevin_dynamics(_mixture_score, x0, sigmas, 0.05, 20, convention=convention, denoise=denoise,
                                      generator=torch.Generator().manual_seed(1))
    readable = annealed_langevin_reference(_mixture_score, x0, sigmas, 0.05, 20, convention=convention,
                                           denoise=denoise, generator=torch.Generator().manual_seed(1))
    # float32: the in-place updates round differently from the written-out expression (~1e-6 of |x| per step)
    assert torch.allclose(fast, readable, atol=1e-4, rtol=1e-5)
    # in float64 the two agree to round-off
    fast64 = annealed_langevin_dynamics(_mixture_score, x0.double(), sigmas.double(), 0.05, 20, convention=convention,
                                        denoise=denoise, generator=torch.Generator().manual_seed(1))
    readable64 = annealed_langevin_reference(_mixture_score, x0.double(), sigmas.double(), 0.05, 20,
                                             convention=convention, denoise=denoise,
                                             generator=torch.Generator().manual_seed(1))
    assert torch.allclose(fast64, readable64, atol=1e-10, rtol=0)
    # and the global RNG drives both the same way when no generator is given
    torch.manual_seed(2)
    a = annealed_langevin_dynamics(_mixture_score, x0, sigmas, 0.05, 3, convention=convention)
    torch.manual_seed(2)
    b = annealed_langevin_reference(_mixture_score, x0, sigmas, 0.05, 3, convention=convention)
    assert torch.allclose(a, b, atol=1e-4, rtol=1e-5)


def test_recorded_chains():
    sigmas = geometric_sigmas(10.0, 0.5, 4)
    x0 = torch.randn(50, 2)
    kwargs = dict(generator=torch.Generator().manual_seed(0))
    out, frames = annealed_langevin_dynamics(_mixture_score, x0, sigmas, 0.05, 10, record_every=5, **kwargs)
    assert frames.shape == (1 + 40 // 5, 50, 2)
    assert torch.equal(frames[0], x0) and torch.equal(frames[-1], out)
    # the recording does not change the samples, and the input is not modified
    again = annealed_langevin_dynamics(_mixture_score, x0, sigmas, 0.05, 10, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    # with denoising: steps 0, 7, ..., 35, the last step (40), then the denoised output
    out, frames = annealed_langevin_dynamics(_mixture_score, x0, sigmas, 0.05, 10, record_every=7, denoise=True,
                                             generator=torch.Generator().manual_seed(0))
    assert frames.shape == (1 + 40 // 7 + 2, 50, 2) and torch.equal(frames[-1], out)
    undenoised = annealed_langevin_dynamics(_mixture_score, x0, sigmas, 0.05, 10, generator=torch.Generator().manual_seed(0))
    assert torch.equal(frames[-2], undenoised)
    out, frames = annealed_langevin_dynamics(_mixture_score, x0, sigmas, 0.05, 10, record_every=5, denoise=True,
                                             generator=torch.Generator().manual_seed(0))
    assert frames.shape == (1 + 40 // 5 + 1, 50, 2) and torch.equal(frames[-2], undenoised)
    # plain Langevin records the same way
    out, frames = langevin_dynamics(lambda x: -x, x0, 0.1, 10, record_every=3, generator=torch.Generator())
    assert frames.shape == (1 + 3 + 1, 50, 2) and torch.equal(frames[-1], out)


def test_samplers_keep_dtype_and_device():
    x0 = torch.randn(10, 2, dtype=torch.float64)
    out = annealed_langevin_dynamics(_mixture_score, x0, geometric_sigmas(5.0, 1.0, 3), 0.1, 2)
    assert out.dtype == torch.float64 and out.device == x0.device
    out = langevin_dynamics(lambda x: -x, x0, 0.1, 2)
    assert out.dtype == torch.float64
