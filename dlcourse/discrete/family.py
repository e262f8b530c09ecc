"""The text families ``mdlm``, ``sedd`` and ``ar``: one config, presets, ``dlcourse train`` and ``dlcourse sample``.

    dlcourse train mdlm --preset toy --out runs/mdlm-toy                  # a character Markov chain, minutes on a CPU
    dlcourse train sedd --preset cpu --data ../shared/data/english-prose-text8.txt.gz --out runs/sedd-cpu
    dlcourse train ar --preset text8 --device cuda --out runs/ar-text8    # the papers' 12-layer, 256-character setting
    dlcourse sample mdlm --checkpoint mdlm_prose --n 4 --steps 128 --prefix "the " --suffix " of the"

This module holds the shared code and the ``mdlm`` family; `family_sedd` and `family_ar` add the other two.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import Presets, TrainConfig, config_from_dict
from ..data.text import MASK_ID, VOCAB_SIZE, decode
from ..errors import ConfigError
from .graphs import Graph, make_graph
from .markov import MarkovChain
from .schedules import Schedule, make_schedule

__all__ = ["ModelConfig", "NoiseConfig", "SamplerConfig", "TextConfig", "KINDS", "build_model", "build_noise",
           "make_loss", "make_sampler", "load_text_split", "eval_windows", "evaluate_bpc", "train",
           "load_text_model", "generate", "PRESETS", "FAMILY"]

KINDS = ("mdlm", "sedd", "ar")


@dataclass
class ModelConfig:
    """The transformer (`dlcourse.nn.transformer.Transformer`)."""

    #: width of the residual stream
    dim: int = 128
    #: number of transformer blocks
    n_layers: int = 4
    #: attention heads
    n_heads: int = 4
    #: MLP width as a multiple of dim
    mlp_ratio: int = 4
    #: dropout in the blocks
    dropout: float = 0.0
    #: condition on the noise level σ̄ with adaLN (always off for ar)
    time_conditioning: bool = True
    #: width of the σ̄ embedding
    cond_dim: int = 64
    #: fused scaled_dot_product_attention (False: the written-out softmax)
    fused: bool = True


@dataclass
class NoiseConfig:
    """The forward process (ignored by ar)."""

    #: "absorbing" (mdlm must use it) or "uniform"
    graph: str = "absorbing"
    #: "loglinear" or "geometric"
    schedule: str = "loglinear"
    #: log-linear: α_1 = eps, the fraction of tokens still clean at t = 1
    eps: float = 1e-3
    #: geometric: σ̄(0)
    sigma_min: float = 1e-4
    #: geometric: σ̄(1)
    sigma_max: float = 20.0


@dataclass
class SamplerConfig:
    """Defaults of ``dlcourse sample`` and of the end-of-training samples."""

    #: reverse steps (diffusion models)
    steps: int = 128
    #: sedd: "tweedie" or "euler"
    method: str = "tweedie"
    #: mdlm: reuse the network's output over unchanged steps (exact without time conditioning)
    cache: bool = True


@dataclass
class TextConfig:
    """A whole text run: which model, which data, the network, the noise, the sampler and the training loop."""

    #: "mdlm", "sedd" or "ar"
    kind: str = "mdlm"
    #: "markov" (a synthetic character chain with a known entropy rate), "text8", or the path of a text file
    data: str = "markov"
    #: markov: number of symbols (the first characters of the alphabet)
    markov_symbols: int = 8
    #: markov: Dirichlet concentration of the transition rows (smaller: lower entropy rate)
    markov_concentration: float = 0.3
    #: markov: seed of the chain itself
    markov_seed: int = 0
    #: a local text file: shuffle chunks of this many characters (seed 0) before the 90/5/5 split, so held-out text
    #: comes from the whole file, not its last pages (0: the contiguous split; text8 always uses its standard split)
    shuffle_chunk: int = 0
    #: characters per training window
    seq_len: int = 32
    #: windows of held-out data for the bits-per-character evaluation after training (0: skip)
    eval_windows: int = 256
    #: t draws per window in the diffusion bound's Monte Carlo estimate
    eval_times: int = 8
    #: the network
    model: ModelConfig = field(default_factory=ModelConfig)
    #: the forward process
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    #: the sampler
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    #: the shared training loop
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.kind == "mdlm" and self.noise.graph != "absorbing":
            raise ConfigError("mdlm is masked diffusion: noise.graph must be 'absorbing' (use sedd for uniform)")
        if self.noise.graph not in ("absorbing", "uniform") or self.noise.schedule not in ("loglinear", "geometric"):
            raise ConfigError(f"unknown noise {self.noise.graph!r} / {self.noise.schedule!r}")
        if self.sampler.method not in ("tweedie", "euler"):
            raise ConfigError(f"sampler.method must be tweedie or euler, got {self.sampler.method!r}")
        if self.seq_len < 2:
            raise ConfigError(f"seq_len must be at least 2, got {self.seq_len}")
        if self.shuffle_chunk < 0:
            raise ConfigError(f"shuffle_chunk must be >= 0, got {self.shuffle_chunk}")


# ---------------------------------------------------------------------------------------------------------------
# presets: plain values
# ---------------------------------------------------------------------------------------------------------------


def _toy(kind: str, graph: str = "absorbing") -> TextConfig:
    # The Markov chain of the tests at a size that trains in a few CPU minutes.
    return TextConfig(kind=kind, data="markov", seq_len=32, eval_windows=512,
                      model=ModelConfig(dim=128, n_layers=3, n_heads=4, time_conditioning=kind == "sedd"),
                      noise=NoiseConfig(graph=graph, schedule="loglinear" if graph == "absorbing" else "geometric"),
                      sampler=SamplerConfig(steps=32),
                      train=TrainConfig(steps=3000, batch_size=128, lr=1e-3, warmup=100, ema_decay=0.999,
                                        log_every=100, ckpt_every=1000))


def _cpu(kind: str, graph: str = "absorbing") -> TextConfig:
    # The shipped checkpoints: ~0.6M parameters (~2.5 MB) over 64-character windows of a text8-style corpus,
    # 1500 steps of 32 windows: about ten minutes on one (shared) CPU thread.
    return TextConfig(kind=kind, data="text8", seq_len=64, eval_windows=512, eval_times=8, shuffle_chunk=10_000,
                      model=ModelConfig(dim=128, n_layers=3, n_heads=4, time_conditioning=kind == "sedd", cond_dim=64),
                      noise=NoiseConfig(graph=graph, schedule="loglinear" if graph == "absorbing" else "geometric"),
                      sampler=SamplerConfig(steps=64),
                      train=TrainConfig(steps=1500, batch_size=32, lr=2e-3, warmup=100, ema_decay=0.995,
                                        log_every=50, ckpt_every=500))


def _text8(kind: str, graph: str = "absorbing") -> TextConfig:
    # The papers' text8 setting (SEDD Section 5 / MDLM Section 4.1 and D3PM before them): a 12-layer, 768-wide,
    # 12-head transformer (~85M parameters) over 256-character chunks, batch 512, Adam 3e-4 with 2500 warm-up steps,
    # EMA 0.9999, dropout 0.1, 1M steps, bf16 on a GPU. MDLM drops the time conditioning; SEDD keeps it.
    return TextConfig(kind=kind, data="text8", seq_len=256, eval_windows=2048, eval_times=4,
                      model=ModelConfig(dim=768, n_layers=12, n_heads=12, dropout=0.1, cond_dim=128,
                                        time_conditioning=kind == "sedd"),
                      noise=NoiseConfig(graph=graph, schedule="loglinear" if graph == "absorbing" else "geometric"),
                      sampler=SamplerConfig(steps=256),
                      train=TrainConfig(steps=1_000_000, batch_size=512, lr=3e-4, warmup=2500, ema_decay=0.9999,
                                        grad_clip=1.0, log_every=100, ckpt_every=10000, compile=True))


PRESETS: Presets[TextConfig] = Presets("mdlm", toy=_toy("mdlm"), cpu=_cpu("mdlm"), text8=_text8("mdlm"))


# ---------------------------------------------------------------------------------------------------------------
# data, model, noise, loss
# ---------------------------------------------------------------------------------------------------------------


def markov_chain(cfg: TextConfig) -> MarkovChain:
    """The synthetic chain of a ``data="markov"`` config."""
    return MarkovChain.random(cfg.markov_symbols, cfg.markov_concentration, cfg.markov_seed)


def build_model(cfg: TextConfig):
    """The untrained `Transformer` of ``cfg``: 28 input ids (characters + mask/start), 27 outputs."""
    from ..nn.transformer import Transformer

    m = cfg.model
    return Transformer(VOCAB_SIZE + 1, VOCAB_SIZE, m.dim, m.n_layers, m.n_heads, m.mlp_ratio, m.dropout,
                       causal=cfg.kind == "ar", time_conditioning=m.time_conditioning and cfg.kind != "ar",
                       cond_dim=m.cond_dim, fused=m.fused)


def build_noise(cfg: TextConfig) -> tuple[Graph, Schedule]:
    """The graph and schedule of ``cfg``."""
    n = cfg.noise
    return make_graph(n.graph, VOCAB_SIZE), make_schedule(n.schedule, n.eps, n.sigma_min, n.sigma_max)


def make_loss(cfg: TextConfig):
    """``loss_fn(model, batch (B, L)) -> (loss, metrics)`` for `dlcourse.train.fit`."""
    from .losses import ar_loss, mdlm_loss, sedd_loss

    if cfg.kind == "ar":
        return lambda model, x: ar_loss(model, x, MASK_ID)
    graph, schedule = build_noise(cfg)
    fn = mdlm_loss if cfg.kind == "mdlm" else sedd_loss
    return lambda model, x: fn(model, x, schedule, graph)


def make_sampler(cfg: TextConfig):
    """``sampler(generator) -> (B, L)`` training windows."""
    if cfg.data == "markov":
        chain = markov_chain(cfg)
        return lambda generator: chain.sample(cfg.train.batch_size, cfg.seq_len, generator)
    from ..data.text import ChunkSampler

    return ChunkSampler(load_text_split(cfg, "train"), cfg.seq_len, cfg.train.batch_size)


def _decompressed(path: Path) -> Path:
    """A ``.gz`` text file unpacked once into ``data_root()/sources/`` (atomically); other paths as they are."""
    import gzip
    import os
    import shutil
    import tempfile

    from ..data.paths import data_root

    if path.suffix != ".gz":
        return path
    folder = data_root() / "sources"
    target = folder / path.with_suffix("").name
    if target.is_file() and target.stat().st_mtime >= path.stat().st_mtime:
        return target
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, gzip.open(path, "rb") as src:
            shutil.copyfileobj(src, out, 1 << 22)
        os.replace(tmp, target)
    except (OSError, EOFError) as exc:
        raise ConfigError(f"cannot decompress {path}: {exc}") from exc
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target


def load_text_split(cfg: TextConfig, split: str):
    """The token ids (uint8 memmap) of ``split`` of ``cfg.data`` ("text8" or a text file, possibly ``.gz``),
    prepared by `dlcourse.data.text.prepare_corpus` (normalised like text8 if needed; see ``shuffle_chunk``)."""
    from ..data.text import load_split

    if cfg.data == "text8":
        return load_split("text8", split)
    source = _decompressed(Path(cfg.data).expanduser())
    return load_split(source, split, shuffle_chunk=cfg.shuffle_chunk or None)


def eval_windows(cfg: TextConfig, n: int | None = None, split: str = "valid") -> torch.Tensor:
    """Held-out windows (n, L): fresh chain samples (seed 12345), or n windows spread evenly over ``split`` (so a
    shuffled corpus is sampled across all its chunks, not just the first)."""
    n = cfg.eval_windows if n is None else n
    if cfg.data == "markov":
        return markov_chain(cfg).sample(n, cfg.seq_len, torch.Generator().manual_seed(12345))
    import numpy as np

    tokens = load_text_split(cfg, split)
    if len(tokens) < cfg.seq_len:
        raise ConfigError(f"the {split} split has {len(tokens)} characters, fewer than one window of {cfg.seq_len}")
    starts = np.linspace(0, len(tokens) - cfg.seq_len, n).astype(np.int64)
    return torch.from_numpy(np.stack([tokens[s: s + cfg.seq_len] for s in starts]).astype(np.int64))  # (n, L)


def evaluate_bpc(model, cfg: TextConfig, data: torch.Tensor, seed: int = 0) -> dict[str, float]:
    """Bits per character of ``model`` on windows ``data``: exact for ar, the NELBO bound for mdlm / sedd."""
    from .evaluate import ar_bpc, diffusion_bpc

    device = next(model.parameters()).device
    if cfg.kind == "ar":
        return {"bpc": ar_bpc(model, data, MASK_ID)}
    graph, schedule = build_noise(cfg)
    gen = torch.Generator(device=device).manual_seed(seed)
    return diffusion_bpc(model, cfg.kind, data, schedule, graph, n_times=cfg.eval_times, generator=gen)


# ---------------------------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------------------------


def train(cfg: TextConfig, run) -> Any:
    """``dlcourse train {mdlm,sedd,ar}``: build data and model, run the shared loop, evaluate bpc, export if asked."""
    from ..registry import export_trained
    from ..train import fit
    from ..utils import count_parameters, seed_all

    seed_all(cfg.train.seed)
    model = build_model(cfg)
    print(f"{cfg.kind}: {count_parameters(model) / 1e6:.2f}M parameters, data={cfg.data}, L={cfg.seq_len}")
    result = fit(model, make_loss(cfg), make_sampler(cfg), cfg.train, run.out_dir, kind=cfg.kind, config=cfg,
                 device=run.device, resume=run.resume)
    metrics = dict(result.metrics)
    if cfg.eval_windows > 0:
        ev = evaluate_bpc(result.ema_model, cfg, eval_windows(cfg))
        metrics.update({f"eval_{k}": v for k, v in ev.items()})
        extra = ""
        if cfg.data == "markov":
            metrics["entropy_bpc"] = markov_chain(cfg).window_entropy(cfg.seq_len)
            extra = f" (the chain's entropy: {metrics['entropy_bpc']:.4f})"
        print(f"{cfg.kind}: held-out bits per character {ev['bpc']:.4f}{extra}")
    export_trained(run, cfg.kind, cfg, result.ema_model.state_dict(), metrics, lambda: _describe(cfg, model))
    result.metrics = metrics
    return result


def _describe(cfg: TextConfig, model) -> tuple[str, str]:
    """(what, data) lines of a manifest entry."""
    from ..utils import count_parameters

    m = cfg.model
    net = (f"transformer ({m.n_layers} blocks, dim {m.dim}, {count_parameters(model) / 1e6:.1f}M params, "
           f"{'causal, KV-cache decoding' if cfg.kind == 'ar' else 'bidirectional'}"
           f"{', time-conditioned' if cfg.kind != 'ar' and m.time_conditioning else ''})")
    what = {"ar": f"autoregressive character {net}; the baseline and the judge of sample quality",
            "mdlm": f"masked diffusion LM (MDLM, SUBS, {cfg.noise.schedule} schedule), {net}",
            "sedd": f"SEDD on the {cfg.noise.graph} graph ({cfg.noise.schedule} schedule), {net}"}[cfg.kind]
    if cfg.data == "markov":
        data = f"samples of a {cfg.markov_symbols}-symbol Markov chain (seed {cfg.markov_seed})"
    else:
        shuffle = f", cut into {cfg.shuffle_chunk:,}-character chunks shuffled with seed 0" if cfg.shuffle_chunk else ""
        data = f"{cfg.data}, text8-normalised{shuffle}, split 90/5/5 (dlcourse.data.text.prepare_corpus)"
    how = "exact -log2 p / L" if cfg.kind == "ar" else f"the NELBO upper bound ({cfg.eval_times} draws of t per window)"
    data += f"; eval_bpc: {how} on {cfg.eval_windows} windows of {cfg.seq_len} characters of the valid split"
    return what, data


# ---------------------------------------------------------------------------------------------------------------
# loading and sampling
# ---------------------------------------------------------------------------------------------------------------


def load_text_model(name_or_path: str | Path, kind: str | None = None,
                    device: torch.device | str | None = None) -> tuple[Any, TextConfig]:
    """A trained text model in eval mode and its config, from a shipped name (``"mdlm_prose"``), an exported
    ``.safetensors`` file, a run folder or its ``ckpt.pt`` (EMA weights)."""
    from ..checkpoint import load_model_weights, load_state_into

    state, meta, path = load_model_weights(name_or_path, kind=kind)
    cfg = config_from_dict(TextConfig, meta["config"])
    model = build_model(cfg)
    load_state_into(model, state, source=str(path))
    return model.to(device or "cpu").eval(), cfg


def generate(model, cfg: TextConfig, num: int, length: int | None = None, steps: int | None = None,
             condition=None, prefix=None, generator: torch.Generator | None = None, record: bool = False,
             method: str | None = None, cache: bool | None = None):
    """Samples of any of the three kinds as a `dlcourse.discrete.samplers.Samples`. ``condition`` (diffusion) holds
    fixed positions; ``prefix`` (ar) is the text to continue."""
    from .samplers import ar_sample, mdlm_sample, sedd_sample

    length = length or cfg.seq_len
    steps = steps or cfg.sampler.steps
    if cfg.kind == "ar":
        if condition is not None:
            raise ConfigError("the autoregressive model can only continue a prefix: pass prefix=, not condition=")
        return ar_sample(model, num, length, prefix=prefix, generator=generator, record=record)
    if prefix is not None:
        raise ConfigError("diffusion models take fixed characters as condition=make_condition(length, prefix=...)")
    graph, schedule = build_noise(cfg)
    if cfg.kind == "mdlm":
        return mdlm_sample(model, schedule, graph, num, length, steps, condition, generator,
                           cache=cfg.sampler.cache if cache is None else cache, record=record)
    return sedd_sample(model, schedule, graph, num, length, steps, method or cfg.sampler.method, condition,
                       generator, record=record)


# ---------------------------------------------------------------------------------------------------------------
# CLI hooks
# ---------------------------------------------------------------------------------------------------------------


def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default=None, metavar="DATA",
                   help="markov, text8, or the path of a text file (default: the preset's)")


def _apply_train_args(cfg: TextConfig, args: argparse.Namespace) -> TextConfig:
    if args.data is not None:
        if args.data not in ("markov", "text8") and not Path(args.data).expanduser().is_file():
            raise ConfigError(f"--data {args.data!r} is not markov, text8 or an existing text file")
        cfg.data = args.data
    return cfg


def _add_sample_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, metavar="NAME_OR_PATH",
                   help="a shipped checkpoint name, a .safetensors export, a run folder or ckpt.pt")
    p.add_argument("--n", type=int, default=4, help="number of samples (default: %(default)s)")
    p.add_argument("--length", type=int, default=None, help="characters per sample (default: the training length)")
    p.add_argument("--steps", type=int, default=None, help="reverse steps (diffusion; default: the config's)")
    p.add_argument("--method", default=None, choices=("tweedie", "euler"), help="sedd sampler")
    p.add_argument("--prefix", default=None, help="text the samples must start with")
    p.add_argument("--suffix", default=None, help="text the samples must end with (diffusion only)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampler (default: %(default)s)")
    p.add_argument("--out", type=Path, default=None, help="also write the samples to this text file")


def _sample_cmd(args: argparse.Namespace, kind: str) -> int:
    from ..utils import get_device
    from .samplers import make_condition

    device = get_device(args.device)
    if args.n < 1:
        raise ConfigError(f"--n must be at least 1, got {args.n}")
    model, cfg = load_text_model(args.checkpoint, kind, device)
    length = args.length or cfg.seq_len
    generator = torch.Generator(device=device).manual_seed(args.seed)
    if kind == "ar":
        if args.suffix:
            raise ConfigError("the autoregressive model can only continue a prefix; use mdlm or sedd for --suffix")
        out = generate(model, cfg, args.n, length, prefix=args.prefix, generator=generator)
    else:
        cond = None
        if args.prefix or args.suffix:
            cond = make_condition(length, args.prefix, args.suffix, batch=args.n, device=device)
        out = generate(model, cfg, args.n, length, args.steps, condition=cond, generator=generator,
                       method=args.method)
    texts = decode(out.tokens.cpu())
    for text in texts:
        print(repr(text))
    print(f"{kind}: {args.n} samples of {length} characters with {out.nfe} network evaluations")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(texts) + "\n")
    return 0


def make_family(kind: str, help: str, presets: Presets):
    from ..registry import Family

    def train_kind(cfg: TextConfig, run):
        if cfg.kind != kind:
            raise ConfigError(f"this is the {kind} family but the config says kind={cfg.kind!r}")
        return train(cfg, run)

    return Family(name=kind, help=help, presets=presets, train=train_kind, add_train_args=_add_train_args,
                  apply_train_args=_apply_train_args, add_sample_args=_add_sample_args,
                  sample=lambda args: _sample_cmd(args, kind))


FAMILY = make_family("mdlm", "masked diffusion language model, continuous-time NELBO (Sahoo et al. 2024)", PRESETS)
