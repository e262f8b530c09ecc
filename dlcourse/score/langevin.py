"""Langevin dynamics and annealed Langevin dynamics: sampling with nothing but a score.

Step convention
---------------
One Langevin step with step size α (Welling & Teh 2011, eq. 4; Song & Ermon 2019, eq. 2 and Algorithm 1):

    ``convention="paper"``:  x ← x + (α/2) s(x) + √α z,        z ~ N(0, I)     (the default)

The released NCSN / NCSNv2 code, and NCSNv2's own Algorithm 1 (Song & Ermon 2020), write the same step with
α' = α/2:

    ``convention="code"``:   x ← x + α' s(x) + √(2α') z

So an ε copied from those configs (e.g. NCSNv2's CIFAR-10 ε = 6.2e-6) must be used with ``convention="code"``
(or doubled). Both are the Euler-Maruyama step of dX = ∇log p(X) dt + √2 dW with dt = α/2 (paper) or α' (code).

For a Gaussian target N(0, s²) the discretised chain is linear, x ← (1 − α/(2s²)) x + √α z, and its stationary
variance is α / (1 − (1 − α/(2s²))²) rather than s² (`stationary_variance_gaussian`); the tests check both
conventions against that formula on a long batched chain.

Annealed Langevin (Song & Ermon 2019, Algorithm 1) runs T steps at each level σ₁ > ... > σ_L with
α_i = ε σ_i² / σ_L² (`annealed_step_sizes`), then optionally one denoising step x + σ_L² s(x, σ_L)
(`tweedie_denoise`; Song & Ermon 2020, Appendix C.2; Jolicoeur-Martineau et al. 2021).

Readable and fast paths
-----------------------
`langevin_step` is the whole algorithm in one line; `annealed_langevin_reference` is Algorithm 1 written out as
in the lecture; `annealed_langevin_dynamics` is the batched sampler used everywhere else (in-place updates,
level tensors built once, optional recording of the chain). For the same generator they return the same
samples, and a test checks it.

Score functions are ``score_fn(x) -> like x`` (plain Langevin) or ``score_fn(x, sigma)`` with sigma of shape
(B,) (annealed). Everything runs on ``x.device``; a ``generator`` may live on the CPU (numbers are drawn there
and moved) or on the data's device.
"""

from __future__ import annotations

import math
import typing
from typing import Callable, Literal, Sequence

import torch

from ..errors import ConfigError
from ..utils import unsqueeze_as

__all__ = [
    "langevin_step",
    "tweedie_denoise",
    "annealed_step_sizes",
    "stationary_variance_gaussian",
    "langevin_dynamics",
    "annealed_langevin_reference",
    "annealed_langevin_dynamics",
    "CONVENTIONS",
]

Convention = Literal["paper", "code"]
CONVENTIONS = typing.get_args(Convention)


def _paper_alpha(step_size, convention: str):
    """The step size in the paper's convention: α = α' · 2 for the code convention."""
    if convention == "paper":
        return step_size
    if convention == "code":
        return 2 * step_size
    raise ConfigError(f"unknown Langevin step convention {convention!r}; choose 'paper' (x + α/2 s + √α z) or "
                      f"'code' (x + α s + √(2α) z)")


def langevin_step(x: torch.Tensor, score: torch.Tensor, step_size: float | torch.Tensor, noise: torch.Tensor,
                  convention: Convention = "paper") -> torch.Tensor:
    """One Langevin step: x + (α/2) score + √α z (``"paper"``, Song & Ermon 2019, eq. 2) or x + α score + √(2α) z
    (``"code"``). x, score, noise (B, ...); step_size a float or (B,). A pure function: returns the new state."""
    alpha = torch.as_tensor(_paper_alpha(step_size, convention), dtype=x.dtype, device=x.device)
    alpha = unsqueeze_as(alpha, x) if alpha.dim() else alpha
    return x + 0.5 * alpha * score + alpha.sqrt() * noise


