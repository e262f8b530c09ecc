"""The text families ``mdlm``, ``sedd``, ``ar`` and ``bd3``: ``dlcourse train|sample|eval`` for each (configs: `config`).

    dlcourse train mdlm --preset toy --out runs/mdlm-toy                  # a character Markov chain, minutes on a CPU
    dlcourse train sedd --preset cpu --data corpus.txt.gz --out runs/sedd-cpu   # any text file, normalised like text8
    dlcourse train ar --preset text8 --device cuda --out runs/ar-text8    # the papers' 12-layer, 256-character setting
    dlcourse sample mdlm --checkpoint mdlm_prose --n 4 --steps 128 --prefix "the " --suffix " of the"
    dlcourse eval ar --checkpoint ar_prose --bpc
    dlcourse train bd3 --preset toy --set block_size=4                     # block diffusion (Arriola et al. 2025)

The four share a network (the transformer of `dlcourse.nn.transformer`), data and evaluation; each subclass of
`TextFamily` says what is its own: the loss, the sampler and how bits per character are measured (exact for ar,
the NELBO bound for the diffusion models).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..data.text import MASK_ID, PROSE_ABOUT, PROSE_NAME, VOCAB_SIZE, ChunkSampler, decode
from ..errors import ConfigError
from ..registry import Family, SampleOutput
from ..utils import count_parameters, log
from .config import PRESETS, TextConfig
from .data import NAMED, SYNTHETIC, eval_windows, synthetic_source, text_split
from .graphs import Graph, make_graph
from .losses import ar_loss, mdlm_loss, sedd_loss
from .schedules import Schedule, make_schedule

__all__ = ["TextFamily", "MDLM", "SEDD", "AR", "BD3", "build_noise", "generate", "evaluate_bpc"]


def build_noise(cfg: TextConfig) -> tuple[Graph, Schedule]:
    """The graph and schedule of ``cfg``."""
    n = cfg.noise
    return make_graph(n.graph, VOCAB_SIZE), make_schedule(n.schedule, n.eps, n.sigma_min, n.sigma_max)


class TextFamily(Family):
    """What the three text families share; subclasses define `loss`, `generate` and `bpc`."""

    config = TextConfig
    aliases = {"data": "data"}
    sample_suffixes = (".txt",)
    sample_n = 4
    causal = False
    paper = ""

    def __init__(self) -> None:
        self.presets = PRESETS[self.name]
        super().__init__()

    def build_model(self, cfg: TextConfig):
        """The untrained `Transformer` of ``cfg``: 28 input ids (characters + mask/start), 27 outputs."""
        from ..nn.transformer import Transformer

        m = cfg.model
        return Transformer(VOCAB_SIZE + 1, VOCAB_SIZE, m.dim, m.n_layers, m.n_heads, m.mlp_ratio, m.dropout,
                           causal=self.causal, time_conditioning=m.time_conditioning and not self.causal,
                           cond_dim=m.cond_dim, fused=m.fused, exact_gelu=m.exact_gelu)

    def train_data(self, cfg: TextConfig):
        if cfg.data not in NAMED and not Path(cfg.data).expanduser().is_file():
            raise ConfigError(f"data {cfg.data!r} is not {', '.join(NAMED)} or an existing text file")
        if cfg.data in SYNTHETIC:
            source = synthetic_source(cfg)
            return lambda generator, n: source.sample(n, cfg.seq_len, generator)
        return ChunkSampler(text_split(cfg, "train"), cfg.seq_len)

    def train(self, cfg: TextConfig, run):
        if cfg.kind != self.name:
            raise ConfigError(f"this is the {self.name} family but the config says kind={cfg.kind!r}")
        return super().train(cfg, run)

    def after_training(self, cfg: TextConfig, model) -> dict[str, float]:
        if cfg.eval_windows <= 0:
            return {}
        device = next(model.parameters()).device
        metrics = {f"eval_{k}": v for k, v in self.bpc(model, cfg, eval_windows(cfg).to(device)).items()}
        extra = ""
        if cfg.data in SYNTHETIC:
            metrics["entropy_bpc"] = synthetic_source(cfg).window_entropy(cfg.seq_len)
            extra = f" (the source's entropy: {metrics['entropy_bpc']:.4f})"
        log(f"{self.name}: held-out bits per character {metrics['eval_bpc']:.4f}{extra}")
        return metrics

    def describe(self, cfg: TextConfig, model) -> tuple[str, str]:
        m = cfg.model
        net = (f"transformer ({m.n_layers} blocks, dim {m.dim}, {count_parameters(model) / 1e6:.1f}M params, "
               f"{'causal, KV-cache decoding' if self.causal else 'bidirectional'}"
               f"{', time-conditioned' if model.time_conditioning else ''})")
        if cfg.data == "markov":
            data = f"samples of a {cfg.markov_symbols}-symbol Markov chain (seed {cfg.markov_seed})"
        elif cfg.data == "topics":
            data = "windows of the exact test bed dlcourse.discrete.testbed.TopicLanguage.random(seed=0)"
        else:
            shuffle = f", cut into {cfg.shuffle_chunk:,}-character chunks shuffled with seed 0" if cfg.shuffle_chunk else ""
            source = PROSE_ABOUT if cfg.data == PROSE_NAME else f"{cfg.data}, text8-normalised"
            data = f"{source}{shuffle}, split 90/5/5 (dlcourse.data.text.prepare_corpus)"
        how = "exact -log2 p / L" if self.causal else f"the NELBO upper bound ({cfg.eval_times} draws of t per window)"
        data += f"; eval_bpc: {how} on {cfg.eval_windows} windows of {cfg.seq_len} characters of the valid split"
        return self.paper.format(cfg=cfg, net=net), data

    # ---- sampling and evaluation ----
    def add_sample_args(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--length", type=int, default=None, help="characters per sample (default: the training length)")
        p.add_argument("--prefix", default=None, help="text the samples must start with")
        p.add_argument("--steps", type=int, default=None,
                       help="ignored: one network call per character" if self.causal
                       else "reverse steps (default: the config's)")
        p.add_argument("--suffix", default=None, help="text the samples must end with (diffusion models only)")

    def sample(self, model, cfg: TextConfig, n: int, generator, args) -> SampleOutput:
        from .samplers import make_condition

        length = args.length or cfg.seq_len
        if self.causal:
            if args.suffix:
                raise ConfigError("the autoregressive model can only continue a prefix; use mdlm or sedd for --suffix")
            out = self.generate(model, cfg, n, length, prefix=args.prefix, generator=generator)
        else:
            cond = None
            if args.prefix or args.suffix:
                cond = make_condition(length, args.prefix, args.suffix, batch=n, device=generator.device)
            out = self.generate(model, cfg, n, length, args.steps, condition=cond, generator=generator)
        return SampleOutput(decode(out.tokens.cpu()), out.nfe, f"{n} samples of {length} characters, "
                            f"{out.nfe} network evaluations")

    def add_eval_args(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--bpc", action="store_true", required=True, help="bits per character on held-out windows")
        p.add_argument("--windows", type=int, default=None, help="held-out windows (default: the config's)")
        p.add_argument("--split", default="valid", choices=("valid", "test"), help="(default: %(default)s)")
        p.add_argument("--seed", type=int, default=0, help="seed of the bound's Monte Carlo draws")

    def evaluate(self, model, cfg: TextConfig, args) -> dict:
        windows = eval_windows(cfg, args.windows, args.split).to(next(model.parameters()).device)
        return {**self.bpc(model, cfg, windows, args.seed), "windows": float(len(windows)), "split": args.split}

    def generate(self, model, cfg: TextConfig, num: int, length: int | None = None, steps: int | None = None,
                 condition=None, prefix=None, generator: torch.Generator | None = None, record: bool = False):
        raise NotImplementedError

    def _diffusion_noise(self, cfg: TextConfig, prefix) -> tuple[Graph, Schedule]:
        """The graph and schedule a diffusion sampler needs (which holds fixed characters by condition, not prefix)."""
        if prefix is not None:
            raise ConfigError("diffusion models take fixed characters as condition=make_condition(length, prefix=...)")
        return build_noise(cfg)

    def bpc(self, model, cfg: TextConfig, data: torch.Tensor, seed: int = 0) -> dict[str, float]:
        """Bits per character of ``model`` on windows ``data`` (n, L)."""
        from .evaluate import diffusion_bpc

        graph, schedule = build_noise(cfg)
        gen = torch.Generator(device=data.device).manual_seed(seed)
        return diffusion_bpc(model, self.name, data, schedule, graph, n_times=cfg.eval_times, generator=gen,
                             block=cfg.block_size)


class DiffusionFamily(TextFamily):
    """MDLM and SEDD: a loss ``objective(model, x, schedule, graph)`` over the config's forward process."""

    objective = None

    def loss(self, cfg: TextConfig):
        graph, schedule = build_noise(cfg)
        return lambda model, x: self.objective(model, x, schedule, graph)


