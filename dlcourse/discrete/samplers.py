"""Samplers of the text models: small pure step functions and the loops that call them.

- MDLM ancestral sampling (Sahoo et al. 2024, Section 3.3 / Algorithm 2): z_s ~ q(z_s | z_t, x = x_θ(z_t)), with the
  cache of unchanged steps (their Section 3.3 "efficient sampling"): when a sample did not change in a step and the
  network ignores time, its output is reused instead of recomputed, so a 1000-step sampler evaluates each sample
  at most L + 1 times.
- Confidence decoding (Fast-dLLM, Wu et al. 2025, Section 3.3; LLaDA's low-confidence remasking, Nie et al. 2025,
  Appendix B): at each step unmask the masked positions whose predictive distribution is most confident, a fixed
  number per step or all above a threshold, instead of at the random times the ancestral sampler draws.
- SEDD Euler (per-token τ-leaping with the reverse rate) and Tweedie τ-leaping (Lou et al. 2024, Section 4.1,
  Theorem 4.2), for either graph.
- The autoregressive baseline, with and without a KV cache (the same samples from the same generator).

Each loop takes any number of steps, can hold fixed positions (a prefix, a suffix, arbitrary characters:
`make_condition`), and can record the trajectory of states for the unmasking widget.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..data.text import MASK_ID, encode
from ..errors import ConfigError
from ..utils import unsqueeze_as
from .graphs import Graph
from .losses import sedd_log_score, subs_log_probs
from .schedules import Schedule

__all__ = ["Samples", "Condition", "make_condition", "apply_condition", "sample_categorical", "mdlm_step",
           "mdlm_sample", "confidence_step", "confidence_sample", "euler_step", "tweedie_step", "sedd_sample",
           "ar_step", "ar_sample"]


@dataclass
class Samples:
    tokens: torch.Tensor                        #: the samples, token ids (B, L)
    nfe: int                                    #: network evaluations used
    trajectory: list[torch.Tensor] = field(default_factory=list)  #: states (B, L) on the CPU, first = the start


@dataclass
class Condition:
    """Fixed characters: ``known`` (B, L) marks the positions whose ids ``given`` (B, L) must appear in every sample."""

    given: torch.Tensor
    known: torch.Tensor


def _ids(text_or_ids) -> torch.Tensor:
    if isinstance(text_or_ids, str):
        return encode(text_or_ids, return_tensor=True)
    return torch.as_tensor(text_or_ids, dtype=torch.long)


def make_condition(length: int, prefix=None, suffix=None, positions: dict[int, object] | None = None,
                   batch: int = 1, device: torch.device | str = "cpu") -> Condition:
    """Condition on a ``prefix`` and/or ``suffix`` (strings or id sequences) and/or ``positions`` {index: char or id}.

    >>> c = make_condition(8, prefix="the", suffix="s")
    >>> c.known[0].tolist()
    [True, True, True, False, False, False, False, True]
    """
    given = torch.full((length,), MASK_ID, dtype=torch.long)
    known = torch.zeros(length, dtype=torch.bool)
    if prefix is not None and len(prefix):
        p = _ids(prefix)
        if len(p) > length:
            raise ConfigError(f"prefix of {len(p)} characters does not fit in {length}")
        given[: len(p)], known[: len(p)] = p, True
    if suffix is not None and len(suffix):
        s = _ids(suffix)
        if len(s) > length:
            raise ConfigError(f"suffix of {len(s)} characters does not fit in {length}")
        given[length - len(s):], known[length - len(s):] = s, True
    for pos, value in (positions or {}).items():
        if not -length <= pos < length:
            raise ConfigError(f"position {pos} is outside a sequence of length {length}")
        given[pos], known[pos] = _ids(value).reshape(-1)[0], True
    return Condition(given.expand(batch, length).to(device), known.expand(batch, length).to(device))


def apply_condition(x: torch.Tensor, condition: Condition | None) -> torch.Tensor:
    """x with the condition's characters written in (B, L)."""
    return x if condition is None else torch.where(condition.known, condition.given, x)


