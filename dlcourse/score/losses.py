"""Score-matching objectives: learn s(x) ≈ ∇ₓ log p(x) without knowing p.

=====================  ===================================================================  ==================
function               objective (per sample; the functions average over the batch)         reference
=====================  ===================================================================  ==================
`exact_sm_loss`        tr(∇ₓ s(x)) + ½‖s(x)‖²  (trace by D backward passes)                  Hyvärinen 2005, eq. 4
`sliced_sm_loss`       vᵀ∇ₓs(x)v + ½(vᵀs(x))²   (one Jacobian-vector product per v)           Song et al. 2019, eq. 7
  ``variance_reduction`` vᵀ∇ₓs(x)v + ½‖s(x)‖²                                                 Song et al. 2019, eq. 8
`dsm_loss`             ½ σ² ‖s(x̃, σ) + (x̃ − x)/σ²‖²,  x̃ = x + σz                              Vincent 2011, eq. 11;
                                                                                            Song & Ermon 2019, eqs. 5-6
`ncsn_loss`            `dsm_loss` at a noise level drawn uniformly from the ladder per sample  Song & Ermon 2019, eq. 6
=====================  ===================================================================  ==================

All four equal E‖s − ∇log p‖²/2 up to a constant that does not depend on s, so they have the same minimiser
(Hyvärinen's integration by parts; Vincent's equivalence for DSM, where p is the σ-perturbed data law).

A *score function* here is any callable: ``score_fn(x) -> (B, ...)`` for the unconditional losses, and
``score_fn(x, sigma)`` with sigma of shape (B,) for the noise-conditional ones (an `NCSN` model, or the exact
score of a toy such as ``lambda x, s: mix.score(x, sigma=s)``).
"""

from __future__ import annotations

from typing import Callable

import torch

from ..errors import ShapeError
from ..utils import unsqueeze_as

__all__ = [
    "exact_sm_loss",
    "sliced_sm_loss",
    "dsm_target",
    "dsm_loss",
    "ncsn_loss",
    "dsm_optimal_loss_gaussian",
]

ScoreFn = Callable[..., torch.Tensor]


def _reduce(per_sample: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "none":
        return per_sample
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def _flat_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over every dimension but the first: (B, ...) -> (B,)."""
    return t.reshape(t.shape[0], -1).sum(dim=1)


def exact_sm_loss(score_fn: ScoreFn, x: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Implicit score matching, J(θ) = E[tr(∇ₓ s(x)) + ½‖s(x)‖²] (Hyvärinen 2005, eq. 4 / Theorem 1).

    The trace of the Jacobian is exact: one backward pass per dimension, ∂s_d/∂x_d summed over d. That costs D
    passes, so use it for low-dimensional toys (the reason sliced and denoising score matching exist).
    x (B, D) -> scalar (or (B,) with ``reduction="none"``). Differentiable in the model's parameters.
    """
    if x.dim() != 2:
        raise ShapeError(f"exact_sm_loss expects x of shape (B, D), got {tuple(x.shape)}")
    x = x.detach().requires_grad_(True)
    s = score_fn(x)  # (B, D)
    trace = torch.zeros_like(s[:, 0])  # (B,)
    for d in range(x.shape[1]):
        # Row b of the gradient of sum_b s_d(x_b) is ∂s_d(x_b)/∂x_b: samples do not interact.
        grad = torch.autograd.grad(s[:, d].sum(), x, create_graph=True)[0]  # (B, D)
        trace = trace + grad[:, d]
    return _reduce(trace + 0.5 * s.square().sum(dim=1), reduction)


def sliced_sm_loss(score_fn: ScoreFn, x: torch.Tensor, n_projections: int = 1, variance_reduction: bool = False,
                   projection: str = "gaussian", generator: torch.Generator | None = None,
                   reduction: str = "mean") -> torch.Tensor:
    """Sliced score matching (Song, Garg, Shi & Ermon 2019, "Sliced score matching", eqs. 7 and 8).

    For random directions v with E[v vᵀ] = I:

        J(θ) = E_x E_v [ vᵀ ∇ₓ s(x) v + ½ (vᵀ s(x))² ]          (eq. 7, SSM)
        J(θ) = E_x E_v [ vᵀ ∇ₓ s(x) v + ½ ‖s(x)‖² ]             (eq. 8, SSM-VR: the second expectation in closed form)

    vᵀ∇ₓs v = vᵀ ∇ₓ(vᵀ s(x)) needs one backward pass per projection whatever the dimension. Each sample gets
    ``n_projections`` directions (averaged). ``projection``: ``"gaussian"`` (v ~ N(0, I)) or ``"rademacher"``
    (entries ±1). x (B, ...) -> scalar (or (B,)).
    """
    x = x.detach().requires_grad_(True)
    s = score_fn(x)  # (B, ...)
    total = torch.zeros(x.shape[0], dtype=s.dtype, device=x.device)  # (B,)
    for _ in range(n_projections):
        v = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=_gen_device(generator, x)).to(x.device)
        if projection == "rademacher":
            v = v.sign()
        elif projection != "gaussian":
            raise ValueError(f"projection must be 'gaussian' or 'rademacher', got {projection!r}")
        sv = _flat_sum(s * v)  # (B,) vᵀ s(x)
        grad_sv = torch.autograd.grad(sv.sum(), x, create_graph=True)[0]  # (B, ...) = ∇ₓ(vᵀ s) = (∇ₓs)ᵀ v
        jvp = _flat_sum(grad_sv * v)  # (B,) vᵀ ∇ₓs v
        second = 0.5 * _flat_sum(s.square()) if variance_reduction else 0.5 * sv.square()
        total = total + jvp + second
    return _reduce(total / n_projections, reduction)