class MDLMFamily(DiffusionFamily):
    name = "mdlm"
    paper = "masked diffusion LM (MDLM, SUBS, {cfg.noise.schedule} schedule), {net}"
    objective = staticmethod(mdlm_loss)

    def generate(self, model, cfg, num, length=None, steps=None, condition=None, prefix=None, generator=None,
                 record=False, cache: bool | None = None, confidence: bool | None = None,
                 threshold: float | None = None):
        """MDLM samples: ancestral (`dlcourse.discrete.samplers.mdlm_sample`), or with ``confidence`` (the config's by
        default) `confidence_sample` by count, or by ``threshold``; ``condition`` holds fixed positions."""
        from .samplers import confidence_sample, mdlm_sample

        graph, schedule = self._diffusion_noise(cfg, prefix)
        length, steps = length or cfg.seq_len, steps or cfg.sampler.steps
        threshold = cfg.sampler.threshold if threshold is None else threshold
        if threshold is not None or (cfg.sampler.confidence if confidence is None else confidence):
            return confidence_sample(model, schedule, graph, num, length, None if threshold is not None else steps,
                                     threshold, condition, generator, record=record)
        return mdlm_sample(model, schedule, graph, num, length, steps, condition, generator,
                           cache=cfg.sampler.cache if cache is None else cache, record=record)


