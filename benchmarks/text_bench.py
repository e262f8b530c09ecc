"""Benchmarks of the text models (issue 6): what the tests cannot afford.

1. ``markov``: on synthetic text from a character Markov chain with a known entropy rate, train the AR model, MDLM,
   SEDD-absorbing and SEDD-uniform with the same small transformer and budget, and report each one's held-out bits
   per character (the diffusion models' NELBO bound, the AR model's exact value) beside the chain's entropy: every
   model must land above it, and the papers' text8 ordering is AR < masked < uniform.
2. ``sampling``: with the shipped checkpoints (``mdlm_prose``, ``sedd_prose``, ``ar_prose``, the judge
   ``ar_judge_prose``; or ``--checkpoints DIR`` holding ``{name}_prose.safetensors``), tokens per second of each
   sampler at each step count, beside the AR model with and without its KV cache, and the judge's perplexity per
   character of the samples (lower = more like the judge's training text; the judge is a larger AR model that
   none of the samplers is, so it favours none of them). On the
   absorbing graph with the log-linear schedule, SEDD's Euler and Tweedie steps are the same distribution
   (e^{σ̄_t - σ̄_s} - 1 = σ(t)(t - s) exactly), so they draw identical samples from the same generator.
3. ``throughput``: training tokens per second of each model (on a GPU also with bf16 and torch.compile).
4. ``frontier``: the editor-vs-typewriter frontier on the exact test bed (`dlcourse.discrete.frontier`): for AR
   with its KV cache, MDLM ancestral and with confidence decoding, BD3 with blocks of 4, 8, 16 and several steps
   per block, and SEDD's Tweedie sampler, tokens/s at batch 1 and 16 (each timed twice) against the exact NLL of
   their samples under the source and their diversity; then the roofline fitted on this machine, its check against
   the measured CPU points, and its prediction for an H100 / H200. Models: the shipped ``*_topics`` checkpoints, or
   ``--checkpoints DIR`` holding run folders ``ar-topics``, ``mdlm-topics``, ``bd3-topics-b{4,8,16}``, ``sedd-topics``.
   With ``--bed prose`` (the default runs both) the same frontier on prose with the four ``*_prose`` models (BD3
   with blocks of 8), scored by the judge ``ar_judge_prose`` (perplexity per character) and by distinct 4-grams
   relative to held-out text of the test split.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/text_bench.py --part markov sampling throughput
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/text_bench.py --part frontier --out runs/frontier.json
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/text_bench.py --part frontier --bed prose --out runs/frontier_prose.json
    .venv/bin/python benchmarks/text_bench.py --device cuda --part sampling throughput

Numbers go to stdout as Markdown tables and, with ``--out FILE``, to a JSON file.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import torch

from dlcourse.config import TrainConfig
from dlcourse.data.text import MASK_ID, VOCAB_SIZE
from dlcourse.discrete.evaluate import ar_bpc, generative_perplexity, tokens_per_second
from dlcourse.discrete.config import ModelConfig, NoiseConfig, TextConfig
from dlcourse.discrete.data import eval_windows, markov_chain
from dlcourse.discrete.family import evaluate_bpc, generate
from dlcourse.registry import family
from dlcourse.train import fit
from dlcourse.utils import count_parameters, get_device, seed_all

MARKOV_MODELS = [("ar", "ar", "absorbing"), ("mdlm", "mdlm", "absorbing"), ("sedd-absorbing", "sedd", "absorbing"),
                 ("sedd-uniform", "sedd", "uniform")]


def _table(rows: list[dict], cols: list[str]) -> str:
    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def markov_config(kind: str, graph: str, steps: int, device: torch.device) -> TextConfig:
    """The chain of the ``toy`` presets (8 symbols, Dirichlet 0.3) and one small transformer for every model."""
    return TextConfig(kind=kind, data="markov", seq_len=32, eval_windows=1024, eval_times=16,
                      model=ModelConfig(dim=64, n_layers=2, n_heads=4, cond_dim=32, time_conditioning=kind == "sedd"),
                      noise=NoiseConfig(graph=graph, schedule="loglinear" if graph == "absorbing" else "geometric"),
                      train=TrainConfig(steps=steps, batch_size=64, lr=2e-3, warmup=100, ema_decay=0.995,
                                        log_every=100, ckpt_every=10**9, progress=False,
                                        bf16=device.type == "cuda"))


def bench_markov(steps: int, device: torch.device) -> list[dict]:
    rows = []
    for name, kind, graph in MARKOV_MODELS:
        cfg = markov_config(kind, graph, steps, device)
        fam = family(kind)
        seed_all(0)
        model = fam.build_model(cfg)
        start = time.perf_counter()
        result = fit(model, fam.loss(cfg), fam.train_data(cfg), cfg.train, None, kind=kind, device=device)
        seconds = time.perf_counter() - start
        ev = evaluate_bpc(result.ema_model, cfg, eval_windows(cfg).to(device))
        entropy = markov_chain(cfg).window_entropy(cfg.seq_len)
        rows.append({"model": name, "params": count_parameters(model), "steps": steps, "train_s": round(seconds, 1),
                     "bpc": ev["bpc"], "stderr": ev.get("stderr", 0.0), "entropy": entropy,
                     "gap": ev["bpc"] - entropy})
        print(f"markov {name}: {ev['bpc']:.4f} bpc (entropy {entropy:.4f}) in {seconds:.0f} s", flush=True)
    return rows


JUDGE = "ar_judge_prose"  # the larger AR model that scores every prose sampler's text, its own siblings' included


def _load(kind: str, checkpoints: Path | None, device: torch.device):
    src = checkpoints / f"{kind}_prose.safetensors" if checkpoints else f"{kind}_prose"
    return family(kind).load(src, device)


def _load_judge(checkpoints: Path | None, device: torch.device):
    return family("ar").load(checkpoints / f"{JUDGE}.safetensors" if checkpoints else JUDGE, device)[0]


def bench_sampling(device: torch.device, checkpoints: Path | None, length: int, batch: int,
                   step_counts: list[int], judge_samples: int) -> list[dict]:
    ar, ar_cfg = _load("ar", checkpoints, device)
    judge_model = _load_judge(checkpoints, device)
    rows = []

    def judge(kind_cfg, model, n, **kw):
        """The judge's perplexity per character of n samples (drawn in batches of ``batch``)."""
        g = torch.Generator(device=device).manual_seed(1)
        toks = torch.cat([generate(model, kind_cfg, batch, length, generator=g, **kw).tokens
                          for _ in range(math.ceil(n / batch))])
        return generative_perplexity(judge_model, toks[:n], MASK_ID)

    for use_cache in (True, False):
        g = torch.Generator(device=device).manual_seed(0)
        from dlcourse.discrete.samplers import ar_sample

        rate, _ = tokens_per_second(lambda: ar_sample(ar, batch, length, generator=g, use_cache=use_cache).tokens)
        rows.append({"sampler": f"ar ({'KV cache' if use_cache else 'no cache'})", "steps": length,
                     "nfe": length, "tokens_per_s": rate,
                     "ar_ppl": judge(ar_cfg, ar, judge_samples) if use_cache else float("nan")})
        print(rows[-1], flush=True)

    mdlm, mdlm_cfg = _load("mdlm", checkpoints, device)
    sedd, sedd_cfg = _load("sedd", checkpoints, device)
    for steps in step_counts:
        for name, model, cfg, kw in [("mdlm (cache)", mdlm, mdlm_cfg, {"cache": True}),
                                     ("mdlm (no cache)", mdlm, mdlm_cfg, {"cache": False}),
                                     ("sedd tweedie", sedd, sedd_cfg, {"method": "tweedie"}),
                                     ("sedd euler", sedd, sedd_cfg, {"method": "euler"})]:
            g = torch.Generator(device=device).manual_seed(0)
            nfe = []

            def run():
                out = generate(model, cfg, batch, length, steps, generator=g, **kw)
                nfe.append(out.nfe)
                return out.tokens

            rate, _ = tokens_per_second(run)
            ppl = judge(cfg, model, judge_samples, steps=steps, **kw) if "no cache" not in name else float("nan")
            rows.append({"sampler": name, "steps": steps, "nfe": nfe[-1], "tokens_per_s": rate, "ar_ppl": ppl})
            print(rows[-1], flush=True)

    # the judge's perplexity of real held-out text: the floor a perfect sampler would reach
    held_out = eval_windows(ar_cfg, 256).to(device)
    rows.append({"sampler": "held-out text", "steps": "", "nfe": "", "tokens_per_s": float("nan"),
                 "ar_ppl": 2 ** ar_bpc(judge_model, held_out, MASK_ID)})
    return rows


