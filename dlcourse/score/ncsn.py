"""Noise-conditional score networks (NCSN; Song & Ermon 2019) and the NCSNv2 recipe for their noise ladder
(Song & Ermon 2020, "Improved techniques for training score-based generative models").

==========================  ==============================================================================
`geometric_sigmas`          σ₁ > ... > σ_L with a constant ratio (NCSN, Section 4.1)
`max_pairwise_distance`     technique 1: σ₁ = the largest distance between two training points
`ncsnv2_ratio_condition`    technique 2's equation Φ(√(2D)(γ−1)+3γ) − Φ(√(2D)(γ−1)−3γ)
`ncsnv2_gamma`              technique 2: the ratio γ = σ_{i−1}/σ_i that makes it ≈ 0.5
`ncsnv2_num_levels`         the number of levels L that ratio gives between σ₁ and σ_L
`NCSN`                      technique 3: s_θ(x, σ) = net(x, log σ) / σ
`ncsnv2_variance_ratio`     technique 4's eq. (4): the variance of the chain after T steps at one level, over σ_i²
`ncsnv2_step_size`          technique 4: the ε that makes that ratio closest to 1 for a given T
(technique 5, EMA of the weights, is `dlcourse.train.EMA`)
==========================  ==============================================================================

All σ here refer to the data as the model sees it (images in [0, 1], as in NCSNv2).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ConfigError
from ..utils import unsqueeze_as
from .langevin import _paper_alpha

__all__ = [
    "geometric_sigmas",
    "max_pairwise_distance",
    "ncsnv2_ratio_condition",
    "ncsnv2_gamma",
    "ncsnv2_num_levels",
    "ncsnv2_variance_ratio",
    "ncsnv2_step_size",
    "NCSN",
]


def geometric_sigmas(sigma_max: float, sigma_min: float, num_levels: int) -> torch.Tensor:
    """σ_i = σ₁ (σ_L/σ₁)^((i−1)/(L−1)), i = 1..L: a geometric sequence from σ₁ = ``sigma_max`` down to
    σ_L = ``sigma_min`` (Song & Ermon 2019, Section 4.1). Returns (L,) float32, decreasing. Computed in float64
    (log-space) so the endpoints are exact."""
    if not (sigma_max > sigma_min > 0) or num_levels < 2:
        raise ConfigError(f"a sigma ladder needs sigma_max > sigma_min > 0 and at least 2 levels, got "
                          f"sigma_max={sigma_max}, sigma_min={sigma_min}, num_levels={num_levels}")
    exps = torch.linspace(0.0, 1.0, num_levels, dtype=torch.float64)  # (L,)
    return (sigma_max * (sigma_min / sigma_max) ** exps).float()


@torch.no_grad()
def max_pairwise_distance(x: torch.Tensor, chunk: int = 2048) -> float:
    """max_{i,j} ‖x_i − x_j‖ over the rows of x (N, ...): NCSNv2's technique 1 sets σ₁ to it, so that the
    largest noise level can move any point to any other (Song & Ermon 2020, Section 3.1).

    Exact, in O(N²) distance evaluations, blocked so memory stays O(chunk²). Use a subset for big data sets.
    """
    flat = x.reshape(x.shape[0], -1).double()  # (N, D)
    best = 0.0
    for i in range(0, len(flat), chunk):
        for j in range(i, len(flat), chunk):
            best = max(best, torch.cdist(flat[i:i + chunk], flat[j:j + chunk]).max().item())
    return best


def ncsnv2_ratio_condition(gamma: float, dim: int) -> float:
    """Φ(√(2D)(γ−1) + 3γ) − Φ(√(2D)(γ−1) − 3γ) (Song & Ermon 2020, Section 3.2, technique 2).

    For x ~ N(0, σ_i² I) in D dimensions, ‖x‖ ≈ N(√D σ_i, σ_i²/2); this is (approximately) the probability that a
    sample at level i lands within 3 standard deviations of the typical radius of level i−1 = γ·i. Technique 2
    asks for ≈ 0.5, so consecutive levels overlap enough for the chain to hand over.
    """
    from scipy.stats import norm

    root = math.sqrt(2 * dim)
    return float(norm.cdf(root * (gamma - 1) + 3 * gamma) - norm.cdf(root * (gamma - 1) - 3 * gamma))


def ncsnv2_gamma(dim: int, target: float = 0.5) -> float:
    """Technique 2: the ladder ratio γ > 1 with `ncsnv2_ratio_condition`(γ, D) = ``target`` (scipy's brentq).

    The condition decreases from Φ(3) − Φ(−3) ≈ 0.997 at γ = 1 towards 0 only when √(2D) > 3, i.e. D ≥ 5; in 2-D it
    never reaches 0.5, so the toys choose their ladder by hand. For CIFAR-10 (D = 3072) γ ≈ 1.040; NCSNv2 used
    232 levels from 50 to 0.01, i.e. γ ≈ 1.038.
    """
    from scipy.optimize import brentq

    if math.sqrt(2 * dim) <= 3:
        raise ConfigError(f"NCSNv2's technique 2 needs D >= 5 (sqrt(2D) > 3); got D={dim}: choose the ladder by hand")
    hi = 2.0
    while ncsnv2_ratio_condition(hi, dim) > target:
        hi = 1 + 2 * (hi - 1)
        if hi > 1e6:
            raise ConfigError(f"no ladder ratio gives {target} for D={dim}")
    return float(brentq(lambda g: ncsnv2_ratio_condition(g, dim) - target, 1.0, hi, xtol=1e-12))


def ncsnv2_num_levels(sigma_max: float, sigma_min: float, gamma: float) -> int:
    """The number of levels L for a geometric ladder from σ₁ to σ_L with ratio at most γ:
    L = 1 + ⌈log(σ₁/σ_L) / log γ⌉ (then `geometric_sigmas` spreads them evenly, ratio ≤ γ)."""
    return 1 + math.ceil(math.log(sigma_max / sigma_min) / math.log(gamma) - 1e-9)


def ncsnv2_variance_ratio(eps: float, gamma: float, sigma_min: float, n_steps_each: int) -> float:
    """Song & Ermon 2020, eq. (4) (technique 4): the variance s_T² of the chain after T = ``n_steps_each`` steps
    at level i, divided by σ_i², when the data is a point mass (so q_{σ_i} = N(0, σ_i² I)) and the chain starts
    at the previous level's law N(0, σ_{i−1}² I), with γ = σ_{i−1}/σ_i:

        s_T²/σ_i² = (1 − ε/σ_L²)^{2T} (γ² − 2ε/(σ_L² − σ_L²(1 − ε/σ_L²)²)) + 2ε/(σ_L² − σ_L²(1 − ε/σ_L²)²)

    Derived for the *code* step convention x + α s + √(2α) z with α_i = ε σ_i²/σ_L²: each step multiplies
    x by a = 1 − ε/σ_L² and adds variance 2α_i, so v_T = a^{2T}(v_0 − v_∞) + v_∞ with v_∞ = 2α_i/(1 − a²).
    It does not depend on i, and exceeds 1 for every ε when γ > 1 (so technique 4 minimises |ratio − 1|).
    """
    a = 1.0 - eps / sigma_min**2
    stationary = 2 * eps / (sigma_min**2 - sigma_min**2 * a * a)
    return a ** (2 * n_steps_each) * (gamma**2 - stationary) + stationary


def ncsnv2_step_size(gamma: float, sigma_min: float, n_steps_each: int, convention: str = "code") -> float:
    """Technique 4: for a budget of T = ``n_steps_each`` steps per level, the ε that brings
    `ncsnv2_variance_ratio` closest to 1 (scipy's bounded scalar minimisation over log ε).

    With γ = (50/0.01)^(1/231) (NCSNv2's CIFAR-10 ladder), σ_L = 0.01 and T = 5 this gives ε ≈ 6.2e-6, the
    value in NCSNv2's config. Returned in the requested step ``convention`` ("code": as in that config;
    "paper": twice as large, for x + α/2 s + √α z; see `dlcourse.score.langevin`).
    """
    from scipy.optimize import minimize_scalar

    # The ratio is finite for 0 < ε < 2σ_L² (|a| < 1); search well inside that interval.
    lo, hi = math.log(sigma_min**2 * 1e-8), math.log(sigma_min**2 * 1.0)
    res = minimize_scalar(lambda le: (ncsnv2_variance_ratio(math.exp(le), gamma, sigma_min, n_steps_each) - 1) ** 2,
                          bounds=(lo, hi), method="bounded", options={"xatol": 1e-10})
    eps_code = math.exp(res.x)
    _paper_alpha(eps_code, convention)  # validates the name
    return float(eps_code if convention == "code" else 2 * eps_code)  # paper: α = 2α


class NCSN(nn.Module):
    """A noise-conditional score network s_θ(x, σ) = net(x, c) / σ (Song & Ermon 2020, technique 3).

    The optimal score of the σ-perturbed data has magnitude ≈ ‖z‖/σ ~ √D/σ, so dividing by σ lets the net output
    a quantity of order one at every level. With ``conditional=True`` the net also sees c = log σ (as in
    NCSN++, Song et al. 2021); with False it gets c = 0 and is the unconditional s_θ(x) of NCSNv2.

    ``net(x (B, ...), c (B,)) -> (B, ...)``: an `dlcourse.nn.MLP` or `dlcourse.nn.UNet`.
    forward(x (B, ...), sigma float or (B,)) -> (B, ...).
    """

    def __init__(self, net: nn.Module, conditional: bool = True) -> None:
        super().__init__()
        self.net = net
        self.conditional = conditional

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        sigma = sigma.expand(x.shape[0]) if sigma.dim() == 0 else sigma  # (B,)
        c = sigma.log() if self.conditional else torch.zeros_like(sigma)  # (B,)
        return self.net(x, c) / unsqueeze_as(sigma, x)  # (B, ...)
