"""28x28 image models against the score-SDE paper's claims, with error bars (Fashion-MNIST, CPU).

Quality is the figure of `dlcourse.quality`: the Fréchet distance on the shipped ``fashion_classifier``'s
penultimate features against the 10,000 real test images, and the classifier score of its predictions. Each
configuration draws ``--sets`` independent sets of ``--n`` samples; a figure is the mean over sets ± its standard
error (sd / sqrt(sets)). FID depends on n, so every row uses the same n, and the floors are taken at that n too.

    python benchmarks/image_bench.py --part floors models      # each shipped 28x28 model against real images
    python benchmarks/image_bench.py --part pc                 # VE: predictor-corrector vs predictor-only, equal NFE
    python benchmarks/image_bench.py --part floors pc --n 250 --sets 4 --record   # ... and record the pooled figures
    python benchmarks/image_bench.py --part bpd --record       # VP vs sub-VP test bits/dim, paired on the same images
    python benchmarks/image_bench.py --part nfe --model sde_fashion_vp   # quality against NFE (lecture 05's figure)

Parts:

- ``floors``: n real training images (what a perfect model's n samples score) and n images of uniform noise.
- ``models``: each model of ``--models`` (SDE models with the sampler of ``--sampler`` at ``--steps``); the final
  denoising step on and off, from the same chains (the chain is run without it, then Tweedie's step is applied to
  its last state, which is exactly what the sampler's ``denoise=True`` does), and whether its classifier score is
  within 15% of real images', with the per-set error bar. ``--record`` writes the SDE models' pooled figures.
- ``pc``: Song et al. (2021) Table 1's pattern at this scale: for the VE model, predictor-only with N steps against
  predictor-corrector with N/2 steps (one Langevin corrector step each), equal NFE, for each NFE of ``--nfe``;
  each with and without the final denoising step (the same chains). ``--record`` writes the figure of all sets
  pooled (sets x n samples, the n of the floors in the manifest when it is 1000) into the VE model's manifest
  entry, under the key ``dlcourse eval --quality --record`` uses, with the per-set standard errors.
- ``bpd``: Table 2's pattern: test bits/dim of the VP and sub-VP models (same architecture, same steps) on the same
  ``--bpd-n`` test images with the same dequantisation noise, through the probability-flow ODE from t = 1e-5
  (Hutchinson divergence); the paired difference has its own standard error. ``--record`` writes each model's
  figure (as ``dlcourse eval sde --bpd --record`` does) and the difference into the sub-VP entry. ``--subvp
  sde_fashion_ve`` pairs the VE model with VP the same way.
- ``nfe``: quality of one model's PC, predictor-only, ancestral and probability-flow samplers against NFE.

Each timing is taken once per set; the table prints seconds per set.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from dlcourse import load
from dlcourse.data.images import load_images
from dlcourse.score.config import NCSNConfig
from dlcourse.quality.metrics import features_and_logits, classifier_score, fid_from_features

SDE_SAMPLERS = {"pc": ("reverse_diffusion", "langevin"), "predictor": ("reverse_diffusion", "none"),
                "ancestral": ("ancestral", "none"), "pf": ("probability_flow", "none")}


class Judge:
    """The classifier, and the test set's features once."""

    def __init__(self, classifier: str) -> None:
        self.model, cfg = load(classifier, "cpu")
        self.model.eval()
        self.test, _ = load_images(cfg.data, "test")
        self.train, _ = load_images(cfg.data, "train")
        self.f_test, _ = features_and_logits(self.model, self.test)

    def features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return features_and_logits(self.model, images.clamp(0, 1))

    def score(self, f: torch.Tensor, logits: torch.Tensor) -> tuple[float, float]:
        return fid_from_features(f, self.f_test), classifier_score(logits)

    def __call__(self, images: torch.Tensor) -> tuple[float, float]:
        return self.score(*self.features(images))


def mean_se(values: list[float]) -> tuple[float, float]:
    m = sum(values) / len(values)
    if len(values) < 2:
        return m, float("nan")
    var = sum((v - m) ** 2 for v in values) / (len(values) - 1)
    return m, math.sqrt(var / len(values))


