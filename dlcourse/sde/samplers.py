"""Samplers for the reverse-time SDE and the probability-flow ODE (Song et al. 2021, Section 4 and Appendix G).

Each step is a small pure function ``(x, t, ...) -> (x, x_mean)``; `pc_sample` is the loop that strings them
together, and `pc_sample_reference` is the same loop written out sample by sample, as in the lecture, which a test
holds to the same answer for the same noise. `ode_sample` integrates the probability-flow ODE with the adaptive
Dormand-Prince solver of `dlcourse.sde.ode`, on the model's device.

Every sampler reports NFE, the number of score evaluations per sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import DlcourseError
from ..utils import unsqueeze_as
from .ode import odeint_dopri5
from .sdes import SDE, ScoreFn, VPSDE, SubVPSDE

__all__ = ["euler_maruyama_step", "reverse_diffusion_step", "langevin_corrector_step", "pc_sample",
           "pc_sample_reference", "ode_sample", "SampleResult", "PREDICTORS", "CORRECTORS"]


@dataclass
class SampleResult:
    x: torch.Tensor                    #: final samples (B, ...)
    nfe: int                           #: score evaluations per sample
    frames: torch.Tensor | None = None  #: recorded states (F, B, ...) when asked, else None
    times: torch.Tensor | None = None   #: the time of each frame (F,)


def euler_maruyama_step(sde: SDE, score_fn: ScoreFn, x: torch.Tensor, t: torch.Tensor, dt: float,
                        noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One Euler-Maruyama step of the reverse SDE (eq. 6) from t to t + dt (dt < 0):
    x ← x + [f - g² s] dt + g √|dt| z."""
    x_mean = x + sde.reverse(score_fn).sde_drift(x, t) * dt
    return x_mean + unsqueeze_as(sde.diffusion(t), x) * abs(dt) ** 0.5 * noise, x_mean