def sample_categorical(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw per row of unnormalised, non-negative probs (..., S) -> (...), by inverting the CDF in float64 (no
    Gumbel truncation, whose float32 rounding lowers the effective temperature; Zheng et al. 2024, Section 4)."""
    cdf = probs.double().clamp_min(0).cumsum(-1)  # (..., S)
    u = torch.rand(probs.shape[:-1], generator=generator, device=probs.device, dtype=torch.float64)
    idx = (cdf < (u * cdf[..., -1]).unsqueeze(-1)).sum(-1)
    return idx.clamp(max=probs.shape[-1] - 1)


def _record(traj: list[torch.Tensor] | None, x: torch.Tensor) -> None:
    if traj is not None:
        traj.append(x.detach().cpu().clone())


# ----------------------------------------------------------------------------------------------------------------
# MDLM
# ----------------------------------------------------------------------------------------------------------------


def mdlm_step(x_t: torch.Tensor, log_probs: torch.Tensor, alpha_s: torch.Tensor, alpha_t: torch.Tensor,
              mask_id: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """One ancestral step z_t -> z_s (s < t) with the SUBS posterior (Sahoo et al. 2024, eq. (7) with x = x_θ):

        masked z_t:   z_s = x^ℓ w.p. (α_s - α_t)/(1 - α_t) · x_θ^ℓ, still masked w.p. (1 - α_s)/(1 - α_t);
        unmasked z_t: z_s = z_t.

    x_t (B, L), log_probs (B, L, N), α_s / α_t (B,).
    """
    probs = log_probs.exp() * unsqueeze_as((alpha_s - alpha_t) / (1 - alpha_t), log_probs)  # (B, L, N)
    stay = unsqueeze_as((1 - alpha_s) / (1 - alpha_t), log_probs).expand(*log_probs.shape[:-1], 1)  # (B, L, 1)
    draw = sample_categorical(torch.cat([probs, stay], dim=-1), generator)  # (B, L), N means "stay masked"
    draw = torch.where(draw == probs.shape[-1], torch.full_like(draw, mask_id), draw)
    return torch.where(x_t == mask_id, draw, x_t)


@torch.no_grad()
def mdlm_sample(model, schedule: Schedule, graph: Graph, num: int, length: int, steps: int,
                condition: Condition | None = None, generator: torch.Generator | None = None,
                device: torch.device | str | None = None, cache: bool = True, record: bool = False) -> Samples:
    """MDLM ancestral sampling on the uniform grid t_k = k / steps, from all-mask (t = 1) to clean (t = 0).

    ``cache``: reuse each sample's network output while its state is unchanged (only the samples that changed
    in the last step are re-evaluated); exact for a network without time conditioning (MDLM's choice), and
    ignored for a time-conditioned one. ``nfe`` counts network calls (a call may cover only some samples).
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    x = apply_condition(graph.sample_limit((num, length), device), condition)
    traj: list[torch.Tensor] | None = [] if record else None
    _record(traj, x)
    reuse = cache and not getattr(model, "time_conditioning", True)
    log_probs, nfe = None, 0
    stale = torch.ones(num, dtype=torch.bool, device=device)  # (B,) samples whose state moved since their output
    for k in range(steps, 0, -1):
        t = torch.full((num,), k / steps, device=device)
        s = torch.full((num,), (k - 1) / steps, device=device)
        sigma_bar = schedule.sigma_bar(t)
        if log_probs is None or not reuse:
            if getattr(model, "time_conditioning", True) and not torch.isfinite(sigma_bar).all():
                raise ConfigError("a time-conditioned MDLM needs a finite total noise at t = 1: use eps > 0")
            log_probs = subs_log_probs(model(x, sigma_bar), x, graph.mask_id)  # (B, L, N)
            nfe += 1
        elif stale.any():  # the cache, per sample: re-run the network only on the samples that changed
            rows = stale.nonzero().squeeze(1)  # (b,)
            log_probs[rows] = subs_log_probs(model(x[rows], sigma_bar[rows]), x[rows], graph.mask_id)
            nfe += 1
        x_new = mdlm_step(x, log_probs, schedule.alpha(s), schedule.alpha(t), graph.mask_id, generator)
        stale = (x_new != x).any(-1)  # (B,)
        x = x_new
        _record(traj, x)
    return Samples(x, nfe, traj or [])


def confidence_step(x_t: torch.Tensor, log_probs: torch.Tensor, mask_id: int, n_unmask: torch.Tensor | None = None,
                    threshold: float | None = None, generator: torch.Generator | None = None,
                    greedy: bool = False) -> torch.Tensor:
    """Unmask the most confident masked positions of each sample: the ``n_unmask`` (B,) of them with the highest
    confidence c = max_v x_θ(v) (by count), or every one with c ≥ ``threshold`` and at least the most confident
    (by threshold, Fast-dLLM's rule). Each chosen position takes a value drawn from x_θ (``greedy``: its argmax).

    The positions are chosen by a function of the predictive distribution only, not of the drawn values, so one
    position per step samples an exact chain-rule factorisation (in a data-dependent order) when x_θ is exact.
    x_t (B, L), log_probs (B, L, N) -> (B, L).
    """
    probs = log_probs.exp()  # (B, L, N)
    masked = x_t == mask_id  # (B, L)
    conf = probs.max(-1).values.masked_fill(~masked, -1.0)  # (B, L); unmasked positions are never chosen
    rank = conf.argsort(dim=-1, descending=True).argsort(dim=-1)  # (B, L): 0 = the most confident
    if threshold is not None:
        chosen = masked & ((conf >= threshold) | (rank == 0))
    elif n_unmask is not None:
        chosen = masked & (rank < n_unmask.unsqueeze(-1))
    else:
        raise ConfigError("confidence_step needs n_unmask (by count) or threshold")
    values = probs.argmax(-1) if greedy else sample_categorical(probs, generator)  # (B, L)
    return torch.where(chosen, values, x_t)


@torch.no_grad()
def confidence_sample(model, schedule: Schedule, graph: Graph, num: int, length: int, steps: int | None = None,
                      threshold: float | None = None, condition: Condition | None = None,
                      generator: torch.Generator | None = None, device: torch.device | str | None = None,
                      greedy: bool = False, record: bool = False) -> Samples:
    """MDLM sampling by `confidence_step` from all-mask: ``steps`` steps unmasking ⌈masked / steps left⌉ positions
    each (by count; ``steps = length`` is one token per step), or, with ``threshold``, as many steps as it takes
    (at most one per position). One network evaluation per step; a time-conditioned network is given the σ̄ at
    which the current fraction of masks is expected, t = masked / L."""
    if (steps is None) == (threshold is None):
        raise ConfigError("confidence_sample takes steps (unmask by count) or threshold, not both")
    if steps is not None and steps < 1:
        raise ConfigError(f"steps must be at least 1, got {steps}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    x = apply_condition(graph.sample_limit((num, length), device), condition)
    traj: list[torch.Tensor] | None = [] if record else None
    _record(traj, x)
    nfe, k = 0, 0
    while (x == graph.mask_id).any():
        masked = (x == graph.mask_id).sum(-1)  # (B,)
        t = masked.float() / length
        sigma_bar = schedule.sigma_bar(t.clamp(max=1.0 - 1e-6))
        log_probs = subs_log_probs(model(x, sigma_bar), x, graph.mask_id)  # (B, L, N)
        nfe += 1
        n_unmask = None if steps is None else -(-masked // max(steps - k, 1))  # ceil: finish in `steps` steps
        x = apply_condition(confidence_step(x, log_probs, graph.mask_id, n_unmask, threshold, generator, greedy),
                            condition)
        k += 1
        _record(traj, x)
    return Samples(x, nfe, traj or [])


# ----------------------------------------------------------------------------------------------------------------
# SEDD
# ----------------------------------------------------------------------------------------------------------------


def _no_mask(graph: Graph, probs: torch.Tensor) -> torch.Tensor:
    """The last step must leave no mask behind: drop the mask state's probability (absorbing graph)."""
    if graph.mask_id is None:
        return probs
    probs = probs.clone()
    probs[..., graph.mask_id] = 0.0
    return probs


def euler_step(graph: Graph, x_t: torch.Tensor, score: torch.Tensor, sigma: torch.Tensor, dt: float,
               generator: torch.Generator | None = None, last: bool = False) -> torch.Tensor:
    """Euler (τ-leaping) step: every position jumps independently with p(y) = δ_{x_t}(y) + Δt Q̄_t(y, x_t)
    (Lou et al. 2024, Section 4.1, the per-token discretisation of the reverse CTMC). score (B, L, S), σ (B,)."""
    probs = torch.nn.functional.one_hot(x_t, graph.num_states).to(score) + dt * graph.reverse_rate(x_t, score, sigma)
    probs = _no_mask(graph, probs) if last else probs
    return sample_categorical(probs, generator)


def tweedie_step(graph: Graph, x_t: torch.Tensor, score: torch.Tensor, sigma_bar_t: torch.Tensor,
                 sigma_bar_s: torch.Tensor, generator: torch.Generator | None = None, last: bool = False) -> torch.Tensor:
    """Tweedie τ-leaping step (Lou et al. 2024, Theorem 4.2): per position,

        p(x_s = y | x_t) ∝ [exp(-(σ̄_t - σ̄_s) Q) s_θ(x_t)]_y · exp((σ̄_t - σ̄_s) Q)(x_t, y),

    the exact denoising step of one token when s_θ is the true ratio. score (B, L, S), σ̄ (B,)."""
    dsigma = sigma_bar_t - sigma_bar_s
    probs = graph.staggered_score(score, dsigma) * graph.transp_transition(x_t, dsigma)
    probs = _no_mask(graph, probs) if last else probs
    return sample_categorical(probs, generator)


@torch.no_grad()
def sedd_sample(model, schedule: Schedule, graph: Graph, num: int, length: int, steps: int,
                method: str = "tweedie", condition: Condition | None = None,
                generator: torch.Generator | None = None, device: torch.device | str | None = None,
                record: bool = False) -> Samples:
    """Reverse-diffuse from the base distribution on the grid t_k = k / steps; the last step (to t = 0, σ̄ = 0)
    removes what noise is left. ``method``: "tweedie" or "euler". One network evaluation per step."""
    if method not in ("tweedie", "euler"):
        raise ConfigError(f"unknown SEDD sampler {method!r}; choose tweedie or euler")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    x = apply_condition(graph.sample_limit((num, length), device, generator), condition)
    traj: list[torch.Tensor] | None = [] if record else None
    _record(traj, x)
    for k in range(steps, 0, -1):
        t = torch.full((num,), k / steps, device=device)
        s = torch.full((num,), (k - 1) / steps, device=device)
        sigma, sigma_bar_t = schedule(t)
        if k == steps and not torch.isfinite(sigma_bar_t).all():
            raise ConfigError("SEDD sampling needs a finite total noise at t = 1: use a log-linear eps > 0")
        sigma_bar_s = schedule.sigma_bar(s) if k > 1 else torch.zeros_like(sigma_bar_t)
        score = sedd_log_score(graph, model(x, sigma_bar_t), x, sigma_bar_t).exp()  # (B, L, S)
        if method == "tweedie":
            x = tweedie_step(graph, x, score, sigma_bar_t, sigma_bar_s, generator, last=k == 1)
        else:
            x = euler_step(graph, x, score, sigma, 1.0 / steps, generator, last=k == 1)
        x = apply_condition(x, condition)
        _record(traj, x)
    return Samples(x, steps, traj or [])


# ----------------------------------------------------------------------------------------------------------------
# autoregressive baseline
# ----------------------------------------------------------------------------------------------------------------


def ar_step(logits: torch.Tensor, generator: torch.Generator | None = None, temperature: float = 1.0) -> torch.Tensor:
    """Next characters (B,) from the last position's logits (B, N)."""
    return sample_categorical(torch.softmax(logits.double() / temperature, dim=-1), generator)


@torch.no_grad()
def ar_sample(model, num: int, length: int, prefix=None, generator: torch.Generator | None = None,
              device: torch.device | str | None = None, use_cache: bool = True, bos_id: int = MASK_ID,
              temperature: float = 1.0, record: bool = False) -> Samples:
    """Decode ``length`` characters left to right after an optional ``prefix`` (kept as the first characters).

    ``use_cache=False`` is the readable path: re-run the whole context for each character (O(L²) evaluations of a
    position); ``use_cache=True`` keeps every layer's keys and values (`KVCache`) and feeds one character per step.
    Both draw the same samples from the same generator.
    """
    from ..nn.transformer import KVCache

    device = torch.device(device) if device is not None else next(model.parameters()).device
    p = _ids(prefix if prefix is not None else []).to(device)
    if len(p) > length:
        raise ConfigError(f"a prefix of {len(p)} characters does not fit in {length}")
    x = torch.cat([torch.full((num, 1), bos_id, dtype=torch.long, device=device), p.expand(num, len(p))], dim=1)
    traj: list[torch.Tensor] | None = [] if record else None
    cache = KVCache(model.n_layers) if use_cache else None
    inp, nfe = x, 0
    while x.shape[1] < length + 1:
        logits = model(inp, cache=cache)[:, -1]  # (B, N)
        nfe += 1
        nxt = ar_step(logits, generator, temperature)  # (B,)
        x = torch.cat([x, nxt[:, None]], dim=1)
        inp = nxt[:, None] if use_cache else x
        if traj is not None:
            pad = torch.full((num, length + 1 - x.shape[1]), MASK_ID, dtype=torch.long, device=device)
            _record(traj, torch.cat([x[:, 1:], pad], dim=1))
    return Samples(x[:, 1: length + 1], nfe, traj or [])