def fmt(values: list[float], digits: int = 2) -> str:
    m, se = mean_se(values)
    return f"{m:.{digits}f} ± {se:.{digits}f}"


def header() -> None:
    print(f"{'configuration':<42}{'NFE':>6}{'FID':>18}{'classifier score':>20}{'s/set':>8}")


def row(name: str, nfe, fids, scores, secs) -> None:
    print(f"{name:<42}{nfe!s:>6}{fmt(fids):>18}{fmt(scores):>20}{sum(secs) / len(secs):>8.0f}", flush=True)


def quality_sets(draw, judge, args) -> dict:
    """``args.sets`` sets of ``args.n`` samples from ``draw(m, generator) -> (raw, denoised, nfe)`` (images in
    [0, 1], the same chains without and with the final denoising step): FIDs and classifier scores of each set,
    and of all sets pooled (``out["pooled"][key]``: one figure of sets x n samples)."""
    out = {"raw": ([], []), "denoised": ([], []), "secs": [], "nfe": None, "pooled": {}}
    feats = {"raw": [], "denoised": []}
    for k in range(args.sets):
        g = torch.Generator().manual_seed(1000 * k + 7)
        start = time.perf_counter()
        batches = [draw(min(args.batch, args.n - b), g) for b in range(0, args.n, args.batch)]
        out["secs"].append(time.perf_counter() - start)
        out["nfe"] = batches[0][2]
        for key, i in (("raw", 0), ("denoised", 1)):
            f, logits = judge.features(torch.cat([batch[i] for batch in batches]))
            feats[key].append((f, logits))
            fid, cs = judge.score(f, logits)
            out[key][0].append(fid)
            out[key][1].append(cs)
    for key, parts in feats.items():
        out["pooled"][key] = judge.score(torch.cat([f for f, _ in parts]), torch.cat([lg for _, lg in parts]))
    return out


def sde_sets(model, cfg, judge, args, sampler: str, steps: int) -> dict:
    from dlcourse.sde.samplers import pc_sample, time_grid, tweedie_denoise

    pred, corr = SDE_SAMPLERS[sampler]
    t_last = time_grid(model.sde, steps)[0][-1]

    def draw(m, g):
        res = pc_sample(model.sde, model, (m, *judge.test.shape[1:]), predictor=pred, corrector=corr, snr=cfg.snr,
                        n_steps=steps, denoise=False, generator=g)
        t = t_last.expand(m)
        with torch.no_grad():  # Tweedie's step at the last time, as pc_sample(denoise=True) does
            den = tweedie_denoise(model.sde, res.x, model(res.x, t), t)
        return ((res.x + 1) / 2).clamp(0, 1), ((den + 1) / 2).clamp(0, 1), res.nfe

    return quality_sets(draw, judge, args)


def ncsn_sets(model, cfg, judge, args) -> dict:
    from dlcourse.score.family import sample_ncsn, sigmas_of

    sigma_last = float(sigmas_of(cfg)[-1])

    def draw(m, g):
        x = sample_ncsn(model, cfg, m, generator=g, denoise=False)
        with torch.no_grad():  # NCSNv2's final step x + σ_L² s(x, σ_L), as the sampler's denoise=True does
            d = x + sigma_last ** 2 * model(x, torch.full((m,), sigma_last))
        return x.clamp(0, 1), d.clamp(0, 1), cfg.noise.num_levels * cfg.sampler.n_steps_each

    return quality_sets(draw, judge, args)


def part_floors(judge, args) -> tuple[list[float], list[float]]:
    print(f"\n# floors and ceilings: n = {args.n}, {args.sets} sets")
    header()
    real, noise = ([], []), ([], [])
    for k in range(args.sets):
        g = torch.Generator().manual_seed(k)
        idx = torch.randperm(len(judge.train), generator=g)[:args.n]
        for store, images in ((real, judge.train[idx]), (noise, torch.rand((args.n, *judge.test.shape[1:]),
                                                                             generator=g))):
            fid, cs = judge(images)
            store[0].append(fid)
            store[1].append(cs)
    row("real training images", "", *real, [0.0])
    row("uniform noise", "", *noise, [0.0])
    _, all_logits = features_and_logits(judge.model, judge.test)
    print(f"{'all 10,000 real test images':<42}{'':>6}{'0 (itself)':>18}{classifier_score(all_logits):>20.2f}")
    return real


