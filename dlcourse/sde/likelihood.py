"""Exact likelihoods through the probability-flow ODE (Song et al. 2021, Section 4.3 and Appendix D.2).

Along the ODE dx/dt = f̃(x, t) = f(x, t) - ½ g(t)² s(x, t), the instantaneous change of variables (Chen et al. 2018,
"Neural ordinary differential equations", Theorem 1) gives

    log p_0(x(0)) = log p_T(x(T)) + ∫_0^T ∇·f̃(x(t), t) dt                (Song et al. 2021, eq. 39)

so one solve of the augmented state [x, ∫∇·f̃] from t_min to T yields log p_0 exactly, up to the solver's tolerance
and the score model's error. The divergence is computed exactly with D backward passes (fine in 2-D), or estimated
with Hutchinson's trace estimator E_v[vᵀ (∂f̃/∂x) v] with Rademacher or Gaussian v held fixed over the solve
(Grathwohl et al. 2019, FFJORD, eq. 7): unbiased, one backward pass, variance 2‖offdiag‖²_F (Rademacher).

The integration starts at ``eps`` (default ``sde.t_min`` = 1e-5 for every SDE, as score_sde's likelihood code
does; the sampler's end time of VP, 1e-3, moves image bits/dim by about 0.1). Each evaluation of the augmented
field runs the score network once: the drift and its divergence come from the same forward pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import DlcourseError
from .ode import odeint_dopri5
from .sdes import SDE, ScoreFn

__all__ = ["divergence_exact", "divergence_hutchinson", "log_likelihood", "LikelihoodResult", "bits_per_dim",
           "dequantize", "image_bits_per_dim"]

Field = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _exact_div(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Σ_i ∂out_i/∂x_i (B,) of an output computed from x (requires_grad), one backward pass per dimension."""
    flat = out.reshape(x.shape[0], -1)  # (B, D)
    div = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    for i in range(flat.shape[1]):
        (g,) = torch.autograd.grad(flat[:, i].sum(), x, retain_graph=i < flat.shape[1] - 1)
        div = div + g.reshape(x.shape[0], -1)[:, i]
    return div.detach()


def _hutchinson_div(out: torch.Tensor, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """vᵀ (∂out/∂x) v (B,), one backward pass."""
    (vjp,) = torch.autograd.grad((out * v).sum(), x)
    return (vjp * v).reshape(x.shape[0], -1).sum(1).detach()


def divergence_exact(fn: Field, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """∇·fn(x, t) = Σ_i ∂fn_i/∂x_i for each sample (B,), with one backward pass per dimension."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        return _exact_div(fn(x, t), x)


def divergence_hutchinson(fn: Field, x: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """vᵀ (∂fn/∂x) v for each sample (B,): Hutchinson's unbiased estimate of the divergence when E[v vᵀ] = I."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        return _hutchinson_div(fn(x, t), x, v)


@dataclass
class LikelihoodResult:
    logp: torch.Tensor    #: log p_0(x) in nats, per sample (B,)
    prior_logp: torch.Tensor  #: log p_T(x(T)) (B,)
    z: torch.Tensor       #: the latent x(T) the ODE maps x to (B, ...)
    nfe: int              #: evaluations of the augmented field (each costs one score call and its divergence)


def log_likelihood(sde: SDE, score_fn: ScoreFn, x: torch.Tensor, *, eps: float | None = None,
                   divergence: str = "exact", noise: str = "rademacher", rtol: float = 1e-5, atol: float = 1e-5,
                   generator: torch.Generator | None = None) -> LikelihoodResult:
    """log p_eps(x) under the probability-flow ODE of ``sde`` with score ``score_fn`` (eq. 39), integrating from
    ``eps`` (default ``sde.t_min``) to sde.T. ``divergence`` is "exact" or "hutchinson" (with ``noise``
    "rademacher" or "gaussian")."""
    if divergence not in ("exact", "hutchinson"):
        raise DlcourseError(f"divergence must be 'exact' or 'hutchinson', got {divergence!r}")
    if noise not in ("rademacher", "gaussian"):
        raise DlcourseError(f"noise must be 'rademacher' or 'gaussian', got {noise!r}")
    B, shape = x.shape[0], x.shape
    D = x[0].numel()
    eps = sde.t_min if eps is None else float(eps)
    if not 0 <= eps < sde.T:
        raise DlcourseError(f"the likelihood's start time must be in [0, {sde.T}), got {eps}")
    if divergence == "hutchinson":
        v = torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype) if generator is not None \
            else torch.randn_like(x)
        if noise == "rademacher":
            v = torch.sign(v)

    def augmented(t: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        tb = t.expand(B)
        with torch.enable_grad():  # one network forward gives the drift and, by autograd, its divergence
            xt = state[:, :D].reshape(shape).detach().requires_grad_(True)
            dx = sde.ode_drift(xt, tb, score_fn(xt, tb))
            div = _exact_div(dx, xt) if divergence == "exact" else _hutchinson_div(dx, xt, v)
        return torch.cat([dx.detach().reshape(B, D), div[:, None]], dim=1)  # (B, D + 1)

    state0 = torch.cat([x.reshape(B, D), torch.zeros(B, 1, dtype=x.dtype, device=x.device)], dim=1)
    with torch.no_grad():  # the divergences switch gradients back on for their own backward passes
        sol = odeint_dopri5(augmented, state0, torch.tensor([eps, sde.T], dtype=x.dtype, device=x.device),
                            rtol=rtol, atol=atol)
    end = sol.ys[-1]
    z = end[:, :D].reshape(shape)
    prior = sde.prior_logp(z)
    return LikelihoodResult(prior + end[:, D], prior, z, sol.nfe)


def bits_per_dim(logp: torch.Tensor, dim: int) -> torch.Tensor:
    """Convert a log-density in nats over ``dim`` dimensions to bits per dimension: -logp / (dim ln 2)."""
    return -logp / (dim * math.log(2))


def dequantize(x: torch.Tensor, n_bins: int = 256, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform dequantisation of images in [0, 1] stored as k / (n_bins - 1): y = (k + u) / n_bins, u ~ U[0, 1)
    (Theis, van den Oord & Bethge 2016), so a density on [0, 1]^D bounds the discrete likelihood."""
    k = torch.round(x * (n_bins - 1))
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) if generator is not None \
        else torch.rand_like(x)
    return (k + u) / n_bins


def image_bits_per_dim(sde: SDE, score_fn: ScoreFn, x: torch.Tensor, *, centered: bool = True, n_bins: int = 256,
                       generator: torch.Generator | None = None, **kwargs) -> tuple[torch.Tensor, int]:
    """Bits/dim of images x in [0, 1] (B, C, H, W), an upper bound on the discrete negative log-likelihood:
    -log P(k) ≤ -log p(y) + D log n_bins with y the dequantised image (Song et al. 2021, Appendix D.2).
    ``centered``: the model lives on 2y - 1 in [-1, 1] (adds D log 2 for the change of variables).
    Returns (bpd per image (B,), NFE)."""
    D = x[0].numel()
    y = dequantize(x, n_bins, generator)
    z = 2 * y - 1 if centered else y
    res = log_likelihood(sde, score_fn, z, generator=generator, **kwargs)
    logp_y = res.logp + (D * math.log(2) if centered else 0.0)
    return (-logp_y + D * math.log(n_bins)) / (D * math.log(2)), res.nfe
