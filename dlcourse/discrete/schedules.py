"""Noise schedules of a discrete diffusion: the rate σ(t) and the total noise σ̄(t) = ∫₀ᵗ σ(s) ds, t ∈ [0, 1].

A continuous-time Markov chain on one token moves with rate matrix Q_t = σ(t) Q (Lou, Meng & Ermon 2024, "Discrete
Diffusion Modeling by Estimating the Ratios of the Data Distribution" (SEDD), Section 2, eq. (1) with Q_t = σ(t) Q),
so its transition matrix from time 0 is exp(σ̄(t) Q) and only σ̄ matters for the marginals. For the absorbing graph
the probability that a token is still clean is α_t = exp(-σ̄(t)) (the MDLM notation of Sahoo et al. 2024,
"Simple and Effective Masked Diffusion Language Models", Section 3.1).

Both schedules are computed from ``t`` on ``t``'s device; nothing is stored.
"""

from __future__ import annotations

import math

import torch

from ..config import Registry
from ..errors import ConfigError

__all__ = ["Schedule", "LogLinearSchedule", "GeometricSchedule", "SCHEDULES", "make_schedule"]

# name -> factory(eps, sigma_min, sigma_max) -> Schedule (each schedule takes the constants it uses)
SCHEDULES: Registry = Registry("noise schedule")


class Schedule:
    """Interface: ``sigma(t)`` (the rate, dσ̄/dt) and ``sigma_bar(t)`` (the total noise), both (B,) -> (B,)."""

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sigma_bar(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """α_t = exp(-σ̄(t)): probability that an absorbing-graph token is still clean at time t (MDLM Section 3.1)."""
        return torch.exp(-self.sigma_bar(t))

    def __call__(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(σ(t), σ̄(t))."""
        return self.sigma(t), self.sigma_bar(t)


class LogLinearSchedule(Schedule):
    """σ̄(t) = -log(1 - (1 - ε) t), so α_t = 1 - (1 - ε) t falls linearly to ε.

    The schedule of SEDD (Lou et al. 2024, Section 5.1, "log-linear") and MDLM's linear α_t (Sahoo et al. 2024,
    Section 3.5); ε = 0 masks every token at t = 1 (then σ̄(1) = ∞, which is never evaluated by the losses).
    With this schedule the MDLM weight -α'_t / (1 - α_t) is exactly 1/t.
    """

    def __init__(self, eps: float = 1e-3) -> None:
        if not 0.0 <= eps < 1.0:
            raise ConfigError(f"log-linear eps must be in [0, 1), got {eps}")
        self.eps = float(eps)

    def sigma_bar(self, t: torch.Tensor) -> torch.Tensor:
        return -torch.log1p(-(1.0 - self.eps) * t)

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return (1.0 - self.eps) / (1.0 - (1.0 - self.eps) * t)


class GeometricSchedule(Schedule):
    """σ̄(t) = σ_min^(1-t) σ_max^t, σ(t) = σ̄(t) log(σ_max / σ_min) (SEDD Section 5.1, used for the uniform graph;
    the discrete analogue of the VE SDE's geometric noise, Song et al. 2021, eq. (31)).

    σ̄(0) = σ_min > 0, so a little noise is present at t = 0; the bound counts it as a (tiny) reconstruction term
    that the loss ignores, as SEDD does.
    """

    def __init__(self, sigma_min: float = 1e-4, sigma_max: float = 20.0) -> None:
        if not 0.0 < sigma_min < sigma_max:
            raise ConfigError(f"geometric schedule needs 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)

    def sigma_bar(self, t: torch.Tensor) -> torch.Tensor:
        return self.sigma_min ** (1.0 - t) * self.sigma_max ** t

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return self.sigma_bar(t) * math.log(self.sigma_max / self.sigma_min)


SCHEDULES.register("loglinear", lambda eps, sigma_min, sigma_max: LogLinearSchedule(eps))
SCHEDULES.register("geometric", lambda eps, sigma_min, sigma_max: GeometricSchedule(sigma_min, sigma_max))


def make_schedule(name: str, eps: float = 1e-3, sigma_min: float = 1e-4, sigma_max: float = 20.0) -> Schedule:
    """``"loglinear"`` -> `LogLinearSchedule(eps)`, ``"geometric"`` -> `GeometricSchedule(sigma_min, sigma_max)`."""
    return SCHEDULES.get(name)(eps, sigma_min, sigma_max)
