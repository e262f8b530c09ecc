"""Two-dimensional toy distributions, most with exact log-densities and scores.

The score-based half of the course is tested against these: a model's learned score is compared with
``score(x)``, a sampler's output with ``sample(n)``. Every distribution returns float32 tensors of shape
(n, 2) unless told otherwise (``dtype=``, ``device=``), and sampling takes an optional ``torch.Generator`` so a
picture or a test is reproducible.

What each distribution offers:

=================  ===========  ========================================================================
name               has_density  notes
=================  ===========  ========================================================================
two_gaussians      yes          0.8 N((5,5), I) + 0.2 N((-5,-5), I): Song & Ermon (2019), Figure 3
eight_gaussians    yes          8 equal Gaussians on a circle
grid_gaussians     yes          an n x n grid of equal Gaussians
checkerboard       yes          uniform on the dark squares, smoothed by a Gaussian of std ``sigma``
rings              yes          concentric rings p(x) ~ sum_k w_k exp(-(|x| - r_k)^2 / (2 s^2))
swiss_roll         no           sample only
moons              no           sample only
=================  ===========  ========================================================================

`GaussianMixture` also gives the exact log-density and score of the *perturbed* law of ``alpha X + sigma Z``
(Z standard normal), which is what NCSN (alpha = 1, sigma = noise level) and the VP / VE SDEs (alpha = mean
coefficient, sigma = marginal std) learn.

Device follows the data: ``log_prob(x)`` and ``score(x)`` compute on ``x.device`` in ``x.dtype``; only ``sample``
uses the distribution's own ``device``/``dtype`` (random numbers are drawn on the generator's device, then moved).
"""

from __future__ import annotations

import copy
import inspect
import math
from typing import Callable, Sequence

import torch

from ..errors import ConfigError, ShapeError
from ..utils import unsqueeze_as

__all__ = [
    "ToyDistribution",
    "GaussianMixture",
    "Checkerboard",
    "Rings",
    "SwissRoll",
    "Moons",
    "two_gaussians",
    "eight_gaussians",
    "grid_gaussians",
    "TOY_DISTRIBUTIONS",
    "get_toy",
    "toy_names",
]

_LOG_2PI = math.log(2.0 * math.pi)
_LN2 = math.log(2.0)


# --------------------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------------------


