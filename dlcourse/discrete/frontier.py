"""The editor-vs-typewriter frontier: tokens per second against sample quality for every text sampler, measured, and
a roofline model that predicts the same frontier on a GPU.

A *sampler* (`SamplerSpec`) is a family's ``generate`` with fixed options: AR with its KV cache, MDLM ancestral,
MDLM with confidence decoding (by count or by threshold), BD3 with its block cache, SEDD's Tweedie τ-leaping. Each
point of the frontier (`measure_point`) is timed twice at a given batch size and scored:

- on the exact test bed (`dlcourse.discrete.testbed`): the exact NLL of the samples under the true source, in bits
  per character (a perfect sampler has the source's window entropy), and their distinct 4-grams relative to real
  text (so a collapsed sampler cannot look good);
- on prose: the perplexity per character that a larger AR *judge* gives the samples.

The roofline (`Roofline`). A network call on ``n`` positions costs FLOPs ≈ 2 P n + 4 layers · dim · n · context
(the weight matmuls and attention) and moves bytes ≈ weights + keys/values read. On this CPU the time per call is
fitted as a + b · FLOPs (a: the per-call overhead of the Python and kernel dispatch, 1/b: the sustained FLOP rate)
from measured calls of every size, in relative error; on a GPU it is predicted as launch overhead +
max(FLOPs / (u · peak), bytes / bandwidth) from data-sheet peaks, with the utilisation u and the launch overhead
stated. Summing over the calls a sampler makes gives its tokens per second: a prediction until measured on the device.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

__all__ = ["SamplerSpec", "standard_samplers", "measure_point", "Call", "sampler_calls", "Roofline", "GPUS",
           "real_text_figures"]


@dataclass(frozen=True)
class SamplerSpec:
    label: str
    kind: str                       #: the family: ar, mdlm, bd3, sedd
    options: dict = field(default_factory=dict)  #: keyword arguments of the family's ``generate``

    @property
    def steps(self) -> int | None:
        return self.options.get("steps")


def standard_samplers(seq_len: int, bd3_blocks: tuple[int, ...] = (4, 8, 16), sedd: bool = True) -> list[SamplerSpec]:
    """The frontier of the benchmark and the lecture: AR; MDLM ancestral at L and L/4 steps; MDLM confidence by
    count at L/2, L/4, L/8 steps and by threshold 0.9, 0.7; BD3 for each block size with b, b/2 and b/4 steps per
    block (confidence); SEDD Tweedie at L and L/4 steps."""
    L = seq_len
    out = [SamplerSpec("AR (KV cache)", "ar")]
    out += [SamplerSpec(f"MDLM ancestral, {s} steps", "mdlm", {"steps": s, "confidence": False}) for s in (L, L // 4)]
    out += [SamplerSpec(f"MDLM confidence, {s} steps", "mdlm", {"steps": s, "confidence": True})
            for s in (L // 2, L // 4, L // 8)]
    out += [SamplerSpec(f"MDLM threshold {t}", "mdlm", {"threshold": t}) for t in (0.9, 0.7)]
    for b in bd3_blocks:
        out += [SamplerSpec(f"BD3 b={b}, {s} steps/block", f"bd3-b{b}", {"steps": s, "confidence": True})
                for s in sorted({b, max(1, b // 2), max(1, b // 4)}, reverse=True)]
    if sedd:
        out += [SamplerSpec(f"SEDD Tweedie, {s} steps", "sedd", {"steps": s, "method": "tweedie"}) for s in (L, L // 4)]
    return out


def _family_of(kind: str):
    from ..registry import family

    return family(kind.split("-")[0])


@torch.no_grad()
def measure_point(spec: SamplerSpec, model, cfg, batch: int, n_quality: int, score, seed: int = 0,
                  repeats: int = 5) -> dict:
    """Tokens/s of ``spec`` at ``batch`` (the best of ``repeats`` timed runs after a warm-up: one run of a small
    sampler is tens of milliseconds, and a shared CPU slows single runs by up to 2x) and the quality of
    ``n_quality`` samples:
    ``score(tokens (N, L)) -> dict`` (the test bed's exact NLL, or the judge's perplexity)."""
    fam = _family_of(spec.kind)
    device = next(model.parameters()).device
    length = cfg.seq_len

    def draw(n, s):
        out = fam.generate(model, cfg, n, length, generator=torch.Generator(device=device).manual_seed(s),
                           **spec.options)
        return out

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    draw(batch, seed)  # warm-up
    timings, nfes = [], []
    for r in range(repeats):
        sync()
        start = time.perf_counter()
        out = draw(batch, seed + 1 + r)
        sync()
        timings.append(time.perf_counter() - start)
        nfes.append(out.nfe)
    samples = torch.cat([draw(min(64, n_quality - i), seed + 100 + i).tokens.cpu() for i in range(0, n_quality, 64)])
    best = min(range(repeats), key=timings.__getitem__)  # the fastest run's rate, and its calls (a threshold's vary)
    row = {"sampler": spec.label, "kind": spec.kind, "batch": batch, "nfe": nfes[best], "nfe_runs": nfes,
           "tokens_per_s": batch * length / timings[best], "tokens_per_s_runs": [batch * length / t for t in timings]}
    row.update(score(samples))
    return row


def real_text_figures(score, real: torch.Tensor) -> dict:
    """The quality figures of real windows: the floor (test bed) or the judge's perplexity of held-out text."""
    return {"sampler": "real text", **score(real)}


