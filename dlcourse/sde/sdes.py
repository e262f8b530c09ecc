"""Forward SDEs dx = f(x, t) dt + g(t) dw of Song et al. 2021 ("Score-based generative modeling through
stochastic differential equations", ICLR), one method per mathematical object.

Each SDE knows its drift f and diffusion g (eq. 5), the mean and std of its perturbation kernel p_0t(x(t) | x(0))
(eqs. 29, 31, 33 of Appendix B), its prior p_T and that prior's log-density, the discretisation that gives the
reverse-diffusion predictor (Appendix E, eq. 45-47), and, given the score s ≈ ∇x log p_t(x) at (x, t) as a tensor,
the drifts of the reverse-time SDE (eq. 6) and of the probability-flow ODE (eq. 13).

Shapes: x is (B, ...) for any trailing shape (2-D points, images, ...); t is (B,) in [0, T]. Per-sample scalars
are broadcast over x with `dlcourse.utils.unsqueeze_as`. Everything runs on x's device.

Adding an SDE: subclass `SDE` (or `VPSDE`, which only needs β(t) and its integral) and register it with
``@SDES.register("name")``; `CosineVPSDE` is the worked example. The config field ``sde`` of the ``sde`` family
accepts every registered name.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..config import Registry
from ..errors import DlcourseError
from ..utils import unsqueeze_as

__all__ = ["SDE", "VESDE", "VPSDE", "SubVPSDE", "CosineVPSDE", "SDES", "make_sde", "ScoreFn"]

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # s(x (B, ...), t (B,)) -> (B, ...)

SDES: Registry[type] = Registry("SDE")


def _per_sample(t: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """t as a (B,) tensor on x's device and dtype."""
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    return t.expand(x.shape[0]) if t.dim() == 0 else t


def _event_dims(x: torch.Tensor) -> list[int]:
    return list(range(1, x.dim()))


