"""An adaptive Runge-Kutta solver in torch, so the probability-flow ODE runs where the model is.

Dormand & Prince (1980), "A family of embedded Runge-Kutta formulae", the RK5(4)7FM pair (the same pair as scipy's
RK45): 5th-order solution, embedded 4th-order error estimate, first-same-as-last, step-size control by the RMS of
the error scaled by ``atol + rtol * |y|`` (Hairer, Nørsett & Wanner, Solving ODEs I, II.4). The whole state stays on
its device; the only host transfer per step is the one scalar error norm that decides whether to accept it.
`tests/test_sde.py` checks it against scipy's solve_ivp and against closed-form solutions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import DlcourseError

__all__ = ["odeint_dopri5", "ODESolution"]

# Butcher tableau of Dormand-Prince 5(4).
_C = [0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0]
_A = [
    [],
    [1 / 5],
    [3 / 40, 9 / 40],
    [44 / 45, -56 / 15, 32 / 9],
    [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
    [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
    [35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84],
]
_B5 = [35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0]
_B4 = [5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40]
_E = [b5 - b4 for b5, b4 in zip(_B5, _B4)]


@dataclass
class ODESolution:
    ys: torch.Tensor   #: the state at each requested time (len(ts), *y0.shape)
    nfe: int           #: evaluations of f
    n_steps: int       #: accepted steps
    n_rejected: int    #: rejected steps


def _rms(x: torch.Tensor) -> float:
    return float(x.pow(2).mean().sqrt())


def odeint_dopri5(f: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], y0: torch.Tensor, ts: torch.Tensor, *,
                  rtol: float = 1e-5, atol: float = 1e-5, max_steps: int = 100_000, safety: float = 0.9
                  ) -> ODESolution:
    """Solve dy/dt = f(t, y) from ts[0] through ts[1], ts[2], ... (increasing or decreasing), returning y at each.

    ``f(t, y)`` gets t as a 0-d tensor on y's device. Raises `DlcourseError` if the step size collapses or
    ``max_steps`` is exceeded (a stiff or exploding field, e.g. an untrained score at small t)."""
    ts = torch.as_tensor(ts, dtype=y0.dtype, device=y0.device)
    if ts.dim() != 1 or ts.numel() < 2:
        raise DlcourseError(f"ts must list at least two times, got shape {tuple(ts.shape)}")
    nfe = 0

    def fun(t: float, y: torch.Tensor) -> torch.Tensor:
        nonlocal nfe
        nfe += 1
        return f(torch.tensor(t, dtype=y.dtype, device=y.device), y)

    times = [float(t) for t in ts]
    direction = math.copysign(1.0, times[-1] - times[0])
    y, t = y0, times[0]
    k1 = fun(t, y)
    # Initial step (Hairer et al. II.4): about 1% of the scale of y over the scale of its derivative.
    scale = atol + rtol * y.abs()
    d0, d1 = _rms(y / scale), _rms(k1 / scale)
    h = 0.01 * d0 / d1 if d0 > 1e-5 and d1 > 1e-5 else 1e-6
    h = min(h, abs(times[-1] - times[0]))
    out = [y0]
    n_steps = n_rejected = 0
    for t_end in times[1:]:
        while direction * (t_end - t) > 1e-12 * max(1.0, abs(t_end)):
            if n_steps + n_rejected >= max_steps:
                raise DlcourseError(f"ODE solver took more than {max_steps} steps (t = {t:.3g}): the field may be stiff "
                                    f"or exploding; loosen rtol/atol or check the score model")
            h_step = min(h, abs(t_end - t)) * direction
            ks = [k1]
            for i in range(1, 7):
                yi = y + h_step * sum(a * k for a, k in zip(_A[i], ks) if a != 0.0)
                ks.append(fun(t + _C[i] * h_step, yi))
            y_new = yi  # stage 7 is evaluated at the 5th-order solution (FSAL)
            err = h_step * sum(e * k for e, k in zip(_E, ks) if e != 0.0)
            err_norm = _rms(err / (atol + rtol * torch.maximum(y.abs(), y_new.abs())))
            if not math.isfinite(err_norm):
                raise DlcourseError(f"ODE solver met a non-finite value at t = {t:.3g}")
            if err_norm <= 1.0:
                t, y, k1 = t + h_step, y_new, ks[6]
                n_steps += 1
            else:
                n_rejected += 1
            factor = 10.0 if err_norm == 0 else min(10.0, max(0.2, safety * err_norm ** -0.2))
            clipped = abs(h_step) < h  # shortened to land on t_end: don't let that shrink the next step
            h = max(h, abs(h_step) * factor) if (clipped and err_norm <= 1.0) else abs(h_step) * factor
            if h < 1e-12:
                raise DlcourseError(f"ODE step size collapsed at t = {t:.3g}")
        out.append(y)
    return ODESolution(torch.stack(out), nfe, n_steps, n_rejected)