def _gen_device(generator: torch.Generator | None, x: torch.Tensor) -> torch.device:
    return generator.device if generator is not None else x.device


def dsm_target(x_tilde: torch.Tensor, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """∇_x̃ log q_σ(x̃ | x) = −(x̃ − x)/σ², the regression target of denoising score matching (Vincent 2011,
    eq. 11 with a Gaussian kernel; Song & Ermon 2019, Section 4.2). sigma: float or (B,). -> like x."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    return -(x_tilde - x) / unsqueeze_as(sigma, x).square()


def dsm_loss(score_fn: ScoreFn, x: torch.Tensor, sigma: torch.Tensor | float, noise: torch.Tensor | None = None,
             weighted: bool = True, reduction: str = "mean") -> torch.Tensor:
    """Denoising score matching at noise level σ, with NCSN's weighting λ(σ) = σ².

        ℓ(θ; σ) = ½ E ‖ s(x̃, σ) + (x̃ − x)/σ² ‖²,  x̃ = x + σ z,  z ~ N(0, I)      (Song & Ermon 2019, eq. 5)
        λ(σ) ℓ(θ; σ) with λ(σ) = σ²                                               (eq. 6)

    With x̃ − x = σz the weighted per-sample loss is ½‖σ s(x̃, σ) + z‖²: of order D/2 at every σ, which is why
    σ² balances the levels. ``weighted=False`` gives Vincent's (2011) unweighted ½‖s − target‖².

    Args:
        score_fn: ``score_fn(x_tilde, sigma) -> like x``, sigma of shape (B,).
        x: clean data (B, ...).
        sigma: noise level, a float or one per sample (B,).
        noise: z, the standard normal noise (like x); drawn with ``torch.randn_like`` when None.
        weighted: multiply by σ² (NCSN) or not.
        reduction: ``"mean"`` over the batch, or ``"none"`` for the per-sample losses (B,).

    For Gaussian data see `dsm_optimal_loss_gaussian`: the loss of the exact score in closed form.
    """
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    sigma = sigma.expand(x.shape[0]) if sigma.dim() == 0 else sigma  # (B,)
    z = torch.randn_like(x) if noise is None else noise  # (B, ...)
    x_tilde = x + unsqueeze_as(sigma, x) * z  # (B, ...)
    residual = score_fn(x_tilde, sigma) - dsm_target(x_tilde, x, sigma)  # (B, ...)
    per_sample = 0.5 * _flat_sum(residual.square())  # (B,)
    if weighted:
        per_sample = sigma.square() * per_sample
    return _reduce(per_sample, reduction)


def ncsn_loss(score_fn: ScoreFn, x: torch.Tensor, sigmas: torch.Tensor, generator: torch.Generator | None = None,
              reduction: str = "mean") -> torch.Tensor:
    """The NCSN objective (Song & Ermon 2019, eq. 6): (1/L) Σᵢ σᵢ² ℓ(θ; σᵢ), estimated with one level per sample.

    Each sample's level i is uniform on {1..L} (an unbiased estimate of the average over levels, as in the
    released code). sigmas (L,) -> scalar.
    """
    sigmas = sigmas.to(device=x.device, dtype=x.dtype)
    idx = torch.randint(len(sigmas), (x.shape[0],), generator=generator,
                        device=_gen_device(generator, x)).to(x.device)  # (B,)
    return dsm_loss(score_fn, x, sigmas[idx], reduction=reduction)


def dsm_optimal_loss_gaussian(data_std: float | torch.Tensor, sigma: float | torch.Tensor, dim: int) -> torch.Tensor:
    """The minimum of σ²-weighted DSM (`dsm_loss`) for x ~ N(μ, s² I) in D dimensions: ½ D s² / (s² + σ²).

    Derivation. The perturbed law is N(μ, (s² + σ²) I), with score s*(x̃) = −(x̃ − μ)/(s² + σ²). Write
    x = μ + s u and x̃ = x + σ z (u, z independent standard normal). Then

        σ s*(x̃) + z = z − σ(s u + σ z)/(s² + σ²) = (s² z − σ s u)/(s² + σ²),

    a Gaussian vector with per-coordinate variance (s⁴ + σ² s²)/(s² + σ²)² = s²/(s² + σ²) =: v. So the per-sample
    loss ½‖σ s* + z‖² is ½ v χ²_D: mean ½ D v, variance ½ D v² (used by the tests for their tolerance).
    Equivalently: ½ σ² (E‖∇log q(x̃|x)‖² − E‖∇log q_σ(x̃)‖²) = ½ σ² (D/σ² − D/(s² + σ²)).
    """
    s2 = torch.as_tensor(data_std, dtype=torch.float64) ** 2
    sigma2 = torch.as_tensor(sigma, dtype=torch.float64) ** 2
    return 0.5 * dim * s2 / (s2 + sigma2)