class SDE:
    """dx = f(x, t) dt + g(t) dw on [0, T]; subclasses define the maths, this class builds the reverse processes.

    Attributes:
        N: number of discretisation steps of the paper's discrete models (SMLD / DDPM), used by
           `discretize` and as the default number of sampler steps.
        eps: the sampler's last time (score_sde's sampling eps: 1e-5 for VE, 1e-3 for VP and sub-VP).
        t_min: the smallest time of the training loss and where likelihoods start (score_sde's training and
            likelihood eps: 1e-5 for every SDE).
        range_params: the names of the SDE's two constants, which configs set as ``sde_min`` / ``sde_max``.
    """

    T: float = 1.0
    N: int = 1000
    eps: float = 1e-5
    t_min: float = 1e-5
    name: str = "sde"
    range_params: tuple[str, ...] = ()

    # ---- the forward process ----
    def drift(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """f(x, t), shape like x."""
        raise NotImplementedError

    def diffusion(self, t: torch.Tensor) -> torch.Tensor:
        """g(t), shape (B,)."""
        raise NotImplementedError

    def marginal_prob(self, x0: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean (like x0) and std (B,) of the Gaussian perturbation kernel p_0t(x(t) | x(0) = x0)."""
        raise NotImplementedError

    def marginal_coeffs(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha(t), std(t)), both (B,), with mean = alpha(t) x0: every SDE here is linear in x."""
        ones = torch.ones(t.shape[0], 1, dtype=t.dtype, device=t.device)
        mean, std = self.marginal_prob(ones, t)
        return mean[:, 0], std

    def perturb(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Draw x(t) ~ p_0t(· | x0): returns (x_t, noise, std) with x_t = mean + std * noise."""
        t = _per_sample(t, x0)
        noise = torch.randn_like(x0) if noise is None else noise
        mean, std = self.marginal_prob(x0, t)
        return mean + unsqueeze_as(std, x0) * noise, noise, std

    # ---- the prior ----
    def prior_std(self) -> float:
        raise NotImplementedError

    def prior_sample(self, shape: tuple[int, ...], *, generator: torch.Generator | None = None,
                     device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """x(T) ~ p_T = N(0, prior_std² I)."""
        return self.prior_std() * torch.randn(shape, generator=generator, device=device, dtype=dtype)

    def prior_logp(self, z: torch.Tensor) -> torch.Tensor:
        """log p_T(z) for each sample, shape (B,): an isotropic Gaussian log-density."""
        d = z[0].numel()
        s = self.prior_std()
        return -0.5 * d * math.log(2 * math.pi * s * s) - z.pow(2).sum(_event_dims(z)) / (2 * s * s)

    # ---- discretisation (reverse-diffusion predictor) ----
    def discretize(self, x: torch.Tensor, t: torch.Tensor, dt: float | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """x(t) = x(t - dt) + f_i + G_i z: the forward step that ends at t, with dt > 0 (default T / N).
        Default: Euler-Maruyama, f_i = f(x, t) dt and G_i = g(t) √dt (Song et al. 2021, Appendix E)."""
        dt = self.T / self.N if dt is None else dt
        return self.drift(x, t) * dt, self.diffusion(t) * math.sqrt(dt)

    # ---- reverse time, given the score s = s(x, t) as a tensor like x ----
    def reverse_drift(self, x: torch.Tensor, t: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
        """Drift of the reverse-time SDE (eq. 6), dx = [f(x, t) - g(t)² s] dt + g(t) dw̄, run from T down to 0."""
        return self.drift(x, t) - unsqueeze_as(self.diffusion(t), x) ** 2 * score

    def ode_drift(self, x: torch.Tensor, t: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
        """The probability-flow ODE (eq. 13), dx/dt = f(x, t) - ½ g(t)² s: the same marginals p_t, no noise."""
        return self.drift(x, t) - 0.5 * unsqueeze_as(self.diffusion(t), x) ** 2 * score

    def reverse_discretize(self, x: torch.Tensor, t: torch.Tensor, score: torch.Tensor, dt: float | None = None
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reverse-diffusion step coefficients (eq. 47): x_i = x_{i+1} - f_{i+1} + G_{i+1}² s + G_{i+1} z, returned
        as (f - G² s, G) from the forward discretisation over a step of ``dt``."""
        f, G = self.discretize(x, t, dt)
        return f - unsqueeze_as(G, x) ** 2 * score, G

    def ancestral(self, x: torch.Tensor, t: torch.Tensor, score: torch.Tensor, dt: float, noise: torch.Tensor
                  ) -> torch.Tensor:
        """One step of the discrete model's ancestral sampler (Song et al. 2021, Appendix F), if it has one."""
        raise DlcourseError(f"the {self.name} SDE has no discrete ancestral sampler; use the reverse-diffusion "
                            f"predictor")


@SDES.register("ve")
class VESDE(SDE):
    """Variance exploding SDE (SMLD / NCSN in continuous time; Song et al. 2021, eq. 9 and Appendix B):
    dx = sqrt(d[σ²(t)]/dt) dw with σ(t) = σ_min (σ_max / σ_min)^t.

    The exact kernel is N(x0, (σ(t)² - σ(0)²) I); like the paper we use std = σ(t), which differs by σ_min² (1e-4)."""

    name = "ve"
    range_params = ("sigma_min", "sigma_max")

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, N: int = 1000):
        if not 0 < sigma_min < sigma_max:
            raise DlcourseError(f"VESDE needs 0 < sigma_min < sigma_max, got {sigma_min} and {sigma_max}")
        self.sigma_min, self.sigma_max, self.N = float(sigma_min), float(sigma_max), int(N)
        self.eps = 1e-5
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return self.sigma_min * torch.exp(t * self._log_ratio)

    def drift(self, x, t):
        return torch.zeros_like(x)

    def diffusion(self, t):
        return self.sigma(t) * math.sqrt(2 * self._log_ratio)  # sqrt(dσ²/dt)

    def marginal_prob(self, x0, t):
        return x0, self.sigma(t)

    def prior_std(self):
        return self.sigma_max

    def discretize(self, x, t, dt=None):
        """SMLD's Markov chain x_i = x_{i-1} + sqrt(σ_i² - σ_{i-1}²) z (Song et al. 2021, eq. 45), with σ_i = σ(t)
        and σ_{i-1} = σ(t - dt) (0 before the first level). dt = T / N gives the paper's N-level chain; any other
        dt gives the same chain on a coarser or finer grid."""
        dt = self.T / self.N if dt is None else dt
        sigma = self.sigma(t)
        return torch.zeros_like(x), torch.sqrt(sigma ** 2 - self._previous_sigma(t, dt) ** 2)

    def _previous_sigma(self, t: torch.Tensor, dt: float) -> torch.Tensor:
        """σ_{i-1} = σ(t - dt), 0 before the first level."""
        return torch.where(t - dt > 0, self.sigma((t - dt).clamp(min=0)), torch.zeros_like(t))

    def ancestral(self, x, t, score, dt, noise):
        """SMLD's ancestral step (Song et al. 2021, Appendix F, eq. 47):
        x_{i-1} = x_i + (σ_i² - σ_{i-1}²) s + sqrt(σ_{i-1}² (σ_i² - σ_{i-1}²) / σ_i²) z."""
        sigma, prev = self.sigma(t), self._previous_sigma(t, dt)
        jump = sigma ** 2 - prev ** 2  # (B,)
        return x + unsqueeze_as(jump, x) * score + unsqueeze_as(torch.sqrt(prev ** 2 * jump / sigma ** 2), x) * noise


@SDES.register("vp")
class VPSDE(SDE):
    """Variance preserving SDE (DDPM in continuous time; Song et al. 2021, eq. 11):
    dx = -½ β(t) x dt + sqrt(β(t)) dw with β(t) = β_min + t (β_max - β_min).
    Kernel (eq. 29): mean = exp(-½∫β) x0, var = 1 - exp(-∫β), ∫_0^t β = β_min t + ½ t² (β_max - β_min).

    ``discretization`` picks the discrete chain behind the reverse-diffusion and ancestral predictors:

    - ``"exact"``: β_i = 1 - exp(-∫_{t-Δt}^t β), the exact variance of the OU step, so every β_i < 1 and any
      number of steps is stable;
    - ``"ddpm"``: DDPM's table β_i = β(t) Δt (score_sde's ``discrete_betas``), first order in Δt: β_i > 1 below
      20 steps (NaN), but where it is defined it is the more accurate of the two: on N(0, ¼) with its exact score
      the reverse-diffusion predictor's output variance is off by 14% / 2.3% at 20 / 100 steps against 38% / 6.7%
      for the exact-OU chain (`benchmarks/sde_bench.py --part discretization`, computed exactly).
    """

    name = "vp"
    range_params = ("beta_min", "beta_max")

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, N: int = 1000, discretization: str = "exact"):
        if not 0 < beta_min < beta_max:
            raise DlcourseError(f"{type(self).__name__} needs 0 < beta_min < beta_max, got {beta_min} and {beta_max}")
        if discretization not in ("exact", "ddpm"):
            raise DlcourseError(f"discretization must be 'exact' or 'ddpm', got {discretization!r}")
        self.beta_min, self.beta_max, self.N = float(beta_min), float(beta_max), int(N)
        self.discretization = discretization
        self.eps = 1e-3

    def beta(self, t):
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def integrated_beta(self, t):
        return self.beta_min * t + 0.5 * t ** 2 * (self.beta_max - self.beta_min)

    def drift(self, x, t):
        return -0.5 * unsqueeze_as(self.beta(t), x) * x

    def diffusion(self, t):
        return torch.sqrt(self.beta(t))

    def marginal_prob(self, x0, t):
        log_alpha = -0.5 * self.integrated_beta(t)
        return unsqueeze_as(torch.exp(log_alpha), x0) * x0, torch.sqrt(-torch.expm1(2 * log_alpha))

    def prior_std(self):
        return 1.0

    def discrete_beta(self, t: torch.Tensor, dt: float | None = None) -> torch.Tensor:
        """β_i (B,) of the forward step that ends at t: 1 - exp(-∫_{t-dt}^t β(s) ds) (``"exact"``, always < 1) or
        DDPM's first-order β(t) dt (``"ddpm"``); the two agree to first order in dt."""
        dt = self.T / self.N if dt is None else dt
        if self.discretization == "ddpm":
            return self.beta(t) * dt
        return -torch.expm1(-(self.integrated_beta(t) - self.integrated_beta((t - dt).clamp(min=0))))

    def discretize(self, x, t, dt=None):
        """DDPM's chain x_i = sqrt(1 - β_i) x_{i-1} + sqrt(β_i) z (Song et al. 2021, eq. 46)."""
        beta = self.discrete_beta(t, dt)
        return (torch.sqrt(1 - unsqueeze_as(beta, x)) - 1) * x, torch.sqrt(beta)

    def corrector_alpha(self, t, dt=None):
        """α_i = 1 - β_i of the Langevin corrector (Song et al. 2021, Algorithm 5)."""
        return 1 - self.discrete_beta(t, dt)

    def ancestral(self, x, t, score, dt, noise):
        """DDPM's ancestral step (Song et al. 2021, Appendix F, eq. 46 reversed; Ho et al. 2020, Algorithm 2 with
        the ε-prediction written as a score): x_{i-1} = (x_i + β_i s) / sqrt(1 - β_i) + sqrt(β_i) z."""
        beta = unsqueeze_as(self.discrete_beta(t, dt), x)
        return (x + beta * score) / torch.sqrt(1 - beta) + torch.sqrt(beta) * noise


@SDES.register("subvp")
class SubVPSDE(VPSDE):
    """sub-VP SDE (Song et al. 2021, eq. 12): same drift as VP, g(t)² = β(t) (1 - exp(-2∫β)); its kernel's
    variance (eq. 33) (1 - exp(-∫β))² is never above the VP one, hence the name."""

    name = "subvp"

    def diffusion(self, t):
        return torch.sqrt(self.beta(t) * -torch.expm1(-2 * self.integrated_beta(t)))

    def marginal_prob(self, x0, t):
        log_alpha = -0.5 * self.integrated_beta(t)
        return unsqueeze_as(torch.exp(log_alpha), x0) * x0, -torch.expm1(2 * log_alpha)

    def discretize(self, x, t, dt=None):
        return SDE.discretize(self, x, t, dt)  # Euler-Maruyama: sub-VP has no discrete-time counterpart

    def ancestral(self, x, t, score, dt, noise):
        return SDE.ancestral(self, x, t, score, dt, noise)


@SDES.register("cosine")
class CosineVPSDE(VPSDE):
    """The cosine schedule of Nichol & Dhariwal (2021, "Improved denoising diffusion probabilistic models", eq. 17)
    as a VP SDE: ᾱ(t) = f(t) / f(0) with f(t) = cos²(π/2 · (t + s) / (1 + s)), s = 0.008, i.e.

        ∫_0^t β = -log ᾱ(t),   β(t) = π / (1 + s) · tan(π/2 · (t + s) / (1 + s)).

    ᾱ(1) = 0 makes β infinite at t = 1, so the process stops at T = 0.999, where ᾱ(T) = 2.4e-6 (the mean keeps
    1.6e-3 of x(0), and the prior N(0, I) is that close to p_T): the continuous counterpart of the paper's clipping
    of β_t at 0.999. Every method of the VP SDE (kernel, reverse processes, discretisations) follows from these
    two functions.
    """

    name = "cosine"
    range_params = ()

    def __init__(self, s: float = 0.008, N: int = 1000, discretization: str = "exact", T: float = 0.999):
        if not 0 < s < 1 or not 0 < T < 1:
            raise DlcourseError(f"the cosine schedule needs 0 < s < 1 and 0 < T < 1, got s={s}, T={T}")
        if discretization not in ("exact", "ddpm"):
            raise DlcourseError(f"discretization must be 'exact' or 'ddpm', got {discretization!r}")
        self.s, self.T, self.N, self.discretization, self.eps = float(s), float(T), int(N), discretization, 1e-3

    def _angle(self, t):
        return 0.5 * math.pi * (t + self.s) / (1 + self.s)

    def beta(self, t):
        return math.pi / (1 + self.s) * torch.tan(self._angle(t))

    def integrated_beta(self, t):
        # clamped: at t = 0 the difference of the two logs can round to -1e-17 (a NaN std downstream)
        return (-2 * (torch.log(torch.cos(self._angle(t))) - math.log(math.cos(self._angle(0.0))))).clamp(min=0)


def make_sde(name: str, **kwargs) -> SDE:
    """``make_sde("vp")`` with the paper's default constants, or overrides such as ``beta_max=10``."""
    return SDES.get(name)(**kwargs)