class SEDDFamily(DiffusionFamily):
    name = "sedd"
    paper = "SEDD on the {cfg.noise.graph} graph ({cfg.noise.schedule} schedule), {net}"
    objective = staticmethod(sedd_loss)

    def add_sample_args(self, p: argparse.ArgumentParser) -> None:
        super().add_sample_args(p)
        p.add_argument("--method", default=None, choices=("tweedie", "euler"), help="(default: the config's)")

    def sample(self, model, cfg, n, generator, args):
        if args.method:
            cfg.sampler.method = args.method
        return super().sample(model, cfg, n, generator, args)

    def generate(self, model, cfg, num, length=None, steps=None, condition=None, prefix=None, generator=None,
                 record=False, method: str | None = None):
        """SEDD samples by Tweedie or Euler τ-leaping (`dlcourse.discrete.samplers.sedd_sample`)."""
        from .samplers import sedd_sample

        graph, schedule = self._diffusion_noise(cfg, prefix)
        return sedd_sample(model, schedule, graph, num, length or cfg.seq_len, steps or cfg.sampler.steps,
                           method or cfg.sampler.method, condition, generator, record=record)


class ARFamily(TextFamily):
    name = "ar"
    causal = True
    paper = "autoregressive character {net}"

    def loss(self, cfg: TextConfig):
        return lambda model, x: ar_loss(model, x, MASK_ID)

    def generate(self, model, cfg, num, length=None, steps=None, condition=None, prefix=None, generator=None,
                 record=False):
        """Left-to-right samples with the KV cache after an optional ``prefix`` (`dlcourse.discrete.samplers.ar_sample`)."""
        from .samplers import ar_sample

        if condition is not None:
            raise ConfigError("the autoregressive model can only continue a prefix: pass prefix=, not condition=")
        return ar_sample(model, num, length or cfg.seq_len, prefix=prefix, generator=generator, record=record)

    def bpc(self, model, cfg, data, seed=0):
        from .evaluate import ar_bpc

        return {"bpc": ar_bpc(model, data, MASK_ID)}


class BD3Family(DiffusionFamily):
    name = "bd3"
    paper = "block diffusion LM (BD3-LM, blocks of {cfg.block_size}, {cfg.noise.schedule} schedule), {net}"

    def loss(self, cfg: TextConfig):
        from .bd3 import bd3_loss

        graph, schedule = build_noise(cfg)
        return lambda model, x: bd3_loss(model, x, schedule, graph, cfg.block_size)

    def generate(self, model, cfg, num, length=None, steps=None, condition=None, prefix=None, generator=None,
                 record=False, confidence: bool | None = None, threshold: float | None = None, block: int | None = None):
        """Block-by-block samples with the KV cache of finished blocks (`dlcourse.discrete.bd3.bd3_sample`); ``steps``
        per block (the config's by default); ``block`` may be any divisor of the length (default: the trained one)."""
        from .bd3 import bd3_sample

        graph, schedule = self._diffusion_noise(cfg, prefix)
        return bd3_sample(model, schedule, graph, num, length or cfg.seq_len, block or cfg.block_size,
                          steps or cfg.sampler.steps, cfg.sampler.threshold if threshold is None else threshold,
                          cfg.sampler.confidence if confidence is None else confidence, condition, generator,
                          record=record)


MDLM, SEDD, AR, BD3 = MDLMFamily(), SEDDFamily(), ARFamily(), BD3Family()
_BY_KIND = {f.name: f for f in (MDLM, SEDD, AR, BD3)}


def generate(model, cfg: TextConfig, num: int, length: int | None = None, steps: int | None = None, **kwargs):
    """Samples of a text model of any kind (a `dlcourse.discrete.samplers.Samples`): ``condition=`` holds fixed
    positions (diffusion), ``prefix=`` is the text to continue (ar); see each family's ``generate``."""
    return _BY_KIND[cfg.kind].generate(model, cfg, num, length, steps, **kwargs)


def evaluate_bpc(model, cfg: TextConfig, data: torch.Tensor, seed: int = 0) -> dict[str, float]:
    """Bits per character of a text model of any kind on windows ``data``: exact for ar, the NELBO bound else."""
    return _BY_KIND[cfg.kind].bpc(model, cfg, data, seed)
