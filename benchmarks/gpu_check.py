"""One script that proves the CUDA path the moment a GPU is available, in a few minutes, and writes one JSON.

    python benchmarks/gpu_check.py                    # on a CUDA device: every family's paper preset, bf16 + compile
    python benchmarks/gpu_check.py --tiny             # the same checks on the CPU with tiny networks (CI runs this)

For every family that trains through `dlcourse.train.fit` (its paper-scale preset: DDPM cont. on CIFAR-10 shapes,
NCSNv2's CIFAR-10 setting, the text8 transformers of MDLM / SEDD / AR / BD3) it trains a few hundred steps with
bf16 autocast and ``torch.compile`` and checks that the loss stays finite and falls; it measures examples/s and
tokens/s after the compile, the FLOPs per step (`scale_bench.count_step`) and so the fraction of the device's
dense bf16 peak reached (MFU), the peak memory, and draws samples. Then it measures the editor-vs-typewriter
sampling frontier on the device (AR with its KV cache, MDLM with confidence decoding, BD3 with its block cache) at
batch 1 and 16, with the shipped test-bed models when they are there.

Data. The machine may have no network and no datasets, so training uses data with structure that ships with the
code: scikit-learn's 8x8 digits scaled to the preset's image shape, and the exact test bed (`TopicLanguage`) for
text. What is measured is the machinery (finite, falling losses; speed; memory), not sample quality.

Every result is written to the JSON as soon as it exists, so a run cut short by its time limit still reports.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from dlcourse.config import apply_overrides  # noqa: E402
from dlcourse.registry import family  # noqa: E402
from dlcourse.train import fit, read_metrics  # noqa: E402

PAPER = [("sde", "cifar10"), ("ncsn", "cifar10"), ("mdlm", "text8"), ("sedd", "text8"), ("ar", "text8"),
         ("bd3", "text8")]
TINY = {
    "sde": ["width=8", "depth=1", "channel_mults=[1,2]", "attn_resolutions=[16]", "train.batch_size=4"],
    "ncsn": ["model.channels=8", "model.num_res_blocks=1", "model.channel_mults=[1,2]", "model.attn_resolutions=[16]",
             "train.batch_size=4"],
    **{k: ["model.dim=32", "model.n_layers=1", "model.n_heads=2", "model.cond_dim=16", "seq_len=64",
           "train.batch_size=4"] for k in ("mdlm", "sedd", "ar", "bd3")},
}
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


def device_peak(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def structured_data(fam, cfg):
    """A sampler ``(generator, n) -> batch`` of the preset's shape with learnable structure (module docstring)."""
    from dlcourse.data.sets import DATASETS

    if getattr(cfg, "data", None) in DATASETS and cfg.data != "toy":
        from dlcourse.data.images import load_images
        from dlcourse.train import TensorSampler

        c, h, w = DATASETS.get(cfg.data).shape
        digits, _ = load_images("digits", "train")  # (1500, 1, 8, 8), bundled with scikit-learn
        x = torch.nn.functional.interpolate(digits, size=(h, w), mode="bilinear", align_corners=False)
        x = x.expand(-1, c, -1, -1).contiguous()
        return TensorSampler(2 * x - 1 if fam.name == "sde" else x)
    from dlcourse.discrete.testbed import TopicLanguage

    lang = TopicLanguage.random(seed=0)
    return lambda generator, n: lang.sample(n, cfg.seq_len, generator)