def reverse_diffusion_step(sde: SDE, score_fn: ScoreFn, x: torch.Tensor, t: torch.Tensor, dt: float,
                           noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reverse-diffusion predictor (Song et al. 2021, eq. 47): x ← x - f_i + G_i² s + G_i z, with f_i, G_i the
    forward discretisation of `SDE.discretize` over a step of |dt| (for VP it is DDPM's ancestral step up to
    first order)."""
    rev_f, G = sde.reverse(score_fn).discretize(x, t, abs(dt))
    x_mean = x - rev_f
    return x_mean + unsqueeze_as(G, x) * noise, x_mean


def langevin_corrector_step(sde: SDE, score_fn: ScoreFn, x: torch.Tensor, t: torch.Tensor, dt: float, snr: float,
                            noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One Langevin corrector step with the signal-to-noise rule (Song et al. 2021, Algorithm 4 (VE) / 5 (VP)):
    ε = 2 α (r ‖z‖ / ‖s‖)², x ← x + ε s + √(2ε) z, where r = ``snr``, α = 1 - β_i for VP and 1 otherwise, and the
    norms are averaged over the batch as in the paper's algorithms (β_i over a step of |dt|)."""
    grad = score_fn(x, t)
    dims = list(range(1, x.dim()))
    grad_norm = grad.pow(2).sum(dims).sqrt().mean()
    noise_norm = noise.pow(2).sum(dims).sqrt().mean()
    alpha = sde.corrector_alpha(t, abs(dt)) if isinstance(sde, VPSDE) and not isinstance(sde, SubVPSDE) \
        else torch.ones_like(t)
    step = 2 * alpha * (snr * noise_norm / grad_norm) ** 2  # (B,)
    x_mean = x + unsqueeze_as(step, x) * grad
    return x_mean + unsqueeze_as(torch.sqrt(2 * step), x) * noise, x_mean


PREDICTORS = {"euler_maruyama": euler_maruyama_step, "reverse_diffusion": reverse_diffusion_step, "none": None}
CORRECTORS = {"langevin": langevin_corrector_step, "none": None}


def _check(predictor: str, corrector: str) -> None:
    if predictor not in PREDICTORS:
        raise DlcourseError(f"unknown predictor {predictor!r}; choose one of: {', '.join(PREDICTORS)}")
    if corrector not in CORRECTORS:
        raise DlcourseError(f"unknown corrector {corrector!r}; choose one of: {', '.join(CORRECTORS)}")
    if predictor == "none" and corrector == "none":
        raise DlcourseError("predictor and corrector are both 'none': nothing would move the samples")


def _draw(shape, generator, device, dtype):
    return torch.randn(shape, generator=generator, device=device, dtype=dtype)


@torch.no_grad()
def pc_sample(sde: SDE, score_fn: ScoreFn, shape: tuple[int, ...], *, predictor: str = "reverse_diffusion",
              corrector: str = "langevin", snr: float = 0.16, n_steps: int | None = None, corrector_steps: int = 1,
              denoise: bool = True, generator: torch.Generator | None = None, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32, x_init: torch.Tensor | None = None,
              record_every: int | None = None) -> SampleResult:
    """Predictor-corrector sampling (Song et al. 2021, Algorithm 1): from x(T) ~ p_T, for t_i = T ... eps on a
    uniform grid of ``n_steps`` (default ``sde.N``), ``corrector_steps`` corrector steps then one predictor step.
    ``predictor="none"`` gives corrector-only (annealed Langevin), ``corrector="none"`` predictor-only.
    With ``denoise`` the last step returns the noise-free mean (the paper's final denoising).
    Noise is drawn from ``generator`` in a fixed order: prior, then per step corrector noise(s), predictor noise."""
    _check(predictor, corrector)
    n_steps = n_steps or sde.N
    pred, corr = PREDICTORS[predictor], CORRECTORS[corrector]
    x = sde.prior_sample(shape, generator=generator, device=device, dtype=dtype) if x_init is None else x_init
    times = torch.linspace(sde.T, sde.eps, n_steps, device=device, dtype=dtype)
    dt = -(sde.T - sde.eps) / n_steps
    frames, frame_times = [x], [sde.T]
    x_mean = x
    for i in range(n_steps):
        t = times[i].expand(shape[0])
        if corr is not None:
            for _ in range(corrector_steps):
                x, x_mean = corr(sde, score_fn, x, t, dt, snr, _draw(shape, generator, device, dtype))
        if pred is not None:
            x, x_mean = pred(sde, score_fn, x, t, dt, _draw(shape, generator, device, dtype))
        if record_every and ((i + 1) % record_every == 0 or i == n_steps - 1):
            frames.append(x_mean if (denoise and i == n_steps - 1) else x)
            frame_times.append(float(times[i]))
    nfe = n_steps * ((pred is not None) + (corrector_steps if corr is not None else 0))
    out = x_mean if denoise else x
    if record_every:
        return SampleResult(out, nfe, torch.stack(frames), torch.tensor(frame_times))
    return SampleResult(out, nfe)


@torch.no_grad()
def pc_sample_reference(sde: SDE, score_fn: ScoreFn, x_T: torch.Tensor, noises: list[torch.Tensor], *,
                        predictor: str = "reverse_diffusion", corrector: str = "langevin", snr: float = 0.16,
                        n_steps: int, denoise: bool = True) -> torch.Tensor:
    """The same sampler written out for the lecture: one sample at a time, one step at a time, with the noise
    given explicitly (``noises[k]`` is the k-th noise draw of `pc_sample`, shape like x_T). The corrector's
    batch-averaged norms are the one place where samples interact, so this loop computes them over the batch
    exactly as `pc_sample` does and then updates each sample on its own."""
    _check(predictor, corrector)
    B = x_T.shape[0]
    dt = -(sde.T - sde.eps) / n_steps
    x, x_mean = x_T.clone(), x_T.clone()
    k = 0
    for i in range(n_steps):
        t_val = sde.T - (sde.T - sde.eps) * i / (n_steps - 1) if n_steps > 1 else sde.T
        t = torch.full((B,), t_val, dtype=x.dtype)
        if corrector == "langevin":
            z = noises[k]; k += 1
            s = score_fn(x, t)
            grad_norm = torch.stack([s[b].norm() for b in range(B)]).mean()
            noise_norm = torch.stack([z[b].norm() for b in range(B)]).mean()
            for b in range(B):
                a = 1.0
                if isinstance(sde, VPSDE) and not isinstance(sde, SubVPSDE):
                    a = 1.0 - float(sde.discrete_beta(torch.tensor([t_val], dtype=x.dtype), abs(dt)))
                eps = 2 * a * (snr * noise_norm / grad_norm) ** 2
                x_mean[b] = x[b] + eps * s[b]
                x[b] = x_mean[b] + (2 * eps) ** 0.5 * z[b]
        if predictor != "none":
            z = noises[k]; k += 1
            for b in range(B):
                xb, tb = x[b:b + 1], t[b:b + 1]
                if predictor == "euler_maruyama":
                    g = float(sde.diffusion(tb))
                    drift = sde.drift(xb, tb) - g ** 2 * score_fn(xb, tb)
                    x_mean[b] = (xb + drift * dt)[0]
                    x[b] = x_mean[b] + g * abs(dt) ** 0.5 * z[b]
                else:
                    f, G = sde.discretize(xb, tb, abs(dt))
                    G = float(G)
                    x_mean[b] = (xb - f + G ** 2 * score_fn(xb, tb))[0]
                    x[b] = x_mean[b] + G * z[b]
    return x_mean if denoise else x


@torch.no_grad()
def ode_sample(sde: SDE, score_fn: ScoreFn, shape: tuple[int, ...] | None = None, *, x_T: torch.Tensor | None = None,
               rtol: float = 1e-5, atol: float = 1e-5, generator: torch.Generator | None = None,
               device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
               record_times: torch.Tensor | None = None) -> SampleResult:
    """Sample by integrating the probability-flow ODE (eq. 13) from T to eps with adaptive Dormand-Prince RK45
    (the paper uses scipy's RK45 with rtol = atol = 1e-5). Deterministic given x(T): the same latent always decodes
    to the same sample (the connection to DDIM). ``record_times`` (decreasing, within [eps, T]) records frames."""
    if x_T is None:
        if shape is None:
            raise DlcourseError("ode_sample needs a shape or a starting x_T")
        x_T = sde.prior_sample(shape, generator=generator, device=device, dtype=dtype)
    drift = sde.reverse(score_fn).ode_drift

    def f(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return drift(x, t.expand(x.shape[0]))

    ts = torch.tensor([sde.T, sde.eps], dtype=x_T.dtype, device=x_T.device) if record_times is None \
        else torch.cat([torch.tensor([sde.T], dtype=x_T.dtype, device=x_T.device), record_times.to(x_T)])
    sol = odeint_dopri5(f, x_T, ts, rtol=rtol, atol=atol)
    frames = sol.ys if record_times is not None else None
    return SampleResult(sol.ys[-1], sol.nfe, frames, ts if record_times is not None else None)
