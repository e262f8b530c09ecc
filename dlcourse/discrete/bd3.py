"""Block diffusion (BD3-LM; Arriola et al. 2025, "Block Diffusion: Interpolating Between Autoregressive and
Diffusion Language Models", ICLR): autoregressive over blocks of b tokens, masked diffusion within a block.

The likelihood factorises over blocks, log p(x) = Σ_j log p(x^j | x^{<j}), and each block's term is bounded by
MDLM's NELBO conditioned on the clean blocks before it (their eq. (3)-(5)); block j gets its own time t_j. One
network evaluates every block's term at once (their vectorised training, Section 3.2): the input is the noised
sequence x_t followed by the clean x_0 (2L tokens, both with positions 0..L-1), under `block_attention_mask`:

    x_t query i -> x_t key j  iff  block(j) = block(i)     diffusion within the block (bidirectional)
    x_t query i -> x_0 key j  iff  block(j) < block(i)     the clean blocks before it
    x_0 query i -> x_0 key j  iff  block(j) ≤ block(i)     block-causal: what the sampler's KV cache holds
    x_0 query i -> x_t key j  never

b = 1 is an autoregressive model (a masked token at i reads x_{<i}), b = L is MDLM (no clean context).
`bd3_sample` generates block by block: the finished blocks sit in a `KVCache`; each denoising step of the next
block runs the network on its b tokens only, reading the cache without storing (``store=False``); the finished
block then enters the cache in one more call. The network must not be time-conditioned (MDLM's choice).
"""

from __future__ import annotations

import torch

from ..errors import ConfigError
from ..nn.transformer import KVCache
from .graphs import Graph
from .losses import bits_per_char, mdlm_weight, sample_times, subs_log_probs
from .samplers import Condition, Samples, _record, apply_condition, confidence_step, mdlm_step
from .schedules import Schedule

__all__ = ["block_attention_mask", "block_attention_mask_reference", "bd3_nelbo_estimate", "bd3_loss", "bd3_logits",
           "bd3_sample", "block_sample_exact"]


def _check(length: int, block: int) -> int:
    if block < 1 or length % block:
        raise ConfigError(f"block size {block} must divide the sequence length {length}")
    return length // block


def block_attention_mask(length: int, block: int, device: torch.device | str | None = None) -> torch.Tensor:
    """The (2L, 2L) bool mask of the vectorised training (module docstring), True = may attend."""
    _check(length, block)
    blk = torch.arange(length, device=device) // block  # (L,)
    same = blk[:, None] == blk[None, :]
    before = blk[None, :] < blk[:, None]
    upto = blk[None, :] <= blk[:, None]
    never = torch.zeros_like(same)
    return torch.cat([torch.cat([same, before], 1), torch.cat([never, upto], 1)], 0)


def block_attention_mask_reference(length: int, block: int) -> torch.Tensor:
    """The same mask written out entry by entry, as the paper's Figure 3 draws it."""
    mask = torch.zeros(2 * length, 2 * length, dtype=torch.bool)
    for q in range(2 * length):
        for k in range(2 * length):
            q_noisy, k_noisy = q < length, k < length
            bq, bk = (q % length) // block, (k % length) // block
            if q_noisy and k_noisy:
                mask[q, k] = bq == bk
            elif q_noisy:
                mask[q, k] = bk < bq
            elif not k_noisy:
                mask[q, k] = bk <= bq
    return mask


def bd3_logits(model, x_t: torch.Tensor, x0: torch.Tensor, block: int) -> torch.Tensor:
    """The network's outputs (B, L, N) for the noised tokens x_t given the clean x0 (B, L), all blocks at once."""
    length = x0.shape[1]
    positions = torch.arange(length, device=x0.device).repeat(2)  # (2L,)
    mask = block_attention_mask(length, block, x0.device)
    return model(torch.cat([x_t, x0], dim=1), None, positions=positions, mask=mask)[:, :length]