def part_models(judge, args, real) -> None:
    real_cs = mean_se(real[1])[0] if real else None
    print(f"\n# each model (NCSN: its annealed Langevin sampler; SDEs: {args.sampler}, {args.steps} steps), "
          f"n = {args.n}, {args.sets} sets")
    header()
    for name in args.models:
        model, cfg = load(name, "cpu")
        model.eval()
        is_sde = not isinstance(cfg, NCSNConfig)
        if is_sde:
            res = sde_sets(model, cfg, judge, args, args.sampler, args.steps)
        else:
            res = ncsn_sets(model, cfg, judge, args)
        for key in ("raw", "denoised"):
            row(f"{name} ({'final denoising' if key == 'denoised' else 'no final denoising'})",
                res["nfe"] + (key == "denoised"), *res[key], res["secs"])
        if real_cs:
            cs, se = mean_se(res["denoised"][1])
            bar = 0.85 * real_cs
            print(f"    classifier score {cs:.2f} ± {se:.2f} is {abs(cs / real_cs - 1):.0%} from real images' "
                  f"{real_cs:.2f} ({'within' if abs(cs / real_cs - 1) <= 0.15 else 'NOT within'} 15%: "
                  f"{(cs - bar) / se:+.1f} standard errors from the bar {bar:.2f})")
        if args.record and is_sde:
            record_pooled(name, args.sampler, res, args.n)