def bench_throughput(device: torch.device, checkpoints: Path | None, steps: int) -> list[dict]:
    rows = []
    variants = [(False, False)] + ([(True, False), (True, True)] if device.type == "cuda" else [])
    for kind in ("ar", "mdlm", "sedd"):
        _, cfg = _load(kind, checkpoints, device)
        for bf16, compiled in variants:
            cfg = copy.deepcopy(cfg)
            cfg.data = "markov"  # synthetic batches of the same shape: measures the model, not the data loader
            cfg.markov_symbols = VOCAB_SIZE
            cfg.train.steps, cfg.train.bf16, cfg.train.compile, cfg.train.progress = steps, bf16, compiled, False
            fam = family(kind)
            seed_all(0)
            model = fam.build_model(cfg)
            warm = copy.deepcopy(cfg.train)
            warm.steps = 3
            fit(copy.deepcopy(model), fam.loss(cfg), fam.train_data(cfg), warm, None, kind=kind, device=device)
            start = time.perf_counter()
            fit(model, fam.loss(cfg), fam.train_data(cfg), cfg.train, None, kind=kind, device=device)
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            rows.append({"model": kind, "bf16": bf16, "compile": compiled, "batch": cfg.train.batch_size,
                         "seq_len": cfg.seq_len,
                         "tokens_per_s": steps * cfg.train.batch_size * cfg.seq_len / seconds})
            print(rows[-1], flush=True)
    return rows


