"""Continuous-time denoising score matching for the score SDEs.

Song et al. 2021, eq. 7:  E_t λ(t) E_{x0} E_{x_t | x0} ‖ s_θ(x_t, t) - ∇ log p_0t(x_t | x0) ‖², with t ~ U[t_min, T]
(``sde.t_min`` = 1e-5, score_sde's training eps, so the model knows the times the likelihood integrates over)
and ∇ log p_0t(x_t | x0) = -z / std(t) for x_t = mean + std(t) z. Two weightings:

- ``"score"``: λ(t) = std(t)², the paper's default (∝ 1 / E‖∇ log p_0t‖²), i.e. ‖std · s + z‖²;
- ``"likelihood"``: λ(t) = g(t)², which makes the loss an upper bound on the negative log-likelihood
  (Song, Durkan, Murray & Ermon 2021, "Maximum likelihood training of score-based diffusion models", Theorem 1).
"""

from __future__ import annotations

import typing
from typing import Literal

import torch

from ..errors import DlcourseError
from ..utils import unsqueeze_as
from .sdes import SDE, ScoreFn

__all__ = ["sde_score_loss", "WEIGHTINGS"]

Weighting = Literal["score", "likelihood"]
WEIGHTINGS = typing.get_args(Weighting)


def sde_score_loss(score_fn: ScoreFn, sde: SDE, x0: torch.Tensor, *, weighting: str = "score",
                   t: torch.Tensor | None = None, noise: torch.Tensor | None = None,
                   generator: torch.Generator | None = None, reduction: str = "mean") -> torch.Tensor:
    """½ λ(t) ‖s(x_t, t) + z / std(t)‖² summed over data dimensions; mean over the batch (or per sample with
    ``reduction="none"``). ``t`` and ``noise`` may be given to make the loss deterministic (tests, lectures)."""
    if weighting not in WEIGHTINGS:
        raise DlcourseError(f"weighting must be 'score' or 'likelihood', got {weighting!r}")
    B = x0.shape[0]
    if t is None:
        u = torch.rand(B, generator=generator, device=x0.device, dtype=x0.dtype) if generator is not None \
            else torch.rand(B, device=x0.device, dtype=x0.dtype)
        t = sde.t_min + (sde.T - sde.t_min) * u
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype) if generator is not None \
            else torch.randn_like(x0)
    x_t, noise, std = sde.perturb(x0, t, noise)
    residual = score_fn(x_t, t) + noise / unsqueeze_as(std, x0)  # s - ∇ log p_0t
    lam = std ** 2 if weighting == "score" else sde.diffusion(t) ** 2  # (B,)
    per_sample = 0.5 * lam * residual.pow(2).reshape(B, -1).sum(1)
    if reduction == "none":
        return per_sample
    return per_sample.mean()