def tweedie_denoise(x: torch.Tensor, score: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """E[x₀ | x] = x + σ² ∇ₓ log q_σ(x) (Tweedie's formula, Efron 2011, eq. 1.4): the final denoising step of
    NCSNv2 (Song & Ermon 2020, Appendix C.2). sigma: float or (B,)."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    sigma = unsqueeze_as(sigma, x) if sigma.dim() else sigma
    return x + sigma.square() * score


def annealed_step_sizes(sigmas: torch.Tensor, eps: float) -> torch.Tensor:
    """α_i = ε σ_i² / σ_L² (Song & Ermon 2019, Algorithm 1, line 3): the same signal-to-noise ratio at every
    level. sigmas (L,) decreasing -> (L,)."""
    return eps * sigmas.square() / sigmas[-1].square()


def stationary_variance_gaussian(step_size: float, target_var: float, convention: Convention = "paper") -> float:
    """Stationary variance of the discretised Langevin chain for the target N(0, s²), s² = ``target_var``.

    With α in the paper's convention the chain is x ← a x + √α z, a = 1 − α/(2 s²), so v = a² v + α gives
    v = α / (1 − a²) = s² / (1 − α/(4 s²)). Finite only for 0 < α < 4 s². (Code convention: α = 2α'.)
    """
    alpha = _paper_alpha(step_size, convention)
    a = 1.0 - alpha / (2.0 * target_var)
    if not abs(a) < 1.0:
        return math.inf
    return alpha / (1.0 - a * a)


def _noise_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise like x, drawn from ``generator`` (on its own device, then moved) or the global RNG."""
    if generator is None:
        return torch.randn_like(x)
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=generator.device).to(x.device)


@torch.no_grad()
def langevin_dynamics(score_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, step_size: float,
                      n_steps: int, *, convention: Convention = "paper", generator: torch.Generator | None = None,
                      record_every: int | None = None):
    """Plain Langevin dynamics (Song & Ermon 2019, eq. 2): ``n_steps`` of `langevin_step` from x (B, ...).

    Returns the final state, or ``(final, frames)`` with frames (T, B, ...) when ``record_every=k``: the state at
    steps 0, k, 2k, ... and the final state if it was not already recorded.
    """
    frames = [x.clone()] if record_every else None
    for t in range(1, n_steps + 1):
        x = langevin_step(x, score_fn(x), step_size, _noise_like(x, generator), convention)
        if record_every and t % record_every == 0:
            frames.append(x.clone())
    if frames is None:
        return x
    if n_steps % record_every:
        frames.append(x.clone())
    return x, torch.stack(frames)


@torch.no_grad()
def annealed_langevin_reference(score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor,
                                sigmas: Sequence[float] | torch.Tensor, eps: float, n_steps_each: int, *,
                                convention: Convention = "paper", denoise: bool = False,
                                generator: torch.Generator | None = None) -> torch.Tensor:
    """Annealed Langevin dynamics, Algorithm 1 of Song & Ermon (2019) written out: the readable path.

    The lecture's loop; `annealed_langevin_dynamics` computes the same samples faster and can record the chain.
    """
    sigmas = [float(s) for s in sigmas]
    for sigma in sigmas:
        alpha = eps * sigma**2 / sigmas[-1] ** 2                 # Algorithm 1, line 3
        sigma_b = torch.full((x.shape[0],), sigma, dtype=x.dtype, device=x.device)  # (B,)
        for _ in range(n_steps_each):
            z = _noise_like(x, generator)                         # line 5
            x = langevin_step(x, score_fn(x, sigma_b), alpha, z, convention)  # line 6
    if denoise:
        x = tweedie_denoise(x, score_fn(x, sigma_b), sigmas[-1])
    return x


@torch.no_grad()
def annealed_langevin_dynamics(score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor,
                               sigmas: Sequence[float] | torch.Tensor, eps: float, n_steps_each: int, *,
                               convention: Convention = "paper", denoise: bool = False,
                               generator: torch.Generator | None = None, record_every: int | None = None):
    """Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1), batched over the chains in x (B, ...).

    Args:
        score_fn: ``score_fn(x, sigma) -> like x``, sigma of shape (B,) (all equal within a level).
        x: initial state (B, ...), e.g. uniform noise; not modified.
        sigmas: the noise ladder σ₁ > ... > σ_L (L,).
        eps: ε, the step size at the last level; level i uses α_i = ε σ_i² / σ_L².
        n_steps_each: T, Langevin steps per level.
        convention: ``"paper"`` (x + α/2 s + √α z) or ``"code"`` (x + α s + √(2α) z); see the module docstring.
        denoise: finish with x + σ_L² s(x, σ_L) (Tweedie; NCSNv2).
        generator: source of the noise (None: the global RNG).
        record_every: k to also return frames (T, B, ...): the state at global steps 0, k, 2k, ... (counting
            over all levels), the last state if not already recorded, then the denoised output if ``denoise``.

    Returns the samples (B, ...), or ``(samples, frames)`` when ``record_every`` is given.
    """
    sigmas_t = torch.as_tensor(sigmas, dtype=torch.float64)
    alphas = _paper_alpha(annealed_step_sizes(sigmas_t, eps), convention).tolist()  # (L,) in the paper's convention
    x = x.clone()
    z = torch.empty_like(x)
    frames = [x.clone()] if record_every else None
    step = 0
    for sigma, alpha in zip(sigmas_t.tolist(), alphas):
        sigma_b = torch.full((x.shape[0],), sigma, dtype=x.dtype, device=x.device)  # (B,)
        half_alpha, sqrt_alpha = 0.5 * alpha, math.sqrt(alpha)
        for _ in range(n_steps_each):
            if generator is not None and generator.device != x.device:
                z.copy_(_noise_like(x, generator))  # e.g. a CPU generator driving a GPU chain
            else:
                z.normal_(generator=generator)  # in place: no new tensor per step
            score = score_fn(x, sigma_b)  # (B, ...)
            x.add_(score, alpha=half_alpha).add_(z, alpha=sqrt_alpha)
            step += 1
            if record_every and step % record_every == 0:
                frames.append(x.clone())
    if frames is not None and step % record_every:  # the last state of the chain, if not already recorded
        frames.append(x.clone())
    if denoise:
        x = tweedie_denoise(x, score_fn(x, sigma_b), sigmas_t[-1].item())
        if frames is not None:
            frames.append(x.clone())
    if frames is None:
        return x
    return x, torch.stack(frames)