TESTBED_MODELS = {"ar": "ar_topics", "mdlm": "mdlm_topics", "bd3-b4": "bd3_topics_b4", "bd3-b8": "bd3_topics_b8",
                  "bd3-b16": "bd3_topics_b16", "sedd": "sedd_topics"}
# prose: the four shipped models of one size and budget (bd3 with blocks of 8, the cpu preset) and the judge
PROSE_MODELS = {"ar": "ar_prose", "mdlm": "mdlm_prose", "bd3-b8": "bd3_prose", "sedd": "sedd_prose"}


def _load_named(names: dict, checkpoints: Path | None, device, as_file: bool) -> dict:
    """``kind -> (model, cfg)`` for the shipped ``names``, or from ``--checkpoints DIR`` (run folders named with
    dashes for the test bed, ``NAME.safetensors`` exports for prose)."""
    from dlcourse import load

    models = {}
    for kind, name in names.items():
        src = (checkpoints / (f"{name}.safetensors" if as_file else name.replace("_", "-"))) if checkpoints else name
        try:
            models[kind] = load(src, device)
        except Exception as exc:  # a missing model leaves its samplers out of the table, said in one line
            print(f"frontier: no {kind} model ({exc})", flush=True)
    return models


def _measure_frontier(models: dict, specs, batches: list[int], n_quality: int, score, rows: list[dict]) -> dict:
    """Every sampler of ``specs`` whose model is present, at every batch size; then the roofline fitted on the AR
    network (every model here has its size), checked against the measured points, and its GPU prediction."""
    from dlcourse.discrete.frontier import Roofline, calibrate, measure_point

    for spec in specs:
        if spec.kind not in models:
            continue
        model, cfg = models[spec.kind]
        for batch in batches:
            rows.append(measure_point(spec, model, cfg, batch, n_quality, score))
            print(json.dumps(rows[-1]), flush=True)
    ar_model, ar_cfg = models["ar"]
    length = ar_cfg.seq_len
    params = sum(p.numel() for p in ar_model.parameters())
    roof = Roofline(params, ar_cfg.model.n_layers, ar_cfg.model.dim).fit(*calibrate(ar_model, length))
    predictions = []
    for spec in specs:
        for batch in batches:
            point = [r for r in rows if r.get("sampler") == spec.label and r.get("batch") == batch]
            measured = [r["tokens_per_s"] for r in point]
            if "threshold" in spec.options and point:  # as many calls as the threshold took here
                spec = type(spec)(spec.label, spec.kind, {"steps": point[0]["nfe"]})
            predictions.append({"sampler": spec.label, "batch": batch,
                                "cpu_predicted": roof.tokens_per_second(spec, length, batch),
                                "cpu_measured": measured[0] if measured else float("nan"),
                                **{f"{gpu}_predicted": roof.tokens_per_second(spec, length, batch, gpu)
                                   for gpu in ("H100", "H200")}})
    return {"points": rows, "roofline": {"overhead_s": roof.a, "flop_per_s": 1 / roof.b, "params": params},
            "predictions": predictions}


def bench_frontier(device, checkpoints: Path | None, batches: list[int], n_quality: int) -> dict:
    """The exact test bed: each sampler's samples scored by their exact NLL under the source."""
    from dlcourse.discrete.frontier import standard_samplers
    from dlcourse.discrete.testbed import TopicLanguage, distinct_ngrams

    lang = TopicLanguage.random(seed=0)
    models = _load_named(TESTBED_MODELS, checkpoints, device, as_file=False)
    length = models["ar"][1].seq_len
    real = lang.sample(n_quality, length, torch.Generator().manual_seed(7))
    real_distinct = distinct_ngrams(real)

    def score(tokens):
        return {"nll_bits": lang.nll(tokens), "distinct4": distinct_ngrams(tokens) / real_distinct}

    floor, floor_se = lang.window_nll(length)
    rows = [{"sampler": "real text (the floor)", "nll_bits": floor, "nll_se": floor_se, "distinct4": 1.0}]
    return _measure_frontier(models, standard_samplers(length), batches, n_quality, score, rows)


