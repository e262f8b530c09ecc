"""Training losses and likelihood bounds of the text models: MDLM's NELBO, SEDD's score entropy, AR cross-entropy.

All losses are in nats; `bits_per_char` converts. A model of the diffusion families maps noisy tokens x_t (B, L)
and the total noise σ̄ (B,) to one output per real token (B, L, N): logits of x_0 for MDLM, log concrete scores for
SEDD. Papers:

- MDLM: Sahoo et al. 2024, "Simple and Effective Masked Diffusion Language Models" (NeurIPS).
- SEDD: Lou, Meng & Ermon 2024, "Discrete Diffusion Modeling by Estimating the Ratios of the Data Distribution"
  (ICML), arXiv:2310.16834v3.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..utils import unsqueeze_as
from .graphs import Graph
from .schedules import Schedule

__all__ = [
    "bits_per_char", "sample_times",
    "subs_log_probs", "mdlm_weight", "mdlm_nelbo_integrand", "mdlm_discrete_term", "mdlm_nelbo_estimate",
    "mdlm_loss",
    "score_entropy", "implicit_score_entropy", "sedd_log_score", "denoising_score_entropy",
    "sedd_nelbo_estimate", "sedd_loss",
    "ar_log_probs", "ar_loss",
]


def _full(x: torch.Tensor) -> torch.Tensor:
    """float32 for half-precision network outputs (bf16 autocast); float64 stays float64 (exact tests)."""
    return x if x.dtype == torch.float64 else x.float()


def bits_per_char(nats: torch.Tensor | float, length: int = 1) -> torch.Tensor | float:
    """Nats per sequence of ``length`` characters -> bits per character."""
    return nats / (length * math.log(2.0))


def sample_times(batch: int, device: torch.device | str, t_eps: float = 1e-5, low_discrepancy: bool = True,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """t (B,) in [t_eps, 1): evenly spread with one random offset (the low-discrepancy sampler of Kingma et al. 2021,
    "Variational Diffusion Models", Appendix I.1, used by MDLM) or i.i.d. uniform. The same bound, lower variance."""
    u = torch.rand((1,) if low_discrepancy else (batch,), generator=generator, device=device)
    if low_discrepancy:
        u = (u + torch.arange(batch, device=device) / batch) % 1.0  # (B,)
    return t_eps + (1.0 - t_eps) * u


# ----------------------------------------------------------------------------------------------------------------
# MDLM
# ----------------------------------------------------------------------------------------------------------------


def subs_log_probs(logits: torch.Tensor, x_t: torch.Tensor, mask_id: int) -> torch.Tensor:
    """log x_θ(z_t) (B, L, N) in MDLM's SUBS parameterisation (Sahoo et al. 2024, Section 3.2.3): zero probability
    on the mask ("zero masking probabilities": the network only has N outputs) and "carry-over unmasking": an
    unmasked position puts all its mass on its own token."""
    log_p = torch.log_softmax(_full(logits), dim=-1)  # (B, L, N)
    unmasked = (x_t != mask_id).unsqueeze(-1)  # (B, L, 1)
    keep = F.one_hot(x_t.clamp(max=log_p.shape[-1] - 1), log_p.shape[-1]).bool()  # (B, L, N)
    carried = torch.where(keep, torch.zeros_like(log_p), torch.full_like(log_p, -math.inf))
    return torch.where(unmasked, carried, log_p)


def mdlm_weight(sigma: torch.Tensor, sigma_bar: torch.Tensor) -> torch.Tensor:
    """-α'_t / (1 - α_t) with α_t = e^{-σ̄(t)}: σ(t) / (e^{σ̄(t)} - 1), the weight of MDLM's continuous-time NELBO
    (Sahoo et al. 2024, eq. (10)); 1/t for the log-linear schedule."""
    return sigma / torch.expm1(sigma_bar)


def mdlm_nelbo_integrand(log_probs: torch.Tensor, x0: torch.Tensor, x_t: torch.Tensor, sigma: torch.Tensor,
                         sigma_bar: torch.Tensor, mask_id: int) -> torch.Tensor:
    """The integrand of MDLM's continuous-time NELBO at time t for each sequence (B,):

        -α'_t / (1 - α_t) Σ_{ℓ : z_t^ℓ = m} -log ⟨x_θ^ℓ(z_t), x^ℓ⟩

    (Sahoo et al. 2024, eq. (10), summed over positions as in eq. (11)). Its integral over t ∈ [0, 1], in expectation
    over z_t ~ q(z_t | x), bounds -log p_θ(x). log_probs (B, L, N), x0 / x_t (B, L), σ / σ̄ (B,).
    """
    masked = x_t == mask_id  # (B, L)
    nll = -log_probs.gather(-1, x0.unsqueeze(-1)).squeeze(-1)  # (B, L)
    nll = torch.where(masked, nll, torch.zeros_like(nll))
    return mdlm_weight(sigma, sigma_bar) * nll.sum(-1)


def mdlm_discrete_term(log_probs: torch.Tensor, x0: torch.Tensor, x_t: torch.Tensor, alpha_s: torch.Tensor,
                       alpha_t: torch.Tensor, mask_id: int) -> torch.Tensor:
    """One term of MDLM's discrete-time NELBO, KL(q(z_s | z_t, x) ‖ p_θ(z_s | z_t)) for s < t (B,):

        (α_s - α_t) / (1 - α_t) Σ_{ℓ : z_t^ℓ = m} -log ⟨x_θ^ℓ(z_t), x^ℓ⟩

    (Sahoo et al. 2024, Section 3.2.3, the diffusion loss with the SUBS posterior of eq. (7)). Summed over T steps
    it is the T-step bound; as T → ∞ it tends to `mdlm_nelbo_integrand`'s integral from above.
    """
    masked = x_t == mask_id
    nll = -log_probs.gather(-1, x0.unsqueeze(-1)).squeeze(-1)
    nll = torch.where(masked, nll, torch.zeros_like(nll))
    return (alpha_s - alpha_t) / (1.0 - alpha_t) * nll.sum(-1)


def mdlm_nelbo_estimate(model, x0: torch.Tensor, t: torch.Tensor, schedule: Schedule, graph: Graph,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """One-sample estimate (B,) of the integrand of the MDLM NELBO at times t (B,): mask x0 with probability 1 - α_t,
    run ``model(x_t, σ̄) -> logits (B, L, N)``, apply `mdlm_nelbo_integrand`. Its mean over t ~ U[0, 1] is the bound."""
    sigma, sigma_bar = schedule(t)
    x_t = graph.sample_transition(x0, sigma_bar, generator)  # (B, L)
    log_probs = subs_log_probs(model(x_t, sigma_bar), x_t, graph.mask_id)  # (B, L, N)
    return mdlm_nelbo_integrand(log_probs, x0, x_t, sigma, sigma_bar, graph.mask_id)


def mdlm_loss(model, x0: torch.Tensor, schedule: Schedule, graph: Graph, t_eps: float = 1e-5,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The MDLM training loss: `mdlm_nelbo_estimate` at low-discrepancy times, per token (nats), and metrics.

    The prior term (e^{-σ̄(1)} log N per token, 0.003 nats for ε = 1e-3) is left to the evaluation bound.
    """
    t = sample_times(x0.shape[0], x0.device, t_eps, generator=generator)
    loss = mdlm_nelbo_estimate(model, x0, t, schedule, graph, generator).mean() / x0.shape[1]
    return loss, {"bpc": bits_per_char(loss.detach())}


