"""Samplers for the reverse-time SDE and the probability-flow ODE (Song et al. 2021, Section 4 and Appendices E-G).

Each step is a small pure function of tensors: it takes the state ``x``, the network's output ``score`` at
``(x, t)``, the time ``t`` (B,), the positive step size ``dt`` (the step goes from t to t - dt) and the noise, and
returns the new state; predictors are ``(sde, x, score, t, dt, noise) -> x``, correctors take ``snr`` before the
noise. `pc_sample` is the loop that evaluates the score and strings the steps together (a step of your own, with
the same signature, plugs straight in); `pc_sample_reference` is the same loop written out sample by sample, as in
the lecture, which a test holds to the same answer for the same noise. `ode_sample` integrates the
probability-flow ODE with the adaptive Dormand-Prince solver of `dlcourse.sde.ode`, on the model's device.

Both samplers end, by default, with the final denoising step of NCSNv2 and score_sde: Tweedie's formula
E[x(0) | x(t)] = (x + std(t)² s(x, t)) / α(t) at the last time (one more score evaluation; ``denoise=False``
returns the last state as it is). Every sampler reports NFE, the number of score evaluations per sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import DlcourseError
from ..utils import unsqueeze_as
from .ode import odeint_dopri5
from .sdes import SDE, ScoreFn, SubVPSDE, VPSDE

__all__ = ["euler_maruyama_step", "reverse_diffusion_step", "ancestral_sampling_step", "probability_flow_step",
           "langevin_corrector_step", "tweedie_denoise", "pc_sample", "pc_sample_reference", "ode_sample",
           "SampleResult", "PREDICTORS", "CORRECTORS"]


@dataclass
class SampleResult:
    x: torch.Tensor                    #: final samples (B, ...)
    nfe: int                           #: score evaluations per sample
    frames: torch.Tensor | None = None  #: recorded states (F, B, ...) when asked, else None
    times: torch.Tensor | None = None   #: the time of each frame (F,)


# ---- predictors: (sde, x, score, t, dt, noise) -> x at t - dt ----

def euler_maruyama_step(sde: SDE, x: torch.Tensor, score: torch.Tensor, t: torch.Tensor, dt: float,
                        noise: torch.Tensor) -> torch.Tensor:
    """Euler-Maruyama on the reverse SDE (eq. 6) from t to t - dt: x ← x - [f - g² s] dt + g √dt z."""
    return x - sde.reverse_drift(x, t, score) * dt + unsqueeze_as(sde.diffusion(t), x) * dt ** 0.5 * noise


def reverse_diffusion_step(sde: SDE, x: torch.Tensor, score: torch.Tensor, t: torch.Tensor, dt: float,
                           noise: torch.Tensor) -> torch.Tensor:
    """Reverse-diffusion predictor (Song et al. 2021, eq. 47): x ← x - f_i + G_i² s + G_i z, with f_i, G_i the
    forward discretisation of `SDE.discretize` over a step of dt."""
    rev_f, G = sde.reverse_discretize(x, t, score, dt)
    return x - rev_f + unsqueeze_as(G, x) * noise


def ancestral_sampling_step(sde: SDE, x: torch.Tensor, score: torch.Tensor, t: torch.Tensor, dt: float,
                            noise: torch.Tensor) -> torch.Tensor:
    """Ancestral sampling of the discrete model behind the SDE (Song et al. 2021, Appendix F): DDPM's step for VP,
    SMLD's for VE (`SDE.ancestral`); the reverse-diffusion predictor's outputs match it as dt -> 0."""
    return sde.ancestral(x, t, score, dt, noise)


def probability_flow_step(sde: SDE, x: torch.Tensor, score: torch.Tensor, t: torch.Tensor, dt: float,
                          noise: torch.Tensor) -> torch.Tensor:
    """Probability-flow predictor (score_sde's reverse-diffusion predictor of the ODE): x ← x - f_i + ½ G_i² s,
    deterministic (``noise`` is ignored)."""
    f, G = sde.discretize(x, t, dt)
    return x - f + 0.5 * unsqueeze_as(G, x) ** 2 * score


# ---- corrector: (sde, x, score, t, dt, snr, noise) -> x at the same t ----

def langevin_corrector_step(sde: SDE, x: torch.Tensor, score: torch.Tensor, t: torch.Tensor, dt: float, snr: float,
                            noise: torch.Tensor) -> torch.Tensor:
    """One Langevin corrector step with the signal-to-noise rule (Song et al. 2021, Algorithm 4 (VE) / 5 (VP)):
    ε = 2 α (r ‖z‖ / ‖s‖)², x ← x + ε s + √(2ε) z, where r = ``snr``, α = 1 - β_i for VP and 1 otherwise, and the
    norms are averaged over the batch as in the paper's algorithms (β_i over a step of dt)."""
    dims = list(range(1, x.dim()))
    grad_norm = score.pow(2).sum(dims).sqrt().mean()
    noise_norm = noise.pow(2).sum(dims).sqrt().mean()
    alpha = sde.corrector_alpha(t, dt) if isinstance(sde, VPSDE) and not isinstance(sde, SubVPSDE) \
        else torch.ones_like(t)
    step = 2 * alpha * (snr * noise_norm / grad_norm) ** 2  # (B,)
    return x + unsqueeze_as(step, x) * score + unsqueeze_as(torch.sqrt(2 * step), x) * noise


def tweedie_denoise(sde: SDE, x: torch.Tensor, score: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Tweedie's formula (Efron 2011) for the Gaussian kernel x(t) = α x(0) + std z:
    E[x(0) | x(t)] = (x + std(t)² s(x, t)) / α(t); for VE (α = 1) it is NCSNv2's final step x + σ² s."""
    alpha, std = sde.marginal_coeffs(t)
    return (x + unsqueeze_as(std ** 2, x) * score) / unsqueeze_as(alpha, x)


PREDICTORS: dict[str, Callable | None] = {
    "euler_maruyama": euler_maruyama_step, "reverse_diffusion": reverse_diffusion_step,
    "ancestral": ancestral_sampling_step, "probability_flow": probability_flow_step, "none": None}
CORRECTORS: dict[str, Callable | None] = {"langevin": langevin_corrector_step, "none": None}


def _resolve(predictor, corrector) -> tuple[Callable | None, Callable | None]:
    def pick(value, table, what):
        if callable(value) or value is None:
            return value
        if value not in table:
            raise DlcourseError(f"unknown {what} {value!r}; choose one of: {', '.join(table)} (or pass a step function)")
        return table[value]

    pred, corr = pick(predictor, PREDICTORS, "predictor"), pick(corrector, CORRECTORS, "corrector")
    if pred is None and corr is None:
        raise DlcourseError("predictor and corrector are both 'none': nothing would move the samples")
    return pred, corr


def _draw(shape, generator, device, dtype):
    return torch.randn(shape, generator=generator, device=device, dtype=dtype)


def time_grid(sde: SDE, n_steps: int, device=None, dtype=torch.float32) -> tuple[torch.Tensor, float]:
    """The sampler's times t_0 = T > ... > t_{n-1} = eps (n_steps,) and its step size dt = (T - eps) / n_steps
    (score_sde's grid)."""
    return torch.linspace(sde.T, sde.eps, n_steps, device=device, dtype=dtype), (sde.T - sde.eps) / n_steps


@torch.no_grad()
def pc_sample(sde: SDE, score_fn: ScoreFn, shape: tuple[int, ...], *, predictor: str | Callable = "reverse_diffusion",
              corrector: str | Callable = "langevin", snr: float = 0.16, n_steps: int | None = None,
              corrector_steps: int = 1, denoise: bool = True, generator: torch.Generator | None = None,
              device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
              x_init: torch.Tensor | None = None, record_every: int | None = None) -> SampleResult:
    """Predictor-corrector sampling (Song et al. 2021, Algorithm 1): from x(T) ~ p_T, at each time of `time_grid`
    (``n_steps``, default ``sde.N``), ``corrector_steps`` corrector steps then one predictor step, each after its own
    score evaluation; ``predictor="none"`` gives corrector-only (annealed Langevin), ``corrector="none"``
    predictor-only. A name of `PREDICTORS` / `CORRECTORS` or a step function of the same signature.
    ``denoise``: finish with `tweedie_denoise` at t = eps (one more evaluation).
    Noise is drawn from ``generator`` in a fixed order: prior, then per step corrector noise(s), predictor noise."""
    pred, corr = _resolve(predictor, corrector)
    n_steps = n_steps or sde.N
    x = sde.prior_sample(shape, generator=generator, device=device, dtype=dtype) if x_init is None else x_init
    times, dt = time_grid(sde, n_steps, device, dtype)
    frames, frame_times = [x], [sde.T]
    for i in range(n_steps):
        t = times[i].expand(shape[0])
        if corr is not None:
            for _ in range(corrector_steps):
                x = corr(sde, x, score_fn(x, t), t, dt, snr, _draw(shape, generator, device, dtype))
        if pred is not None:
            x = pred(sde, x, score_fn(x, t), t, dt, _draw(shape, generator, device, dtype))
        if record_every and ((i + 1) % record_every == 0 or i == n_steps - 1):
            frames.append(x)
            frame_times.append(max(float(times[i]) - dt, 0.0))
    nfe = n_steps * ((pred is not None) + (corrector_steps if corr is not None else 0))
    if denoise:
        t = times[-1].expand(shape[0])
        x = tweedie_denoise(sde, x, score_fn(x, t), t)
        nfe += 1
        if record_every:
            frames.append(x)
            frame_times.append(0.0)
    if record_every:
        return SampleResult(x, nfe, torch.stack(frames), torch.tensor(frame_times))
    return SampleResult(x, nfe)


@torch.no_grad()
def pc_sample_reference(sde: SDE, score_fn: ScoreFn, x_T: torch.Tensor, noises: list[torch.Tensor], *,
                        predictor: str = "reverse_diffusion", corrector: str = "langevin", snr: float = 0.16,
                        n_steps: int, denoise: bool = True) -> torch.Tensor:
    """The same sampler written out for the lecture: one sample at a time, one step at a time, with the noise
    given explicitly (``noises[k]`` is the k-th noise draw of `pc_sample`, shape like x_T). The corrector's
    batch-averaged norms are the one place where samples interact, so this loop computes them over the batch
    exactly as `pc_sample` does and then updates each sample on its own."""
    if predictor not in ("reverse_diffusion", "euler_maruyama", "none") or corrector not in ("langevin", "none"):
        raise DlcourseError("the written-out loop knows the reverse-diffusion and Euler-Maruyama predictors and the "
                            "Langevin corrector")
    B = x_T.shape[0]
    dt = (sde.T - sde.eps) / n_steps
    x = x_T.clone()
    k = 0
    t_val = sde.T
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
                    a = 1.0 - float(sde.discrete_beta(torch.tensor([t_val], dtype=x.dtype), dt))
                eps = 2 * a * (snr * noise_norm / grad_norm) ** 2
                x[b] = x[b] + eps * s[b] + (2 * eps) ** 0.5 * z[b]
        if predictor != "none":
            z = noises[k]; k += 1
            for b in range(B):
                xb, tb = x[b:b + 1], t[b:b + 1]
                if predictor == "euler_maruyama":
                    g = float(sde.diffusion(tb))
                    drift = sde.drift(xb, tb) - g ** 2 * score_fn(xb, tb)
                    x[b] = (xb - drift * dt)[0] + g * dt ** 0.5 * z[b]
                else:
                    f, G = sde.discretize(xb, tb, dt)
                    G = float(G)
                    x[b] = (xb - f + G ** 2 * score_fn(xb, tb))[0] + G * z[b]
    if denoise:  # Tweedie at the last time, one sample at a time
        for b in range(B):
            tb = torch.full((1,), t_val, dtype=x.dtype)
            alpha, std = sde.marginal_coeffs(tb)
            x[b] = ((x[b:b + 1] + float(std) ** 2 * score_fn(x[b:b + 1], tb)) / float(alpha))[0]
    return x


@torch.no_grad()
def ode_sample(sde: SDE, score_fn: ScoreFn, shape: tuple[int, ...] | None = None, *, x_T: torch.Tensor | None = None,
               rtol: float = 1e-5, atol: float = 1e-5, denoise: bool = True, generator: torch.Generator | None = None,
               device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
               record_times: torch.Tensor | None = None) -> SampleResult:
    """Sample by integrating the probability-flow ODE (eq. 13) from T to eps with adaptive Dormand-Prince RK45
    (the paper uses scipy's RK45 with rtol = atol = 1e-5), then `tweedie_denoise` at eps if ``denoise``.
    Deterministic given x(T): the same latent always decodes to the same sample (the connection to DDIM).
    ``record_times`` (decreasing, within [eps, T]) records frames (the ODE's states, before denoising)."""
    if x_T is None:
        if shape is None:
            raise DlcourseError("ode_sample needs a shape or a starting x_T")
        x_T = sde.prior_sample(shape, generator=generator, device=device, dtype=dtype)

    def f(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        tb = t.expand(x.shape[0])
        return sde.ode_drift(x, tb, score_fn(x, tb))

    ts = torch.tensor([sde.T, sde.eps], dtype=x_T.dtype, device=x_T.device) if record_times is None \
        else torch.cat([torch.tensor([sde.T], dtype=x_T.dtype, device=x_T.device), record_times.to(x_T)])
    sol = odeint_dopri5(f, x_T, ts, rtol=rtol, atol=atol)
    x, nfe = sol.ys[-1], sol.nfe
    if denoise:
        t = torch.full((x.shape[0],), sde.eps, dtype=x.dtype, device=x.device)
        x, nfe = tweedie_denoise(sde, x, score_fn(x, t), t), nfe + 1
    frames = sol.ys if record_times is not None else None
    return SampleResult(x, nfe, frames, ts if record_times is not None else None)