def bd3_nelbo_estimate(model, x0: torch.Tensor, t: torch.Tensor, schedule: Schedule, graph: Graph, block: int,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """One-sample estimate (B,) of the BD3 bound's integrand at block times t (B, L / b): mask the tokens of block
    j with probability 1 - α(t_j), evaluate all blocks with `bd3_logits`, and sum MDLM's weighted masked
    cross-entropies (Arriola et al. 2025, eq. (5); Sahoo et al. 2024, eq. (10)) over the blocks. Its mean over
    t_j ~ U[0, 1] bounds -log p_θ(x) (plus the prior term, as for MDLM)."""
    _check(x0.shape[1], block)
    sigma, sigma_bar = schedule(t.repeat_interleave(block, dim=1))  # (B, L): each token its block's time
    u = torch.rand(x0.shape, generator=generator, device=x0.device)
    x_t = torch.where(u < -torch.expm1(-sigma_bar), torch.full_like(x0, graph.mask_id), x0)  # (B, L)
    log_probs = subs_log_probs(bd3_logits(model, x_t, x0, block), x_t, graph.mask_id)  # (B, L, N)
    nll = -log_probs.gather(-1, x0.unsqueeze(-1)).squeeze(-1)  # (B, L)
    nll = torch.where(x_t == graph.mask_id, nll, torch.zeros_like(nll))
    return (mdlm_weight(sigma, sigma_bar) * nll).sum(-1)


def bd3_loss(model, x0: torch.Tensor, schedule: Schedule, graph: Graph, block: int, t_eps: float = 1e-5,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """BD3-LM's training loss: `bd3_nelbo_estimate` at low-discrepancy times (one per block of every sequence),
    per token (nats), and metrics."""
    n_blocks = _check(x0.shape[1], block)
    t = sample_times(x0.shape[0] * n_blocks, x0.device, t_eps, generator=generator).reshape(-1, n_blocks)  # (B, nb)
    loss = bd3_nelbo_estimate(model, x0, t, schedule, graph, block, generator).mean() / x0.shape[1]
    return loss, {"bpc": bits_per_char(loss.detach())}


@torch.no_grad()
def bd3_sample(model, schedule: Schedule, graph: Graph, num: int, length: int, block: int, steps: int,
               threshold: float | None = None, confidence: bool = False, condition: Condition | None = None,
               generator: torch.Generator | None = None, device: torch.device | str | None = None,
               record: bool = False) -> Samples:
    """Block-by-block generation with the KV cache of finished blocks (module docstring). Within a block: ``steps``
    MDLM ancestral steps (t from 1 to 0), or with ``confidence`` (or a ``threshold``) `confidence_step` unmasking
    ⌈masked / steps left⌉ positions per step. ``nfe`` counts network calls, each on b tokens."""
    n_blocks = _check(length, block)
    if steps < 1:
        raise ConfigError(f"steps per block must be at least 1, got {steps}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    x = apply_condition(graph.sample_limit((num, length), device), condition)
    traj: list[torch.Tensor] | None = [] if record else None
    _record(traj, x)
    cache = KVCache(model.n_layers)
    nfe = 0
    for j in range(n_blocks):
        lo, hi = j * block, (j + 1) * block
        positions = torch.arange(lo, hi, device=device)
        cond = None if condition is None else Condition(condition.given[:, lo:hi], condition.known[:, lo:hi])
        z = x[:, lo:hi]
        k = 0
        while (z == graph.mask_id).any() and k < steps:
            log_probs = subs_log_probs(model(z, None, cache=cache, positions=positions, store=False), z, graph.mask_id)
            nfe += 1
            if confidence or threshold is not None:
                masked = (z == graph.mask_id).sum(-1)
                z = confidence_step(z, log_probs, graph.mask_id, -(-masked // (steps - k)), threshold, generator)
            else:
                t = torch.full((num,), (steps - k) / steps, device=device)
                s = torch.full((num,), (steps - k - 1) / steps, device=device)
                z = mdlm_step(z, log_probs, schedule.alpha(s), schedule.alpha(t), graph.mask_id, generator)
            z = apply_condition(z, cond)
            k += 1
            x = torch.cat([x[:, :lo], z, x[:, hi:]], dim=1)
            _record(traj, x)
        if j < n_blocks - 1:
            model(z, None, cache=cache, positions=positions, store=True)  # the finished block enters the cache
            nfe += 1
    return Samples(x, nfe, traj or [])


@torch.no_grad()
def block_sample_exact(denoiser, mask_id: int, num: int, length: int, block: int, threshold: float | None = None,
                       per_step: int = 1, generator: torch.Generator | None = None) -> Samples:
    """Block-by-block confidence decoding with an exact denoiser of the whole sequence, ``denoiser(z, σ̄) -> log
    p(x_i | visible)`` (e.g. `dlcourse.discrete.testbed.ExactTopicDenoiser`): inside block j the positions after it
    stay masked, which is exactly what BD3's conditional on the clean blocks before means. Unmasks by
    ``threshold`` or ``per_step`` positions per call; ``nfe`` counts calls. What a perfect BD3 model would do."""
    _check(length, block)
    x = torch.full((num, length), mask_id, dtype=torch.long)
    traj: list[torch.Tensor] = [x.clone()]
    nfe = 0
    for lo in range(0, length, block):
        inside = torch.zeros(num, length, dtype=torch.bool)
        inside[:, lo:lo + block] = True
        while (x[:, lo:lo + block] == mask_id).any():
            log_probs = denoiser(x, None)
            nfe += 1
            z = torch.where(inside, x, torch.zeros_like(x))  # outside the block nothing may be chosen
            n_unmask = None if threshold is not None else torch.full((num,), per_step)
            x = torch.where(inside, confidence_step(z, log_probs, mask_id, n_unmask, threshold, generator), x)
            traj.append(x.clone())
    return Samples(x, nfe, traj)