# ----------------------------------------------------------------------------------------------------------------
# SEDD
# ----------------------------------------------------------------------------------------------------------------


def _k(a: torch.Tensor) -> torch.Tensor:
    """K(a) = a (log a - 1), with K(0) = 0: the constant that makes score entropy non-negative (SEDD Def. 3.1)."""
    return torch.xlogy(a, a) - a


def score_entropy(score: torch.Tensor, ratio: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Score entropy at one x: Σ_{y≠x} w_xy (s_θ(x)_y - (p(y)/p(x)) log s_θ(x)_y + K(p(y)/p(x))).

    Lou et al. 2024, Definition 3.1 (the summand of L_SE). Each term is ≥ 0 with equality iff s = p(y)/p(x) (the
    function s ↦ s - r log s has its minimum r - r log r at s = r). Inputs (..., S) with ``weight`` zero at y = x;
    returns (...).
    """
    log_s = torch.log(score)
    terms = score - torch.where(ratio > 0, ratio * log_s, torch.zeros_like(log_s)) + _k(ratio)
    return torch.where(weight > 0, weight * terms, torch.zeros_like(terms)).sum(-1)


def implicit_score_entropy(score: torch.Tensor, p: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Implicit score entropy on a small state space given as dense matrices (a scalar):

        L_ISE = E_{x~p} Σ_{y≠x} w_xy s_θ(x)_y - w_yx log s_θ(y)_x

    (Lou et al. 2024, Proposition 3.3); it equals L_SE minus the θ-free constant E_x Σ_y w_xy K(p(y)/p(x)).
    ``score[x, y]`` = s_θ(x)_y, ``p`` (S,), ``weight[x, y]`` = w_xy with a zero diagonal.
    """
    off = 1.0 - torch.eye(len(p), dtype=score.dtype, device=score.device)
    first = (weight * score * off).sum(-1)  # (S,)
    second = (weight.T * torch.log(score.T) * off).sum(-1)  # Σ_y w_yx log s(y)_x, (S,)
    return (p * (first - second)).sum()


def sedd_log_score(graph: Graph, output: torch.Tensor, x_t: torch.Tensor, sigma_bar: torch.Tensor) -> torch.Tensor:
    """log s_θ(x_t) (B, L, S) from the network's N outputs per position, with log s = 0 at y = x_t.

    Absorbing: log s_y = output_y - log(e^{σ̄} - 1), the scaling SEDD uses because the true ratio at a masked
    position is p_0(y | unmasked) / (e^{σ̄} - 1) (their Section 5.1 / Appendix C.2 parameterisation); the mask entry
    is 0. Uniform: the output itself.
    """
    out = _full(output)
    if graph.mask_id is not None:
        out = out - unsqueeze_as(torch.log(torch.expm1(sigma_bar)), out)
        out = torch.cat([out, torch.zeros_like(out[..., :1])], dim=-1)  # (B, L, N + 1)
    return out.scatter(-1, x_t.unsqueeze(-1), 0.0)


def denoising_score_entropy(graph: Graph, log_score: torch.Tensor, x_t: torch.Tensor, x0: torch.Tensor,
                            sigma_bar: torch.Tensor) -> torch.Tensor:
    """Denoising score entropy per position (B, L), with the graph's rates as weights:

        Σ_{y≠x_t} Q(x_t, y) (s_θ(x_t)_y - (p_{t|0}(y|x_0)/p_{t|0}(x_t|x_0)) log s_θ(x_t)_y + K(same ratio))

    Lou et al. 2024, Theorem 3.4 (denoising score entropy) with w_{x_t y} = Q(x_t, y) as in their likelihood bound,
    Theorem 3.6 (L_DWDSE, whose integrand is σ(t) times this sum). Equals `score_entropy` against the true marginal
    ratios up to a constant independent of θ, in expectation over x_0 and x_t.
    """
    trans = graph.transition(x0, sigma_bar).to(log_score.dtype)  # (B, L, S) = p_{t|0}(· | x0)
    ratio = trans / trans.gather(-1, x_t.unsqueeze(-1))  # (B, L, S)
    weight = graph.rate_into(x_t, log_score.dtype)  # (B, L, S), zero at y = x_t
    log_score = torch.where(weight > 0, log_score, torch.zeros_like(log_score))  # no inf * 0 in the backward pass
    terms = log_score.exp() - torch.where(ratio > 0, ratio * log_score, torch.zeros_like(log_score)) + _k(ratio)
    return torch.where(weight > 0, weight * terms, torch.zeros_like(terms)).sum(-1)


def sedd_nelbo_estimate(model, x0: torch.Tensor, t: torch.Tensor, schedule: Schedule, graph: Graph,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """One-sample estimate (B,) of the integrand of SEDD's bound at times t (B,): σ(t) Σ_ℓ DSE_ℓ with x_t ~ p_{t|0}
    (Lou et al. 2024, Theorem 3.6, L_DWDSE). ``model(x_t, σ̄)`` returns N outputs per position."""
    sigma, sigma_bar = schedule(t)
    x_t = graph.sample_transition(x0, sigma_bar, generator)
    log_score = sedd_log_score(graph, model(x_t, sigma_bar), x_t, sigma_bar)  # (B, L, S)
    return sigma * denoising_score_entropy(graph, log_score, x_t, x0, sigma_bar).sum(-1)


def sedd_loss(model, x0: torch.Tensor, schedule: Schedule, graph: Graph, t_eps: float = 1e-5,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The SEDD training loss: `sedd_nelbo_estimate` at low-discrepancy times, per token (nats), and metrics."""
    t = sample_times(x0.shape[0], x0.device, t_eps, generator=generator)
    loss = sedd_nelbo_estimate(model, x0, t, schedule, graph, generator).mean() / x0.shape[1]
    return loss, {"bpc": bits_per_char(loss.detach())}


# ----------------------------------------------------------------------------------------------------------------
# autoregressive baseline
# ----------------------------------------------------------------------------------------------------------------


def ar_log_probs(model, x: torch.Tensor, bos_id: int) -> torch.Tensor:
    """log p_θ(x_ℓ | x_<ℓ) (B, L) of a causal model fed [BOS, x_1 .. x_{L-1}]: the chain rule, exactly."""
    inp = torch.cat([torch.full_like(x[:, :1], bos_id), x[:, :-1]], dim=1)  # (B, L)
    log_p = torch.log_softmax(_full(model(inp)), dim=-1)  # (B, L, N)
    return log_p.gather(-1, x.unsqueeze(-1)).squeeze(-1)


def ar_loss(model, x: torch.Tensor, bos_id: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Next-character cross-entropy per token (nats): exactly -log p_θ(x) / L."""
    loss = -ar_log_probs(model, x, bos_id).mean()
    return loss, {"bpc": bits_per_char(loss.detach())}
