"""Evaluation of the text models: bits per character (the diffusion bounds and the AR model's exact value),
generative quality judged by the AR model's perplexity, and sampling speed in tokens per second.

Bits per character are reported on windows of L characters, as the papers do on text8 (L = 256): an upper bound
for MDLM and SEDD (their NELBO, estimated by Monte Carlo over t and x_t, plus the prior term), the exact
-log₂ p_θ(x) / L for the AR model.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Iterable

import torch

from .graphs import Graph
from .losses import ar_log_probs, mdlm_nelbo_estimate, sample_times, sedd_nelbo_estimate
from .schedules import Schedule

__all__ = ["diffusion_bpc", "ar_bpc", "generative_perplexity", "tokens_per_second", "as_batches"]


def _device_of(model, device) -> torch.device:
    """``device`` if given, else the model's; puts an `nn.Module` in eval mode (a plain callable, e.g. the exact
    models of `dlcourse.discrete.markov`, runs on the CPU)."""
    if isinstance(model, torch.nn.Module):
        model.eval()
        if device is None:
            device = next(model.parameters()).device
    return torch.device(device if device is not None else "cpu")


def as_batches(data: torch.Tensor | Iterable[torch.Tensor], batch_size: int) -> Iterable[torch.Tensor]:
    """Windows (M, L) in batches, or an iterable of batches (e.g. `dlcourse.data.text.iter_chunks`) as is."""
    if isinstance(data, torch.Tensor):
        return data.split(batch_size)
    return data


@torch.no_grad()
def diffusion_bpc(model, kind: str, data, schedule: Schedule, graph: Graph, batch_size: int = 64,
                  n_times: int = 16, t_eps: float = 1e-5, generator: torch.Generator | None = None,
                  device: torch.device | str | None = None, block: int | None = None) -> dict[str, float]:
    """Upper bound on bits per character of ``kind`` = "mdlm", "sedd" or "bd3" (with its ``block`` size): for
    every window, ``n_times`` low-discrepancy draws of t (one per block for bd3) and of x_t, plus the prior term
    KL(p_{1|0} ‖ p_base).

    Returns {"bpc": bound, "stderr": its Monte Carlo standard error, "prior_bpc": the prior term's share}.
    ``block`` is ignored by the other kinds.
    """
    if kind == "bd3":
        from .bd3 import bd3_nelbo_estimate

        def estimate(model, x0, t, schedule, graph, generator):
            n_blocks = x0.shape[1] // block
            t = sample_times(x0.shape[0] * n_blocks, x0.device, t_eps, generator=generator).reshape(-1, n_blocks)
            return bd3_nelbo_estimate(model, x0, t, schedule, graph, block, generator)
    else:
        estimate = {"mdlm": mdlm_nelbo_estimate, "sedd": sedd_nelbo_estimate}[kind]
    device = _device_of(model, device)
    per_seq, prior, length = [], [], None
    for x0 in as_batches(data, batch_size):
        x0 = x0.to(device)
        b, length = x0.shape
        draws = []
        for _ in range(n_times):
            t = sample_times(b, device, t_eps, generator=generator)
            draws.append(estimate(model, x0, t, schedule, graph, generator).float())  # (B,)
        per_seq.append(torch.stack(draws).mean(0))
        sb1 = schedule.sigma_bar(torch.ones(b, device=device))
        prior.append(graph.prior_kl(x0, sb1).float())
    nats = torch.cat(per_seq) + torch.cat(prior)  # (M,) per window
    scale = 1.0 / (length * math.log(2))
    return {"bpc": nats.mean().item() * scale,
            "stderr": (nats.std() / math.sqrt(len(nats))).item() * scale if len(nats) > 1 else float("nan"),
            "prior_bpc": torch.cat(prior).mean().item() * scale}


@torch.no_grad()
def ar_bpc(model, data, bos_id: int, batch_size: int = 64, device: torch.device | str | None = None) -> float:
    """Exact bits per character -log₂ p_θ(x) / L of the autoregressive model, averaged over windows."""
    device = _device_of(model, device)
    total, count = 0.0, 0
    for x in as_batches(data, batch_size):
        lp = ar_log_probs(model, x.to(device), bos_id)  # (B, L)
        total += -lp.double().sum().item()
        count += lp.numel()
    return total / count / math.log(2)


def generative_perplexity(ar_model, samples: torch.Tensor, bos_id: int, batch_size: int = 64) -> float:
    """exp of the AR judge's mean negative log-likelihood per character of ``samples`` (B, L): the generative
    perplexity of SEDD (Section 5.2) and MDLM, here per character. Lower is more like the judge's data. Under
    ``torchrun`` every process judges its share of the samples and the result is their mean."""
    from ..train import Distributed

    group = Distributed.from_env(_device_of(ar_model, None))
    share = group.shard(len(samples))
    bpc = ar_bpc(ar_model, samples[share.start:share.stop], bos_id, batch_size)
    total = group.gather(torch.tensor([bpc * len(share)], dtype=torch.float64)).sum()  # bits/char x windows
    return math.exp(float(total) / len(samples) * math.log(2))


def tokens_per_second(sample_fn: Callable[[], torch.Tensor], repeats: int = 1) -> tuple[float, torch.Tensor]:
    """Generated characters per second of ``sample_fn() -> tokens (B, L)`` (the best of ``repeats`` runs, after one
    warm-up), and the last samples. Synchronises CUDA so the time covers the whole computation."""
    def sync():
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    out = sample_fn()
    best = math.inf
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        out = sample_fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return out.numel() / best, out