def _check_points(x: torch.Tensor, what: str = "x") -> torch.Tensor:
    """``x`` must be a floating tensor of shape (B, 2)."""
    if not isinstance(x, torch.Tensor):
        raise ShapeError(f"{what} must be a torch.Tensor of shape (B, 2), got {type(x).__name__}")
    if x.dim() != 2 or x.shape[-1] != 2:
        raise ShapeError(f"{what} must have shape (B, 2), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ShapeError(f"{what} must be a floating-point tensor, got {x.dtype}")
    return x


def _draw_device(generator: torch.Generator | None, device: torch.device) -> torch.device:
    """Random numbers are drawn where the generator lives (a CPU generator cannot drive CUDA sampling)."""
    return generator.device if generator is not None else device


def _randn(shape: tuple[int, ...], generator, dtype, device) -> torch.Tensor:
    return torch.randn(shape, generator=generator, dtype=dtype, device=_draw_device(generator, device)).to(device)


def _rand(shape: tuple[int, ...], generator, dtype, device) -> torch.Tensor:
    return torch.rand(shape, generator=generator, dtype=dtype, device=_draw_device(generator, device)).to(device)


def _categorical(probs: torch.Tensor, n: int, generator, device) -> torch.Tensor:
    """``n`` draws of a component index with probabilities ``probs`` (K,) -> (n,) int64 on ``device``."""
    if n == 0:
        return torch.zeros(0, dtype=torch.long, device=device)
    p = probs.to(device=_draw_device(generator, device), dtype=torch.float64)
    return torch.multinomial(p, n, replacement=True, generator=generator).to(device)


def _check_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError(f"number of samples must be a non-negative int, got {n!r}")
    return n


def _as_weights(weights, k: int, dtype, device) -> torch.Tensor:
    w = torch.as_tensor(weights, dtype=torch.float64).flatten()
    if w.numel() != k:
        raise ShapeError(f"expected {k} mixture weights, got {w.numel()}")
    if not torch.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ConfigError(f"mixture weights must be finite, non-negative and not all zero, got {w.tolist()}")
    return (w / w.sum()).to(dtype=dtype, device=device)


def _log1mexp(d: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(d)) for d <= 0, accurate at both ends (Maechler 2012, "Accurately computing log(1 - exp(-|a|))")."""
    near_zero = d > -_LN2
    a = torch.log(-torch.expm1(torch.clamp(d, min=-_LN2)))  # used where d is close to 0
    b = torch.log1p(-torch.exp(torch.clamp(d, max=-_LN2)))  # used where d is very negative
    return torch.where(near_zero, a, b)


def _log_ndtr_diff(hi: torch.Tensor, lo: torch.Tensor) -> torch.Tensor:
    """log(Phi(hi) - Phi(lo)) for hi > lo, without cancellation in either tail.

    When both arguments are in the upper tail, Phi(hi) - Phi(lo) = Phi(-lo) - Phi(-hi) is computed instead, so
    the larger of the two normal CDFs is never close to 1.
    """
    flip = (hi + lo) > 0
    upper = torch.where(flip, -lo, hi)
    lower = torch.where(flip, -hi, lo)
    log_upper = torch.special.log_ndtr(upper)
    return log_upper + _log1mexp(torch.special.log_ndtr(lower) - log_upper)


def _log_normal_pdf(u: torch.Tensor) -> torch.Tensor:
    """log phi(u), the standard normal log-density."""
    return -0.5 * u.square() - 0.5 * _LOG_2PI


# --------------------------------------------------------------------------------------------------------------
# base class
# --------------------------------------------------------------------------------------------------------------


class ToyDistribution:
    """A distribution on R^2 that can be sampled; subclasses with ``has_density = True`` also give the exact
    ``log_prob(x)`` and ``score(x) = grad_x log p(x)`` for x of shape (B, 2).
    """

    name: str = "toy"
    has_density: bool = False
    _tensor_attrs: tuple[str, ...] = ()

    def __init__(self, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None):
        self.dtype = dtype
        self.device = torch.device(device) if device is not None else torch.device("cpu")

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` independent samples, shape (n, 2), in ``self.dtype`` on ``self.device``."""
        raise NotImplementedError

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log-density at x (B, 2) -> (B,)."""
        raise NotImplementedError(f"{self.name} is sample-only (has_density=False): it has no log_prob")

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Exact score grad_x log p(x) at x (B, 2) -> (B, 2)."""
        raise NotImplementedError(f"{self.name} is sample-only (has_density=False): it has no score")

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "ToyDistribution":
        """A copy whose parameters (and samples) live on ``device`` in ``dtype``."""
        new = copy.copy(self)
        if device is not None:
            new.device = torch.device(device)
        if dtype is not None:
            new.dtype = dtype
        for attr in self._tensor_attrs:
            setattr(new, attr, getattr(self, attr).to(device=new.device, dtype=new.dtype))
        return new

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, has_density={self.has_density})"


# --------------------------------------------------------------------------------------------------------------
# Gaussian mixture
# --------------------------------------------------------------------------------------------------------------


def _as_covariances(covs, k: int, dtype, device) -> torch.Tensor:
    """Full covariances (K, 2, 2) from a scalar variance, (K,) variances, (K, 2) diagonals or (K, 2, 2)."""
    c = torch.as_tensor(covs, dtype=dtype, device=device)
    eye = torch.eye(2, dtype=dtype, device=device)
    if c.dim() == 0:
        return c * eye.expand(k, 2, 2)  # (K, 2, 2)
    if c.shape == (k,):
        return unsqueeze_as(c, eye.expand(k, 2, 2)) * eye  # (K, 2, 2)
    if c.shape == (k, 2):
        return torch.diag_embed(c)  # (K, 2, 2)
    if c.shape == (k, 2, 2):
        return c.clone()
    raise ShapeError(
        f"covariances for {k} components must be a scalar, ({k},) variances, ({k}, 2) diagonals or ({k}, 2, 2) "
        f"matrices, got shape {tuple(c.shape)}"
    )