def check_family(name: str, preset: str, device: torch.device, steps: int, tiny: bool, compile_: bool) -> dict:
    from scale_bench import count_step

    fam = family(name)
    cfg = fam.presets.get(preset)
    overrides = TINY[name] if tiny else []
    cfg = apply_overrides(cfg, overrides + [f"train.steps={steps}", f"train.log_every={max(1, steps // 10)}",
                                            f"train.ckpt_every={10 ** 9}", "train.progress=false", "train.bf16=true",
                                            f"train.compile={str(compile_).lower()}", "train.warmup=0"])
    if hasattr(cfg, "eval_windows"):
        cfg.eval_windows = 0
    sampler = structured_data(fam, cfg)
    cfg = fam.prepare(cfg, sampler)
    torch.manual_seed(0)
    model = fam.build_model(cfg)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = fit(model, fam.loss(cfg), sampler, cfg.train, tmp, kind=fam.kind, config=cfg, device=device)
        logged = read_metrics(tmp)
    wall = time.perf_counter() - start
    losses = [r["loss"] for r in logged]
    rate = sorted(r["steps_per_s"] for r in logged[1:])[len(logged[1:]) // 2] if len(logged) > 1 else float("nan")
    flops = count_step(fam, cfg)["tflop_per_step"] * 1e12
    peak = device_peak(device)
    per_example = cfg.train.batch_size * (cfg.seq_len if hasattr(cfg, "seq_len") else 1)
    row = {"family": name, "preset": preset, "tiny": tiny, "compile": compile_, "steps": steps,
           "wall_s": round(wall, 1), "loss_first": losses[0], "loss_last": losses[-1],
           "finite": all(math.isfinite(v) for v in losses), "fell": losses[-1] < losses[0],
           "steps_per_s": rate, ("tokens_per_s" if hasattr(cfg, "seq_len") else "images_per_s"): rate * per_example,
           "tflop_per_step": flops / 1e12, "mfu": rate * flops / peak if peak else None,
           "peak_memory_gb": torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None}
    row.update(sample_check(fam, result.ema_model.eval(), cfg, device))
    return row


@torch.no_grad()
def sample_check(fam, model, cfg, device) -> dict:
    """Draw a few samples with the family's own sampler (few steps), timed, and check they are finite/complete."""
    import argparse as _argparse

    generator = torch.Generator(device=device).manual_seed(0)
    if fam.name in ("sde", "ncsn"):
        args = _argparse.Namespace(sampler="pc", steps=20, snr=None, no_denoise=False, steps_each=1, eps=None)
        n = 8
    else:
        args = _argparse.Namespace(length=None, prefix=None, suffix=None, steps=16, method=None)
        n = 4
    start = time.perf_counter()
    out = fam.sample(model, cfg, n, generator, args)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    secs = time.perf_counter() - start
    ok = bool(torch.isfinite(out.data).all()) if isinstance(out.data, torch.Tensor) else all("_" not in s for s in out.data)
    return {"sample_ok": ok, "sample_s": round(secs, 2), "sample_note": out.note}


def frontier(device: torch.device, tiny: bool) -> list[dict]:
    """Tokens/s of AR (KV cache), MDLM (confidence, by count) and BD3 (block cache) at batch 1 and 16 on the device,
    with the shipped test-bed models if present (else freshly initialised ones of the same size)."""
    from dlcourse import load
    from dlcourse.checkpoint import read_manifest
    from dlcourse.discrete.evaluate import tokens_per_second

    shipped = read_manifest()
    rows = []
    for name, kw in (("ar", {}), ("mdlm", {"confidence": True}), ("bd3", {"confidence": True})):
        ckpt = f"{name}_topics" if name != "bd3" else "bd3_topics_b16"
        if ckpt in shipped and not tiny:
            model, cfg = load(ckpt, device)
        else:
            fam = family(name)
            cfg = apply_overrides(fam.presets.get("topics"), TINY[name] if tiny else [])
            model = fam.build_model(cfg).to(device).eval()
        fam = family(name)
        for batch in (1, 16):
            for steps in ([None] if name == "ar" else [8, 16]):
                g = torch.Generator(device=device).manual_seed(0)
                run = lambda: fam.generate(model, cfg, batch, cfg.seq_len, steps, generator=g, **kw).tokens  # noqa
                rate, _ = tokens_per_second(run, repeats=2)
                rows.append({"sampler": name + (" confidence" if kw else " KV cache"), "batch": batch,
                             "steps": steps or cfg.seq_len, "tokens_per_s": rate, "checkpoint": ckpt in shipped})
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="tiny networks on the CPU (what CI runs)")
    p.add_argument("--steps", type=int, default=None, help="training steps per family (default: 300, tiny: 6)")
    p.add_argument("--budget", type=float, default=480.0, help="seconds for the whole check (default: %(default)s)")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile (default: compile on CUDA)")
    p.add_argument("--out", type=Path, default=Path("runs/gpu_check.json"), help="the JSON (default: %(default)s)")
    args = p.parse_args()
    device = torch.device("cpu" if args.tiny else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device here; run with --tiny to check the path on the CPU", file=sys.stderr)
        return 2
    steps = args.steps or (6 if args.tiny else 300)
    compile_ = not args.no_compile and device.type == "cuda"
    report = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "peak_bf16_flops": device_peak(device), "families": [], "frontier": [],
              "errors": []}
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save():
        args.out.write_text(json.dumps(report, indent=2) + "\n")

    start = time.perf_counter()
    for name, preset in PAPER:
        if time.perf_counter() - start > args.budget * 0.8:
            report["errors"].append(f"{name}: skipped, out of time")
            continue
        try:
            row = check_family(name, preset, device, steps, args.tiny, compile_)
            report["families"].append(row)
            print(json.dumps(row), flush=True)
        except Exception as exc:  # one family's failure must not hide the others' results
            report["errors"].append(f"{name}: {type(exc).__name__}: {exc}".splitlines()[0][:300])
            traceback.print_exc()
        save()
    try:
        report["frontier"] = frontier(device, args.tiny)
    except Exception as exc:
        report["errors"].append(f"frontier: {type(exc).__name__}: {exc}".splitlines()[0][:300])
        traceback.print_exc()
    report["wall_s"] = round(time.perf_counter() - start, 1)
    save()
    bad = [r["family"] for r in report["families"] if not (r["finite"] and r["sample_ok"])]
    print(f"gpu_check: {len(report['families'])} families in {report['wall_s']} s; written to {args.out}"
          + (f"; FAILED: {bad + report['errors']}" if bad or report["errors"] else ""))
    return 1 if bad or report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