def part_pc(judge, args) -> None:
    model, cfg = load(args.ve, "cpu")
    model.eval()
    print(f"\n# {args.ve}: predictor-only against predictor-corrector at equal NFE (snr {cfg.snr}), n = {args.n}, "
          f"{args.sets} sets, final denoising on")
    header()
    for nfe in args.nfe:
        for label, sampler, steps in (("predictor only (reverse diffusion)", "predictor", nfe),
                                      ("predictor-corrector (RD + Langevin)", "pc", nfe // 2)):
            res = sde_sets(model, cfg, judge, args, sampler, steps)
            row(f"{label}, {steps} steps", res["nfe"] + 1, *res["denoised"], res["secs"])
            row("    the same chains, no final denoising", res["nfe"], *res["raw"], res["secs"])
            if args.record:
                record_pooled(args.ve, sampler, res, args.n)


def record_pooled(name: str, sampler: str, res: dict, n_per_set: int) -> None:
    """Write the pooled figure of every set (sets x n samples) into the manifest entry of ``name``, under the key
    that ``dlcourse eval --quality --record`` uses for the same sampler and NFE, with this command."""
    import shlex
    import sys

    from dlcourse.checkpoint import update_manifest_metrics

    for key, plain in (("denoised", ""), ("raw", ", no final denoising")):
        nfe = res["nfe"] + (key == "denoised")
        fid, score = res["pooled"][key]
        fids, scores = res[key]
        (fid_mean, fid_se), (_, score_se) = mean_se(fids), mean_se(scores)
        metrics = {"fid": fid, "classifier_score": score, "n": float(len(fids) * n_per_set), "sets": float(len(fids)),
                   "fid_per_set": fid_mean, "fid_per_set_se": fid_se, "classifier_score_per_set_se": score_se,
                   "sampler": f"{sampler}{plain}, NFE {nfe}"}
        command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
        update_manifest_metrics(name, f"quality ({metrics['sampler']})", metrics, command)


def part_nfe(judge, args) -> None:
    model, cfg = load(args.model, "cpu")
    model.eval()
    print(f"\n# {args.model}: quality against NFE, n = {args.n}, {args.sets} sets, final denoising on")
    header()
    for nfe in args.nfe:
        for sampler in ("predictor", "ancestral", "pf", "pc"):
            if sampler == "ancestral" and cfg.sde == "subvp":
                continue
            steps = nfe // 2 if sampler == "pc" else nfe
            res = sde_sets(model, cfg, judge, args, sampler, steps)
            row(f"{sampler}, {steps} steps", res["nfe"] + 1, *res["denoised"], res["secs"])


def part_bpd(args) -> None:
    import shlex
    import sys

    from dlcourse.checkpoint import update_manifest_metrics
    from dlcourse.sde.family import evaluate_bpd

    print(f"\n# test bits/dim through the probability-flow ODE from t = 1e-5 (Hutchinson), first {args.bpd_n} test "
          "images, the same dequantisation noise and probes for both models")
    print(f"{'model':<28}{'bits/dim':>20}{'mean NFE':>10}{'seconds':>10}")
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    per_image = {}
    for name in (args.vp, args.subvp):
        model, cfg = load(name, "cpu")
        model.eval()
        res = evaluate_bpd(model, cfg, n=args.bpd_n, eps=1e-5, seed=0, batch_size=args.batch, per_image=True)
        per_image[name] = res.pop("per_image").double()
        print(f"{name:<28}{res['test_bpd']:>11.4f} ± {res['test_bpd_se']:.4f}{res['nfe']:>10.0f}"
              f"{res['seconds']:>10.0f}", flush=True)
        if args.record:  # the key and figures `dlcourse eval sde --bpd --record` writes
            update_manifest_metrics(name, "bpd", res, command)
    d = per_image[args.subvp] - per_image[args.vp]
    diff, se = float(d.mean()), float(d.std() / len(d) ** 0.5)
    print(f"{args.subvp + ' minus ' + args.vp:<28}{diff:>11.4f} ± {se:.4f} (paired)")
    if args.record:
        update_manifest_metrics(args.subvp, f"bpd minus {args.vp} (paired)",
                                {"difference": diff, "difference_se": se, "n": float(len(d))}, command)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", nargs="+", default=["floors", "models"],
                    choices=["floors", "models", "pc", "bpd", "nfe"])
    ap.add_argument("--n", type=int, default=500, help="samples per set (default: %(default)s)")
    ap.add_argument("--sets", type=int, default=4, help="independent sets per configuration (default: %(default)s)")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--steps", type=int, default=100, help="sampler steps for the SDE models in --part models")
    ap.add_argument("--sampler", choices=sorted(SDE_SAMPLERS), default="pc",
                    help="the SDE models' sampler in --part models (default: %(default)s)")
    ap.add_argument("--nfe", type=int, nargs="+", default=[100], help="NFE budgets for --part pc and nfe")
    ap.add_argument("--models", nargs="+", default=["ncsn_fashion", "sde_fashion_vp", "sde_fashion_subvp",
                                                     "sde_fashion_ve"])
    ap.add_argument("--model", default="sde_fashion_vp", help="the model of --part nfe")
    ap.add_argument("--ve", default="sde_fashion_ve")
    ap.add_argument("--vp", default="sde_fashion_vp")
    ap.add_argument("--subvp", default="sde_fashion_subvp",
                    help="--part bpd: the model compared with --vp (its paired difference goes into its entry)")
    ap.add_argument("--bpd-n", type=int, default=200, help="test images for --part bpd")
    ap.add_argument("--classifier", default="fashion_classifier")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--record", action="store_true",
                    help="--part pc and models: write the pooled figures (sets x n samples) into the SDE models' "
                         "manifest entries; "
                         "--part bpd: each model's test bits/dim and the paired difference into their entries")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# {torch.get_num_threads()} thread(s); judge: {args.classifier}")
    judge = Judge(args.classifier) if set(args.part) - {"bpd"} else None
    real = part_floors(judge, args) if {"floors", "models"} & set(args.part) else None
    if "models" in args.part:
        part_models(judge, args, real)
    if "pc" in args.part:
        part_pc(judge, args)
    if "nfe" in args.part:
        part_nfe(judge, args)
    if "bpd" in args.part:
        part_bpd(args)


if __name__ == "__main__":
    main()