def _inverse_and_logdet_2x2(cov: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse and log-determinant of symmetric 2x2 matrices (..., 2, 2), in closed form.

    For C = [[a, b], [b, d]]: det C = ad - b^2 and C^{-1} = [[d, -b], [-b, a]] / det C. Written out because a
    batch of (B, K) tiny matrices is far faster elementwise than through a batched LAPACK call.
    """
    a, b, d = cov[..., 0, 0], cov[..., 0, 1], cov[..., 1, 1]  # (...)
    det = a * d - b * b  # (...)
    inv = torch.stack([torch.stack([d, -b], -1), torch.stack([-b, a], -1)], -2) / unsqueeze_as(det, cov)
    return inv, torch.log(det)


class GaussianMixture(ToyDistribution):
    """p(x) = sum_k w_k N(x; mu_k, Sigma_k) on R^2, with the exact density and score of its Gaussian perturbations.

    Args:
        weights: (K,) non-negative mixture weights; normalised to sum to one.
        means: (K, 2) component means.
        covs: component covariances: a scalar variance shared by all components, (K,) isotropic variances,
            (K, 2) diagonal variances, or (K, 2, 2) full covariance matrices (symmetric positive definite).
        dtype, device: of the parameters and of the samples.
        name: shown in ``repr`` and used by the registry.

    ``log_prob``, ``score`` and ``posterior`` take ``alpha`` and ``sigma`` (floats, or tensors of shape (B,), one
    per row of x) and then describe the law of ``alpha X + sigma Z`` with X ~ p and Z ~ N(0, I) independent,
    which is again a Gaussian mixture: weights w_k, means alpha mu_k, covariances alpha^2 Sigma_k + sigma^2 I.
    """

    has_density = True
    _tensor_attrs = ("weights", "means", "covs", "scale_tril")

    def __init__(self, weights, means, covs=1.0, *, dtype: torch.dtype = torch.float32, device=None,
                 name: str = "gaussian_mixture"):
        super().__init__(dtype=dtype, device=device)
        self.name = name
        means = torch.as_tensor(means, dtype=dtype, device=self.device)
        if means.dim() != 2 or means.shape[1] != 2:
            raise ShapeError(f"means must have shape (K, 2), got {tuple(means.shape)}")
        k = means.shape[0]
        if k == 0:
            raise ConfigError("a Gaussian mixture needs at least one component")
        self.means = means  # (K, 2)
        self.weights = _as_weights(weights, k, dtype, self.device)  # (K,)
        self.covs = _as_covariances(covs, k, dtype, self.device)  # (K, 2, 2)
        if not torch.allclose(self.covs, self.covs.transpose(-1, -2)):
            raise ConfigError("mixture covariances must be symmetric")
        scale_tril, info = torch.linalg.cholesky_ex(self.covs.double())
        if (info != 0).any():
            bad = torch.nonzero(info).flatten().tolist()
            raise ConfigError(f"mixture covariances of components {bad} are not positive definite")
        self.scale_tril = scale_tril.to(dtype)  # (K, 2, 2), Sigma_k = L_k L_k^T

    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    # -- sampling ------------------------------------------------------------------------------------------------

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Ancestral sampling: k ~ Categorical(w), then x = mu_k + L_k z with Sigma_k = L_k L_k^T. -> (n, 2)."""
        n = _check_n(n)
        k = _categorical(self.weights, n, generator, self.device)  # (n,)
        z = _randn((n, 2), generator, self.dtype, self.device)  # (n, 2)
        return self.means[k] + torch.einsum("nij,nj->ni", self.scale_tril[k], z)  # (n, 2)

    # -- perturbed law -------------------------------------------------------------------------------------------

    def _perturbation(self, x: torch.Tensor, alpha, sigma) -> tuple[torch.Tensor, torch.Tensor]:
        """alpha and sigma as tensors of shape () or (B,) on x's device and dtype."""
        out = []
        for label, v in (("alpha", alpha), ("sigma", sigma)):
            t = torch.as_tensor(v, dtype=x.dtype, device=x.device)
            if t.dim() > 1 or (t.dim() == 1 and t.shape[0] != x.shape[0]):
                raise ShapeError(f"{label} must be a float or a tensor of shape ({x.shape[0]},), "
                                 f"one per row of x, got shape {tuple(t.shape)}")
            out.append(t)
        return out[0], out[1]

    def _component_terms(self, x: torch.Tensor, alpha=1.0, sigma=0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """log(w_k N(x; alpha mu_k, alpha^2 Sigma_k + sigma^2 I)) (B, K) and the precision times the residual,
        (alpha^2 Sigma_k + sigma^2 I)^{-1} (x - alpha mu_k) (B, K, 2).

        With per-row alpha/sigma every row has its own K covariances (B, K, 2, 2); with scalars they are shared
        (1, K, 2, 2) and broadcast.
        """
        x = _check_points(x)
        alpha, sigma = self._perturbation(x, alpha, sigma)  # () or (B,)
        means = self.means.to(x).unsqueeze(0)  # (1, K, 2)
        covs = self.covs.to(x).unsqueeze(0)  # (1, K, 2, 2)
        eye = torch.eye(2, dtype=x.dtype, device=x.device)  # (2, 2)
        mean_t = unsqueeze_as(alpha, means) * means  # (B or 1, K, 2)
        cov_t = unsqueeze_as(alpha.square(), covs) * covs + unsqueeze_as(sigma.square(), covs) * eye  # (B|1, K, 2, 2)
        precision, logdet = _inverse_and_logdet_2x2(cov_t)  # (B|1, K, 2, 2), (B|1, K)
        residual = x.unsqueeze(1) - mean_t  # (B, K, 2)
        prec_res = torch.einsum("...ij,...j->...i", precision, residual)  # (B, K, 2)
        mahalanobis = (residual * prec_res).sum(-1)  # (B, K)
        log_normal = -0.5 * mahalanobis - 0.5 * logdet - _LOG_2PI  # (B, K), log N in d = 2
        log_joint = torch.log(self.weights.to(x)) + log_normal  # (B, K)
        return log_joint, prec_res

    def log_prob(self, x: torch.Tensor, alpha=1.0, sigma=0.0) -> torch.Tensor:
        """log p_{alpha,sigma}(x) = logsumexp_k [log w_k + log N(x; alpha mu_k, alpha^2 Sigma_k + sigma^2 I)].

        x (B, 2); alpha, sigma floats or (B,). Returns (B,). With alpha = 1 and sigma = 0 this is the mixture itself.
        """
        log_joint, _ = self._component_terms(x, alpha, sigma)  # (B, K)
        return torch.logsumexp(log_joint, dim=-1)  # (B,)

    def posterior(self, x: torch.Tensor, alpha=1.0, sigma=0.0) -> torch.Tensor:
        """Responsibilities r_k(x) = P(component k | alpha X + sigma Z = x), shape (B, K), rows sum to one."""
        log_joint, _ = self._component_terms(x, alpha, sigma)
        return torch.softmax(log_joint, dim=-1)  # (B, K)

    def score(self, x: torch.Tensor, alpha=1.0, sigma=0.0) -> torch.Tensor:
        """grad_x log p_{alpha,sigma}(x) = -sum_k r_k(x) C_k^{-1} (x - alpha mu_k), C_k = alpha^2 Sigma_k + sigma^2 I.

        The closed-form target of denoising score matching (Vincent 2011) for a mixture; NCSN's Figure 3
        (Song & Ermon 2019) uses it with alpha = 1. The responsibilities r_k come from a softmax over log-weights,
        so nothing under- or overflows far from the modes. x (B, 2) -> (B, 2).
        """
        log_joint, prec_res = self._component_terms(x, alpha, sigma)  # (B, K), (B, K, 2)
        resp = torch.softmax(log_joint, dim=-1)  # (B, K)
        return -(resp.unsqueeze(-1) * prec_res).sum(dim=1)  # (B, 2)

    def component_of(self, x: torch.Tensor, alpha=1.0, sigma=0.0) -> torch.Tensor:
        """The most likely component of each row of x (B, 2) -> (B,) int64 (argmax of the posterior)."""
        log_joint, _ = self._component_terms(x, alpha, sigma)
        return log_joint.argmax(dim=-1)  # (B,)

    # -- moments -------------------------------------------------------------------------------------------------

    def mean(self) -> torch.Tensor:
        """E[X] = sum_k w_k mu_k, shape (2,)."""
        return self.weights @ self.means  # (2,)

    def cov(self) -> torch.Tensor:
        """Cov[X] = sum_k w_k (Sigma_k + mu_k mu_k^T) - E[X] E[X]^T (law of total covariance), shape (2, 2)."""
        m = self.mean()
        second = torch.einsum("k,kij->ij", self.weights, self.covs) + torch.einsum(
            "k,ki,kj->ij", self.weights, self.means, self.means
        )
        return second - torch.outer(m, m)  # (2, 2)

    def perturbed(self, alpha: float = 1.0, sigma: float = 0.0) -> "GaussianMixture":
        """The law of alpha X + sigma Z as a mixture: weights w_k, means alpha mu_k, covs alpha^2 Sigma_k + sigma^2 I."""
        eye = torch.eye(2, dtype=self.dtype, device=self.device)
        return GaussianMixture(self.weights, alpha * self.means, alpha**2 * self.covs + sigma**2 * eye,
                               dtype=self.dtype, device=self.device, name=f"{self.name}(alpha={alpha}, sigma={sigma})")


def two_gaussians(*, dtype: torch.dtype = torch.float32, device=None) -> GaussianMixture:
    """0.8 N((5, 5), I) + 0.2 N((-5, -5), I): the mixture of Song & Ermon (2019), Section 3.2 and Figure 3, on
    which plain Langevin dynamics gets the mode weights wrong and annealed Langevin gets them right."""
    return GaussianMixture([0.8, 0.2], [[5.0, 5.0], [-5.0, -5.0]], 1.0, dtype=dtype, device=device,
                           name="two_gaussians")


def eight_gaussians(radius: float = 2.0, std: float = 0.2, *, dtype: torch.dtype = torch.float32,
                    device=None) -> GaussianMixture:
    """Eight equally weighted isotropic Gaussians of std ``std`` at angles 0, 45, ..., 315 degrees on a circle."""
    angles = torch.arange(8, dtype=torch.float64) * (2.0 * math.pi / 8)
    means = radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1)  # (8, 2)
    return GaussianMixture(torch.ones(8), means, std**2, dtype=dtype, device=device, name="eight_gaussians")


def grid_gaussians(n: int = 5, spacing: float = 1.0, std: float = 0.1, *, dtype: torch.dtype = torch.float32,
                   device=None) -> GaussianMixture:
    """An n x n grid of equally weighted isotropic Gaussians, ``spacing`` apart and centred at the origin."""
    if n < 1:
        raise ConfigError(f"grid_gaussians needs n >= 1, got {n}")
    ticks = (torch.arange(n, dtype=torch.float64) - (n - 1) / 2) * spacing
    gx, gy = torch.meshgrid(ticks, ticks, indexing="ij")
    means = torch.stack([gx.flatten(), gy.flatten()], dim=-1)  # (n*n, 2)
    return GaussianMixture(torch.ones(n * n), means, std**2, dtype=dtype, device=device, name="grid_gaussians")


# --------------------------------------------------------------------------------------------------------------
# checkerboard
# --------------------------------------------------------------------------------------------------------------


class Checkerboard(ToyDistribution):
    """Uniform on the dark squares of an n x n board centred at the origin, convolved with N(0, sigma^2 I).

    Square (i, j), i, j = 0..n-1 from the lower left, covers [a_i, a_i + side) x [a_j, a_j + side) with
    a_i = (i - n/2) side, and is dark when i + j is even (with n = 4, side = 1: the 8 squares of the familiar
    [-2, 2]^2 checkerboard). With S dark squares, X = U + sigma Z where U is uniform on their union, so

        p(x) = 1 / (S side^2) * sum_s prod_{d=1,2} [Phi((x_d - a_{s,d}) / sigma) - Phi((x_d - b_{s,d}) / sigma)]

    with [a_{s,d}, b_{s,d}) the extent of square s along axis d: exact everywhere and smooth, so the score exists.
    ``sigma = 0`` gives the unsmoothed board, which can be sampled but has no score (``has_density`` is False).
    """

    _tensor_attrs = ("lows", "highs")

    def __init__(self, n: int = 4, side: float = 1.0, sigma: float = 0.05, *, dtype: torch.dtype = torch.float32,
                 device=None):
        super().__init__(dtype=dtype, device=device)
        if n < 1 or side <= 0 or sigma < 0:
            raise ConfigError(f"checkerboard needs n >= 1, side > 0 and sigma >= 0, got n={n}, side={side}, "
                              f"sigma={sigma}")
        self.name = "checkerboard"
        self.n, self.side, self.sigma = int(n), float(side), float(sigma)
        self.has_density = self.sigma > 0
        corners = [((i - n / 2) * side, (j - n / 2) * side) for i in range(n) for j in range(n) if (i + j) % 2 == 0]
        self.lows = torch.tensor(corners, dtype=dtype, device=self.device)  # (S, 2)
        self.highs = self.lows + side  # (S, 2)

    @property
    def num_squares(self) -> int:
        return self.lows.shape[0]

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """A uniform dark square, a uniform point in it, plus sigma-Gaussian noise. -> (n, 2)."""
        n = _check_n(n)
        uniform_sq = torch.full((self.num_squares,), 1.0 / self.num_squares, dtype=torch.float64)
        s = _categorical(uniform_sq, n, generator, self.device)  # (n,)
        u = _rand((n, 2), generator, self.dtype, self.device)  # (n, 2)
        z = _randn((n, 2), generator, self.dtype, self.device)  # (n, 2)
        return self.lows[s] + self.side * u + self.sigma * z

    def _log_masses(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per square and axis: log[Phi(hi) - Phi(lo)] (B, S, 2) with hi = (x - a)/sigma, lo = (x - b)/sigma."""
        if not self.has_density:
            raise NotImplementedError("the unsmoothed checkerboard (sigma=0) has no score; use sigma > 0")
        x = _check_points(x)
        hi = (x.unsqueeze(1) - self.lows.to(x)) / self.sigma  # (B, S, 2)
        lo = (x.unsqueeze(1) - self.highs.to(x)) / self.sigma  # (B, S, 2)
        return _log_ndtr_diff(hi, lo), hi, lo

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) = logsumexp_s sum_d log[Phi(hi_sd) - Phi(lo_sd)] - log(S side^2). x (B, 2) -> (B,)."""
        log_mass, _, _ = self._log_masses(x)  # (B, S, 2)
        return torch.logsumexp(log_mass.sum(-1), dim=-1) - math.log(self.num_squares * self.side**2)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """grad_x log p(x) = sum_s r_s(x) g_s(x), with r_s = softmax_s of the log-masses and
        g_{s,d} = [phi(hi_sd) - phi(lo_sd)] / (sigma [Phi(hi_sd) - Phi(lo_sd)]), the derivative of axis d's
        log-mass (the other axis does not depend on x_d). x (B, 2) -> (B, 2)."""
        log_mass, hi, lo = self._log_masses(x)  # (B, S, 2)
        g = (torch.exp(_log_normal_pdf(hi) - log_mass) - torch.exp(_log_normal_pdf(lo) - log_mass)) / self.sigma
        resp = torch.softmax(log_mass.sum(-1), dim=-1)  # (B, S)
        return (resp.unsqueeze(-1) * g).sum(dim=1)  # (B, 2)

    def mean(self) -> torch.Tensor:
        """E[X]: the average centre of the dark squares, shape (2,)."""
        return (self.lows + 0.5 * self.side).mean(dim=0)

    def cov(self) -> torch.Tensor:
        """Cov[X] = Cov of the square centres + (side^2 / 12 + sigma^2) I (uniform within a square, plus noise)."""
        centres = self.lows + 0.5 * self.side  # (S, 2)
        c = centres - centres.mean(dim=0)
        eye = torch.eye(2, dtype=self.dtype, device=self.device)
        return c.T @ c / self.num_squares + (self.side**2 / 12 + self.sigma**2) * eye


# --------------------------------------------------------------------------------------------------------------
# rings
# --------------------------------------------------------------------------------------------------------------


class Rings(ToyDistribution):
    """Concentric rings: p(x) = sum_k w_k exp(-(|x| - r_k)^2 / (2 s^2)) / Z_k, with uniform angle.

    Each ring is normalised exactly on R^2: in polar coordinates its radial density is proportional to
    r exp(-(r - r_k)^2 / (2 s^2)) on r > 0, and

        Z_k = 2 pi int_0^inf r exp(-(r - r_k)^2 / (2 s^2)) dr
            = 2 pi [s^2 exp(-r_k^2 / (2 s^2)) + r_k s sqrt(2 pi) Phi(r_k / s)].

    The score is -(|x| - sum_k q_k(x) r_k) / s^2 * x / |x| with q_k the posterior ring responsibilities; at x = 0
    it is set to 0 (the density has a cone-shaped peak or dip there, negligible when r_k >> s).

    Args:
        radii: ring radii r_k >= 0 (r_k = 0 gives a centred Gaussian blob).
        std: the common radial width s.
        weights: ring probabilities; default proportional to the radii, so every ring has the same density along
            its circumference.
    """

    has_density = True
    _tensor_attrs = ("radii", "weights")

    def __init__(self, radii: Sequence[float] = (1.0, 2.0, 3.0), std: float = 0.1, weights=None, *,
                 dtype: torch.dtype = torch.float32, device=None):
        super().__init__(dtype=dtype, device=device)
        self.name = "rings"
        radii_t = torch.as_tensor(radii, dtype=torch.float64).flatten()
        if radii_t.numel() == 0 or (radii_t < 0).any() or std <= 0:
            raise ConfigError(f"rings need at least one radius >= 0 and std > 0, got radii={radii}, std={std}")
        self.std = float(std)
        if weights is None:
            weights = radii_t if radii_t.sum() > 0 else torch.ones_like(radii_t)
        self.weights = _as_weights(weights, radii_t.numel(), dtype, self.device)  # (K,)
        self.radii = radii_t.to(dtype=dtype, device=self.device)  # (K,)

    def _log_normaliser(self, radii: torch.Tensor) -> torch.Tensor:
        """log Z_k, computed as a logaddexp of the two positive terms (K,)."""
        s = self.std
        gaussian_part = 2 * math.log(s) - radii.square() / (2 * s * s)
        ring_part = torch.log(radii) + math.log(s) + 0.5 * _LOG_2PI + torch.special.log_ndtr(radii / s)
        return _LOG_2PI + torch.logaddexp(gaussian_part, ring_part)  # log(0) = -inf is fine for r_k = 0

    def _log_joint(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """log(w_k p_k(x)) (B, K), |x| (B,), radii (K,) in x's dtype."""
        x = _check_points(x)
        radii = self.radii.to(x)  # (K,)
        r = torch.linalg.vector_norm(x, dim=-1)  # (B,)
        log_k = -(r.unsqueeze(-1) - radii).square() / (2 * self.std**2) - self._log_normaliser(radii)  # (B, K)
        return torch.log(self.weights.to(x)) + log_k, r, radii

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) = logsumexp_k [log w_k - (|x| - r_k)^2 / (2 s^2) - log Z_k]. x (B, 2) -> (B,)."""
        log_joint, _, _ = self._log_joint(x)
        return torch.logsumexp(log_joint, dim=-1)  # (B,)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """grad_x log p(x) = -(|x| - sum_k q_k r_k) / s^2 * x / |x|, q = softmax of the log-joint. -> (B, 2)."""
        log_joint, r, radii = self._log_joint(x)
        q = torch.softmax(log_joint, dim=-1)  # (B, K)
        d_log_p_dr = -(r - q @ radii) / self.std**2  # (B,)
        unit = x / unsqueeze_as(r.clamp_min(torch.finfo(x.dtype).tiny), x)  # (B, 2), 0 at the origin
        return unsqueeze_as(d_log_p_dr, x) * unit

    def _radial_cdf(self, r: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        """P(|X| <= r) for one ring of radius mu (elementwise, float64):
        [s^2 (e^{-mu^2/2s^2} - e^{-(r-mu)^2/2s^2}) + mu s sqrt(2 pi) (Phi((r-mu)/s) - Phi(-mu/s))] / (Z / 2 pi)."""
        s = self.std
        gaussian_part = s * s * (torch.exp(-mu.square() / (2 * s * s)) - torch.exp(-(r - mu).square() / (2 * s * s)))
        ring_part = mu * s * math.sqrt(2 * math.pi) * (torch.special.ndtr((r - mu) / s) - torch.special.ndtr(-mu / s))
        return (gaussian_part + ring_part) / torch.exp(self._log_normaliser(mu) - _LOG_2PI)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Exact sampling: ring k ~ w, radius by inverting the radial CDF (bisection to float64 precision), angle
        uniform. -> (n, 2)."""
        n = _check_n(n)
        k = _categorical(self.weights, n, generator, self.device)  # (n,)
        u = _rand((n,), generator, torch.float64, self.device)  # (n,)
        theta = 2 * math.pi * _rand((n,), generator, torch.float64, self.device)  # (n,)
        mu = self.radii.to(torch.float64)[k]  # (n,)
        lo = torch.zeros_like(mu)
        hi = mu + 40 * self.std  # the radial tail beyond r_k + 40 s has mass < 1e-300
        for _ in range(64):  # each halving gains one bit; 64 reach float64 resolution of [0, hi]
            mid = 0.5 * (lo + hi)
            below = self._radial_cdf(mid, mu) < u
            lo = torch.where(below, mid, lo)
            hi = torch.where(below, hi, mid)
        r = 0.5 * (lo + hi)  # (n,)
        return torch.stack([r * torch.cos(theta), r * torch.sin(theta)], dim=-1).to(self.dtype)  # (n, 2)


# --------------------------------------------------------------------------------------------------------------
# sample-only
# --------------------------------------------------------------------------------------------------------------


class SwissRoll(ToyDistribution):
    """The 2-D swiss roll: t = 1.5 pi (1 + 2u), u ~ U(0, 1); x = scale (t cos t, t sin t) + noise Z. Sample only.

    (The 2-D section of scikit-learn's ``make_swiss_roll``; with the defaults it spans about [-2.7, 2.9]^2.)
    """

    def __init__(self, noise: float = 0.1, scale: float = 0.2, *, dtype: torch.dtype = torch.float32, device=None):
        super().__init__(dtype=dtype, device=device)
        if noise < 0 or scale <= 0:
            raise ConfigError(f"swiss_roll needs noise >= 0 and scale > 0, got noise={noise}, scale={scale}")
        self.name = "swiss_roll"
        self.noise, self.scale = float(noise), float(scale)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        n = _check_n(n)
        t = 1.5 * math.pi * (1 + 2 * _rand((n,), generator, self.dtype, self.device))  # (n,)
        x = self.scale * torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=-1)  # (n, 2)
        return x + self.noise * _randn((n, 2), generator, self.dtype, self.device)


class Moons(ToyDistribution):
    """Two interleaving half circles, centred at the origin. Sample only.

    Each point picks a moon with probability 1/2 and an angle theta ~ U(0, pi): the upper moon is
    (cos theta, sin theta), the lower (1 - cos theta, 1/2 - sin theta); both are shifted by (-1/2, -1/4) so the
    pair is centred, then scaled by ``scale`` and perturbed by noise Z (std ``noise``).
    """

    def __init__(self, noise: float = 0.05, scale: float = 1.0, *, dtype: torch.dtype = torch.float32, device=None):
        super().__init__(dtype=dtype, device=device)
        if noise < 0 or scale <= 0:
            raise ConfigError(f"moons need noise >= 0 and scale > 0, got noise={noise}, scale={scale}")
        self.name = "moons"
        self.noise, self.scale = float(noise), float(scale)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        n = _check_n(n)
        lower = _rand((n,), generator, self.dtype, self.device) < 0.5  # (n,) which moon
        theta = math.pi * _rand((n,), generator, self.dtype, self.device)  # (n,)
        upper_xy = torch.stack([torch.cos(theta), torch.sin(theta)], dim=-1)  # (n, 2)
        lower_xy = torch.stack([1 - torch.cos(theta), 0.5 - torch.sin(theta)], dim=-1)  # (n, 2)
        centre = torch.tensor([0.5, 0.25], dtype=self.dtype, device=self.device)
        x = torch.where(lower.unsqueeze(-1), lower_xy, upper_xy) - centre
        return self.scale * x + self.noise * _randn((n, 2), generator, self.dtype, self.device)


# --------------------------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------------------------

TOY_DISTRIBUTIONS: dict[str, Callable[..., ToyDistribution]] = {
    "two_gaussians": two_gaussians,
    "eight_gaussians": eight_gaussians,
    "grid_gaussians": grid_gaussians,
    "checkerboard": Checkerboard,
    "rings": Rings,
    "swiss_roll": SwissRoll,
    "moons": Moons,
}


def toy_names() -> list[str]:
    """The names ``get_toy`` accepts."""
    return sorted(TOY_DISTRIBUTIONS)


def get_toy(name: str, **kwargs) -> ToyDistribution:
    """The toy distribution called ``name`` ("two_gaussians", "checkerboard", ...; "-" and "_" are the same),
    built with ``kwargs`` (e.g. ``dtype=torch.float64``, ``sigma=0.1``)."""
    key = str(name).strip().lower().replace("-", "_")
    if key not in TOY_DISTRIBUTIONS:
        raise ConfigError(f"unknown toy distribution {name!r}; valid names: {', '.join(toy_names())}")
    factory = TOY_DISTRIBUTIONS[key]
    try:
        inspect.signature(factory).bind(**kwargs)
    except TypeError as exc:
        params = [p for p in inspect.signature(factory).parameters if p != "self"]
        raise ConfigError(f"bad options for toy distribution {key!r} ({exc}); it accepts: {', '.join(params)}") from None
    return factory(**kwargs)
