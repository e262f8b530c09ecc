"""What every preset costs: parameters, FLOPs per training step, activation memory, the predicted time to the
paper's step count on an H100 / H200, and measured CPU steps/s for the small presets.

    python benchmarks/scale_bench.py                       # the table of every preset (FLOPs counted on the meta device)
    python benchmarks/scale_bench.py --measure-cpu         # also time the small presets on this CPU (one thread)
    python benchmarks/scale_bench.py --vs-reference        # our training step against a paper-faithful reference block
                                                           # (with its Amdahl ceiling: 1 / the share in dense kernels)
    python benchmarks/scale_bench.py --json runs/scale.json

How it measures:
- FLOPs: `torch.utils.flop_counter.FlopCounterMode` over one forward and backward of the family's own loss on the
  preset's batch, on the meta device (no memory, no time), so the 35.7M U-Net at batch 128 costs nothing to count.
  Matrix multiplies and convolutions only (what the counter counts), which is what tensor cores run.
- Activation memory per example: the bytes of every tensor autograd saves for the backward pass (saved-tensor
  hooks), at float32; bf16 autocast roughly halves it.
- Predicted time: FLOPs per step x the paper's steps / (MFU x the GPU's dense bf16 peak). The peaks are data-sheet
  numbers (H100 SXM and H200 SXM: 989 TFLOP/s dense bf16); the MFU (default 0.4) is an assumption, stated in the
  table, until `benchmarks/gpu_check.py` measures it.
- CPU steps/s: `fit` on synthetic batches of the preset's shape (the model's cost, not the data loader's), one
  thread, best of two timed runs after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dlcourse.registry import FAMILIES, family  # noqa: E402
from dlcourse.utils import count_parameters  # noqa: E402

PEAK_BF16 = {"H100": 989e12, "H200": 989e12}  # dense bf16 tensor-core FLOP/s, SXM data sheets
SMALL = ("toy", "digits", "topics", "cpu", "fashion", "topics-b8", "topics-b4")
TRAINABLE = [n for n in FAMILIES if n not in ("expert", "bc", "gail")]  # the RL loops are not fit steps


def example_batch(fam, cfg, n: int, device="cpu"):
    """A batch of the preset's shape with arbitrary content (images in [0, 1] or [-1, 1], token ids, labels)."""
    from dlcourse.data.sets import DATASETS

    g = torch.Generator(device="cpu").manual_seed(0)
    data = getattr(cfg, "data", None)
    if fam.name == "classifier":
        x = torch.rand((n, *DATASETS.get(data).shape), generator=g)
        return x.to(device), torch.randint(10, (n,), generator=g).to(device)
    if data in DATASETS:
        x = torch.rand((n, *DATASETS.get(data).shape), generator=g)
        return (2 * x - 1 if fam.name == "sde" else x).to(device)
    return torch.randint(27, (n, cfg.seq_len), generator=g).to(device)


def _prepared(fam, cfg):
    """NCSN fills its noise ladder from the data; give it the numbers NCSNv2's rules would (no data needed)."""
    if fam.name == "ncsn" and (cfg.noise.sigma_max is None or cfg.noise.num_levels is None or cfg.sampler.eps is None):
        from dlcourse.score.family import resolve_config

        sample = example_batch(fam, cfg, 64)
        return resolve_config(cfg, sample)
    return cfg