def bench_frontier_prose(device, checkpoints: Path | None, batches: list[int], n_quality: int) -> dict:
    """Prose: each sampler's samples scored by the judge (``ar_judge_prose``, 5x the parameters of the models it
    judges, trained longer), as perplexity per character, and their distinct 4-grams relative to held-out text."""
    from dlcourse.discrete.frontier import standard_samplers
    from dlcourse.discrete.testbed import distinct_ngrams

    models = _load_named(PROSE_MODELS, checkpoints, device, as_file=True)
    judge = _load_judge(checkpoints, device)  # without it there is no quality column: a missing one is an error
    cfg = models["ar"][1]
    real = eval_windows(cfg, n_quality, split="test").to(device)  # text no model has trained or been scored on
    real_distinct = distinct_ngrams(real.cpu())

    def score(tokens):
        return {"judge_ppl": generative_perplexity(judge, tokens.to(device), MASK_ID),
                "distinct4": distinct_ngrams(tokens) / real_distinct}

    rows = [{"sampler": "held-out text (the floor)", **score(real.cpu())}]
    bd3 = tuple(int(k.split("b")[-1]) for k in models if k.startswith("bd3"))
    return _measure_frontier(models, standard_samplers(cfg.seq_len, bd3_blocks=bd3), batches, n_quality, score, rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--part", nargs="+", default=["markov", "sampling", "throughput"],
                   choices=["markov", "sampling", "throughput", "frontier"])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16], help="frontier batch sizes")
    p.add_argument("--bed", nargs="+", default=["testbed", "prose"], choices=["testbed", "prose"],
                   help="frontier: on the exact test bed (true NLL) and/or on prose (the judge's perplexity)")
    p.add_argument("--quality-samples", type=int, default=256, help="frontier: samples scored per sampler")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: %(default)s)")
    p.add_argument("--markov-steps", type=int, default=1500)
    p.add_argument("--checkpoints", type=Path, default=None,
                   help="folder with {ar,mdlm,sedd}_prose.safetensors (default: the shipped ones)")
    p.add_argument("--length", type=int, default=64, help="characters per sample (default: %(default)s)")
    p.add_argument("--batch", type=int, default=16, help="samples per sampler call (default: %(default)s)")
    p.add_argument("--steps", type=int, nargs="+", default=[8, 16, 32, 64, 128, 256])
    p.add_argument("--judge-samples", type=int, default=64)
    p.add_argument("--throughput-steps", type=int, default=30)
    p.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = get_device(args.device)
    results: dict = {"device": str(device), "threads": args.threads, "torch": torch.__version__}
    if device.type == "cuda":
        results["gpu"] = torch.cuda.get_device_name(device)
    if "markov" in args.part:
        results["markov"] = bench_markov(args.markov_steps, device)
        print("\n" + _table(results["markov"], ["model", "params", "steps", "train_s", "bpc", "stderr", "entropy",
                                                 "gap"]) + "\n", flush=True)
    if "sampling" in args.part:
        results["sampling"] = bench_sampling(device, args.checkpoints, args.length, args.batch, args.steps,
                                             args.judge_samples)
        print("\n" + _table(results["sampling"], ["sampler", "steps", "nfe", "tokens_per_s", "ar_ppl"]) + "\n",
              flush=True)
    if "throughput" in args.part:
        results["throughput"] = bench_throughput(device, args.checkpoints, args.throughput_steps)
        print("\n" + _table(results["throughput"], ["model", "bf16", "compile", "batch", "seq_len", "tokens_per_s"]),
              flush=True)
    for bed in args.bed if "frontier" in args.part else []:
        key, bench, quality = {"testbed": ("frontier", bench_frontier, "nll_bits"),
                               "prose": ("frontier_prose", bench_frontier_prose, "judge_ppl")}[bed]
        results[key] = bench(device, args.checkpoints, args.batches, args.quality_samples)
        print("\n" + _table(results[key]["points"], ["sampler", "batch", "nfe", "tokens_per_s", quality,
                                                     "distinct4"]) + "\n", flush=True)
        print(_table(results[key]["predictions"], ["sampler", "batch", "cpu_measured", "cpu_predicted",
                                                   "H100_predicted", "H200_predicted"]), flush=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
