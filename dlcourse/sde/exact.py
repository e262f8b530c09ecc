"""Exact laws of the samplers on Gaussian data, for the lectures, the tests and the benchmark.

For one-dimensional data N(μ, s²) the score of p_t is linear in x, so every predictor step is an affine map plus
Gaussian noise, x' = a x + b + c z. Starting from the true p_T, the sampler's output is Gaussian too, and its mean
and variance after any number of steps follow from a, b and c alone (read off the step function with zero and unit
noise). Comparing them with p at the sampler's end time measures a discretisation exactly, with no Monte Carlo.
"""

from __future__ import annotations

from typing import Callable

import torch

from .samplers import time_grid
from .sdes import SDE, VESDE

__all__ = ["gaussian_marginal", "gaussian_score", "gaussian_output_law"]

F64 = torch.float64


def gaussian_marginal(sde: SDE, t: torch.Tensor, mean: float, var: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance (B,) of p_t for data N(mean, var) (VE: σ(t)² - σ_min², the exact kernel's variance)."""
    alpha, std = sde.marginal_coeffs(t)
    extra = -sde.sigma_min ** 2 if isinstance(sde, VESDE) else 0.0
    return alpha * mean, alpha ** 2 * var + std ** 2 + extra


def gaussian_score(sde: SDE, mean: float, var: float) -> Callable:
    """The exact score s(x, t) of p_t for data N(mean, var), x (B, 1)."""
    def score(x, t):
        m, v = gaussian_marginal(sde, t, mean, var)
        return -(x - m[:, None]) / v[:, None]
    return score


def gaussian_output_law(sde: SDE, step: Callable, n_steps: int, mean: float, var: float) -> tuple[float, float]:
    """The exact mean and variance of ``n_steps`` predictor steps ``step(sde, x, score, t, dt, z)`` on the time grid
    of `pc_sample`, started from the true p_T of data N(mean, var) and fed the exact score."""
    times, dt = time_grid(sde, n_steps, dtype=F64)
    m0, v0 = gaussian_marginal(sde, times[:1], mean, var)
    m, v = float(m0), float(v0)
    score = gaussian_score(sde, mean, var)
    pts, zero, one = torch.tensor([[0.0], [1.0]], dtype=F64), torch.zeros(2, 1, dtype=F64), torch.ones(2, 1, dtype=F64)
    for t in times:
        tt = t.reshape(1).expand(2)
        f0, f1 = step(sde, pts, score(pts, tt), tt, dt, zero)[:, 0].tolist()
        c = float(step(sde, pts, score(pts, tt), tt, dt, one)[0, 0]) - f0
        a, b = f1 - f0, f0
        m, v = a * m + b, a * a * v + c * c
    return m, v