def count_step(fam, cfg) -> dict:
    """FLOPs of one training step on the preset's batch, and activation bytes per example, on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = _prepared(fam, cfg)
    with torch.device("meta"):
        model = fam.build_model(cfg)
    batch = example_batch(fam, cfg, 2, "meta")
    saved = [0]

    def pack(t):
        saved[0] += t.numel() * t.element_size()
        return t

    counter = FlopCounterMode(display=False)
    with counter, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fam.loss(cfg)(model, batch)
        (out[0] if isinstance(out, tuple) else out).backward()
    per_example = counter.get_total_flops() / 2
    return {"params_m": count_parameters(model) / 1e6, "batch": cfg.train.batch_size,
            "tflop_per_step": per_example * cfg.train.batch_size / 1e12,
            "act_mb_per_example": saved[0] / 2 / 1e6}


def measure_cpu(fam, cfg, steps: int = 3) -> float:
    """Training steps per second on this CPU (one thread), synthetic batches, best of two runs after a warm-up."""
    from dlcourse.train import fit

    cfg = _prepared(fam, cfg)
    batch = example_batch(fam, cfg, cfg.train.batch_size)
    sampler = (lambda g, n: tuple(b[:n] for b in batch)) if isinstance(batch, tuple) else (lambda g, n: batch[:n])
    cfg.train.progress, cfg.train.log_every, cfg.train.ckpt_every = False, 10 ** 9, 10 ** 9
    torch.manual_seed(0)
    model = fam.build_model(cfg)
    loss = fam.loss(cfg)
    cfg.train.steps = 1
    fit(model, loss, sampler, cfg.train, None, kind=fam.kind, device="cpu")
    best = math.inf
    for _ in range(2):
        cfg.train.steps = steps
        start = time.perf_counter()
        fit(model, loss, sampler, cfg.train, None, kind=fam.kind, device="cpu")
        best = min(best, (time.perf_counter() - start) / steps)
    return 1.0 / best


def scale_table(measure: bool, mfu: float) -> list[dict]:
    rows = []
    for name in TRAINABLE:
        fam = family(name)
        for preset in fam.presets.names():
            cfg = fam.presets.get(preset)
            row = {"family": name, "preset": preset, **count_step(fam, cfg)}
            note = fam.presets.reproduces.get(preset)
            steps = note.steps if note else cfg.train.steps
            row["steps"] = steps
            row["paper"] = f"{note.paper}, {note.table}" if note else ""
            for gpu, peak in PEAK_BF16.items():
                row[f"{gpu}_hours"] = row["tflop_per_step"] * 1e12 * steps / (mfu * peak) / 3600
            if measure and preset in SMALL:
                row["cpu_steps_per_s"] = measure_cpu(fam, cfg)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


# ---------------------------------------------------------------------------------------------------------------
# against a reference: the same networks written the way the papers' code writes them
# ---------------------------------------------------------------------------------------------------------------


def reference_transformer(cfg):
    """The text network as the SEDD / MDLM DiT blocks are written (from their papers' description): tanh GELU, the
    rotary rotation built from stacked halves, adaLN modulation applied even without a condition (x (1 + 0) + 0)
    and gates of 1. Same sizes and weights layout as ours; only the elementwise work differs."""
    from torch import nn

    from dlcourse.nn.transformer import Transformer, apply_rotary

    net = Transformer(28, 27, cfg.model.dim, cfg.model.n_layers, cfg.model.n_heads, cfg.model.mlp_ratio,
                      time_conditioning=False, exact_gelu=False)

    def block_forward(self, h, cond, rope, fused=True, cache=None, layer=0, mask=None, store=True):
        b, length, dim = h.shape
        zeros, ones = torch.zeros(b, dim), torch.ones(b, dim)
        a = self.norm1(h) * (1 + zeros.unsqueeze(1)) + zeros.unsqueeze(1)
        q, k, v = self.qkv(a).view(b, length, 3, self.n_heads, dim // self.n_heads).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        a = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        h = h + ones.unsqueeze(1) * self.proj(a.transpose(1, 2).reshape(b, length, dim))
        m = self.mlp(self.norm2(h) * (1 + zeros.unsqueeze(1)) + zeros.unsqueeze(1))
        return h + ones.unsqueeze(1) * m

    for blk in net.blocks:
        blk.forward = block_forward.__get__(blk, nn.Module)
    return net


def _interleaved(fns: dict, repeats: int) -> dict[str, float]:
    """Median seconds per call of each function, run A, B, A, B, ... after one warm-up each."""
    for fn in fns.values():
        fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - start)
    return {k: sorted(v)[len(v) // 2] for k, v in times.items()}


#: the dense kernels (BLAS / oneDNN) that both sides call with the same shapes: no elementwise rewrite makes them faster
DENSE_KERNELS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::mkldnn_convolution", "aten::convolution_backward",
                 "aten::_scaled_dot_product_flash_attention_for_cpu",
                 "aten::_scaled_dot_product_flash_attention_for_cpu_backward")


def dense_share(fn) -> float:
    """The fraction of one call's CPU time spent in `DENSE_KERNELS` (torch.profiler, self time, after a warm-up)."""
    from torch.profiler import profile

    fn()
    with profile() as prof:
        fn()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    return sum(e.self_cpu_time_total for e in events if e.key in DENSE_KERNELS) / total


def _row(what: str, t: dict, reference_fn) -> dict:
    """One comparison: both times, the ratio, and its ceiling: the ratio a rewrite reaches if everything but the
    reference's dense kernels cost nothing (Amdahl: 1 / the reference's dense share)."""
    share = dense_share(reference_fn)
    row = {"what": what, "reference_ms": 1e3 * t["reference"], "dlcourse_ms": 1e3 * t["dlcourse"],
           "speedup": t["reference"] / t["dlcourse"], "reference_dense_share": share, "ceiling": 1 / share}
    print(json.dumps(row), flush=True)
    return row


def vs_reference(repeats: int = 5) -> list[dict]:
    from dlcourse.discrete.losses import mdlm_loss
    from dlcourse.discrete.graphs import Absorbing
    from dlcourse.discrete.schedules import LogLinearSchedule

    torch.set_num_threads(1)
    rows = []
    fam = family("mdlm")
    cfg = fam.presets.get("cpu")
    cfg.model.exact_gelu = True
    x = torch.randint(27, (16, 256), generator=torch.Generator().manual_seed(0))
    graph, sched = Absorbing(27), LogLinearSchedule()
    ours, ref = fam.build_model(cfg), reference_transformer(cfg)
    ref.load_state_dict(ours.state_dict())

    def step(model):
        def run():
            loss, _ = mdlm_loss(lambda z, s: model(z), x, sched, graph, generator=torch.Generator().manual_seed(1))
            loss.backward()
        return run

    def forward(model):
        def run():
            with torch.no_grad():
                model(x)
        return run

    for what, make in (("forward B16 L256", forward), ("MDLM training step B16 L256", step)):
        t = _interleaved({"reference": make(ref), "dlcourse": make(ours)}, repeats)
        rows.append(_row(f"text 0.6M {what}", t, make(ref)))

    sde = family("sde")
    scfg = sde.presets.get("cpu")
    model = sde.build_model(scfg)
    loss = sde.loss(scfg)
    imgs = example_batch(sde, scfg, 32)

    def unet_step(m, batch):
        def run():
            loss(m, batch).backward()
        return run

    cl = sde.build_model(scfg).to(memory_format=torch.channels_last)
    cl.load_state_dict(model.state_dict())
    t = _interleaved({"reference": unet_step(model, imgs),
                      "dlcourse": unet_step(cl, imgs.contiguous(memory_format=torch.channels_last))}, repeats)
    rows.append(_row("28x28 U-Net (1.0M) training step B32, channels-last vs channels-first", t,
                     unet_step(model, imgs)))
    return rows


def _markdown(rows: list[dict]) -> str:
    cols = list(dict.fromkeys(k for r in rows for k in r))

    def fmt(v):
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    return "\n".join(["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)] +
                     ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--measure-cpu", action="store_true", help="time the small presets on this CPU")
    p.add_argument("--vs-reference", action="store_true", help="only the comparison with the reference blocks")
    p.add_argument("--mfu", type=float, default=0.4, help="assumed fraction of the bf16 peak (default: %(default)s)")
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = p.parse_args()
    torch.set_num_threads(1)
    rows = vs_reference() if args.vs_reference else scale_table(args.measure_cpu, args.mfu)
    print()
    print(_markdown(rows))
    if not args.vs_reference:
        print(f"\nhours: FLOPs/step x steps / ({args.mfu} x 989 TFLOP/s bf16); a prediction until gpu_check.py measures MFU")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
