"""NCSN throughput: Langevin chains on the 2-D toy, image sampling at the shipped settings, and training speed.

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ncsn_bench.py
    ... --device cuda --json runs/ncsn_bench.json       # on a GPU: also bf16 / torch.compile training rows

Rows (each timed ``--repeats`` times, default 2, after one untimed warm-up call; every timing is printed):

- ``toy chain (net)``: annealed Langevin with the shipped ``ncsn_toy`` score net, ``--particles`` chains for
  ``--chain-steps`` steps; unit: particle-steps per second (chains x steps / s).
- ``toy chain (exact)``: the same with the exact score of the mixture (no network): the cost of the sampler itself.
- ``digits sampling``: ``--images`` samples from ``ncsn_digits`` with its shipped sampler (every level, T steps
  each, the final denoising step); unit: images per second.
- ``digits training``: optimiser steps of the ``digits`` preset (its U-Net, batch 128, NCSN loss, Adam, clipping);
  unit: training images per second. On CUDA also with bf16 autocast and with torch.compile.

The numbers depend on the machine and on what else runs on it: report the device line printed at the top.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch


def _timed(fn, repeats: int, device: torch.device, warmup=None) -> list[float]:
    """Run ``warmup`` (default: fn) once untimed, then ``repeats`` timed calls of fn; seconds per call."""

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    (warmup or fn)()
    sync()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t0)
    return out


def bench_toy_chain(device, particles: int, steps: int, repeats: int, exact: bool) -> dict:
    from dlcourse.data.toy2d import two_gaussians
    from dlcourse import load
    from dlcourse.score import annealed_langevin_dynamics, sigmas_of

    model, cfg = load("ncsn_toy", device)
    sigmas = sigmas_of(cfg).to(device)
    levels = max(1, steps // cfg.sampler.n_steps_each)
    if levels > len(sigmas):
        total = len(sigmas) * cfg.sampler.n_steps_each
        raise SystemExit(f"--chain-steps {steps} exceeds the shipped schedule's {total}")
    sigmas = sigmas[:levels]
    if exact:
        mix = two_gaussians(device=device)
        score = lambda x, s: mix.score(x, sigma=s)  # noqa: E731
    else:
        score = model
    g = torch.Generator(device=device).manual_seed(0)
    x0 = 16 * torch.rand(particles, 2, generator=g, device=device) - 8
    n_steps = levels * cfg.sampler.n_steps_each

    def run(n_each=cfg.sampler.n_steps_each):
        annealed_langevin_dynamics(score, x0, sigmas, cfg.sampler.eps, n_each, convention=cfg.sampler.convention,
                                   generator=g)

    times = _timed(run, repeats, device, warmup=lambda: run(1))
    return {"name": f"toy chain ({'exact' if exact else 'net'})", "unit": "particle-steps/s",
            "setting": f"{particles} chains x {n_steps} steps", "times_s": times,
            "rates": [particles * n_steps / t for t in times]}


def bench_digits_sampling(device, n: int, repeats: int) -> dict:
    from dlcourse import load
    from dlcourse.score import sample_ncsn

    model, cfg = load("ncsn_digits", device)
    g = torch.Generator(device=device).manual_seed(0)
    total = cfg.noise.num_levels * cfg.sampler.n_steps_each
    times = _timed(lambda: sample_ncsn(model, cfg, n, generator=g, device=device), repeats, device,
                   warmup=lambda: sample_ncsn(model, cfg, n, generator=g, device=device, n_steps_each=1))
    return {"name": "digits sampling", "unit": "images/s",
            "setting": f"{n} images, {cfg.noise.num_levels} levels x T={cfg.sampler.n_steps_each} = {total} steps "
                       f"+ denoise", "times_s": times, "rates": [n / t for t in times]}


def bench_digits_training(device, steps: int, repeats: int, bf16: bool, compile_: bool) -> dict:
    from dlcourse.data.images import load_images
    from dlcourse.score import FAMILY, ncsn_loss, resolve_config, sigmas_of
    from dlcourse.score.config import PRESETS

    cfg = PRESETS.get("digits")
    data, _ = load_images("digits", "train")
    cfg = resolve_config(cfg, data)
    sigmas = sigmas_of(cfg).to(device)
    torch.manual_seed(0)
    model = FAMILY.build_model(cfg).to(device)
    fwd = torch.compile(model) if compile_ else model
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    bs = cfg.train.batch_size
    data = data.to(device)
    g = torch.Generator(device=device).manual_seed(0)

    def run(steps=steps):
        for _ in range(steps):
            x = data[torch.randint(len(data), (bs,), generator=g, device=device)]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = ncsn_loss(fwd, x, sigmas)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()

    times = _timed(run, repeats, device, warmup=lambda: run(1) if not compile_ else run(3))
    nparams = sum(p.numel() for p in model.parameters())
    tags = [t for t, on in (("bf16", bf16), ("compile", compile_)) if on]
    return {"name": "digits training" + (f" ({', '.join(tags)})" if tags else ""), "unit": "images/s",
            "setting": f"U-Net {nparams / 1e6:.2f}M params, batch {bs}, {steps} steps", "times_s": times,
            "rates": [steps * bs / t for t in times]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: leave as is)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--particles", type=int, default=2048)
    p.add_argument("--chain-steps", type=int, default=300, help="steps of the toy chain (the first levels of the "
                   "shipped schedule, T=100 each)")
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--train-steps", type=int, default=5)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"device: {device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} CPU threads")

    rows = [bench_toy_chain(device, args.particles, args.chain_steps, args.repeats, exact=False),
            bench_toy_chain(device, args.particles, args.chain_steps, args.repeats, exact=True),
            bench_digits_sampling(device, args.images, args.repeats),
            bench_digits_training(device, args.train_steps, args.repeats, bf16=False, compile_=False)]
    if device.type == "cuda":
        rows.append(bench_digits_training(device, args.train_steps, args.repeats, bf16=True, compile_=False))
        rows.append(bench_digits_training(device, args.train_steps, args.repeats, bf16=True, compile_=True))

    w = max(len(r["name"]) for r in rows)
    print(f"\n{'benchmark':<{w}}  {'rate (each run)':>24}  {'unit':<17}  setting")
    for r in rows:
        rates = ", ".join(f"{x:,.0f}" if x >= 100 else f"{x:.2f}" for x in r["rates"])
        print(f"{r['name']:<{w}}  {rates:>24}  {r['unit']:<17}  {r['setting']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"device": str(device), "device_name": name, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