# ---------------------------------------------------------------------------------------------------------------
# the roofline
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    positions: int   #: query positions processed (batch x tokens in the call)
    context: int     #: keys each query attends to
    batch: int


def sampler_calls(spec: SamplerSpec, seq_len: int, batch: int) -> list[Call]:
    """The network calls ``spec`` makes to generate ``batch`` sequences of ``seq_len`` (a threshold sampler makes as
    many as it needs: pass its measured count as ``steps``)."""
    L = seq_len
    if spec.kind == "ar":
        return [Call(batch, i + 1, batch) for i in range(L)]
    if spec.kind.startswith("bd3"):
        b = int(spec.kind.split("b")[-1])
        steps = spec.options.get("steps", b)
        calls = []
        for j in range(L // b):
            calls += [Call(batch * b, (j + 1) * b, batch)] * steps
            if j < L // b - 1:
                calls.append(Call(batch * b, (j + 1) * b, batch))  # the finished block enters the cache
        return calls
    steps = spec.options.get("steps") or max(1, L // 4)
    return [Call(batch * L, L, batch)] * steps


def call_flops(call: Call, params: float, layers: int, dim: int) -> float:
    """Multiply-add FLOPs of one call: 2 P per position for the weights, 4 · dim · context per position per layer
    for attention scores and values."""
    return 2 * params * call.positions + 4 * layers * dim * call.positions * call.context


def call_bytes(call: Call, params: float, layers: int, dim: int, bytes_per_value: int = 2) -> float:
    """Bytes one call must move at the least: the weights once, and every query's keys and values."""
    kv = 2 * layers * dim * call.context * call.batch
    return bytes_per_value * (params + kv)


GPUS = {  # data-sheet peaks (SXM): dense bf16 tensor-core FLOP/s, HBM bandwidth in bytes/s
    "H100": {"flops": 989e12, "bandwidth": 3.35e12},
    "H200": {"flops": 989e12, "bandwidth": 4.8e12},
}


@dataclass
class Roofline:
    """Time per call t = a + b · FLOPs on this machine (fitted), or launch + max(FLOPs / (u peak), bytes / bw) on a
    GPU (predicted); see the module docstring. ``params``, ``layers``, ``dim`` describe the network."""

    params: float
    layers: int
    dim: int
    a: float = 0.0   #: seconds of overhead per call (fitted)
    b: float = 0.0   #: seconds per FLOP (fitted)

    def fit(self, calls: list[Call], seconds: list[float]) -> "Roofline":
        """Least squares of t = a + b · FLOPs over measured calls, in relative error: each residual is divided by its
        measured time. The calls span three decades of FLOPs; in absolute seconds the largest calls would decide both
        coefficients and leave the overhead a (the whole cost of a one-position call) to their noise."""
        x = torch.tensor([call_flops(c, self.params, self.layers, self.dim) for c in calls], dtype=torch.float64)
        y = torch.tensor(seconds, dtype=torch.float64)
        design = torch.stack([torch.ones_like(x), x], 1) / y[:, None]
        sol = torch.linalg.lstsq(design, torch.ones_like(y)[:, None]).solution[:, 0]
        self.a, self.b = float(sol[0]), float(sol[1])
        return self

    def cpu_seconds(self, call: Call) -> float:
        return self.a + self.b * call_flops(call, self.params, self.layers, self.dim)

    def gpu_seconds(self, call: Call, gpu: str, utilisation: float = 0.5, launch: float = 12 * 6e-6) -> float:
        """Predicted seconds of a call on ``gpu``: eager PyTorch launches about 12 kernels per layer at ~6 µs each
        (``launch`` per layer), then the larger of the compute and the memory time."""
        spec = GPUS[gpu]
        compute = call_flops(call, self.params, self.layers, self.dim) / (utilisation * spec["flops"])
        memory = call_bytes(call, self.params, self.layers, self.dim) / spec["bandwidth"]
        return self.layers * launch + max(compute, memory)

    def tokens_per_second(self, spec: SamplerSpec, seq_len: int, batch: int, gpu: str | None = None, **kw) -> float:
        calls = sampler_calls(spec, seq_len, batch)
        total = sum(self.gpu_seconds(c, gpu, **kw) if gpu else self.cpu_seconds(c) for c in calls)
        return batch * seq_len / total


def calibrate(model, seq_len: int, sizes=((1, 1), (1, 16), (1, 64), (4, 64), (16, 64), (16, 16), (64, 64)),
              repeats: int = 5) -> tuple[list[Call], list[float]]:
    """Measured seconds of one forward on (batch, tokens) inputs of every size in ``sizes`` (median of ``repeats``),
    the calls a `Roofline` is fitted to."""
    device = next(model.parameters()).device
    calls, secs = [], []
    with torch.no_grad():
        for b, n in sizes:
            x = torch.randint(27, (b, n), device=device)
            model(x)
            ts = []
            for _ in range(repeats):
                start = time.perf_counter()
                model(x)
                ts.append(time.perf_counter() - start)
            calls.append(Call(b * n, n, b))
            secs.append(sorted(ts)[repeats // 2])
    return calls, secs
