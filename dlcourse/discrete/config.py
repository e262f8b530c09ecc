"""Configs and presets of the text families ``mdlm``, ``sedd`` and ``ar`` (one config; `family` holds the code).

The presets are plain values: ``toy`` (a character Markov chain, minutes on a CPU), ``cpu`` (a text8-style corpus
on a CPU; the shipped ``*_prose`` checkpoints), ``text8`` (the papers' 12-layer setting, for a GPU).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..config import Config, Presets, Reproduces, TrainConfig
from ..errors import ConfigError
from .graphs import GRAPHS
from .schedules import SCHEDULES

__all__ = ["ModelConfig", "NoiseConfig", "SamplerConfig", "TextConfig", "Kind", "PRESETS"]

Kind = Literal["mdlm", "sedd", "ar", "bd3"]
GraphName = GRAPHS.literal()
ScheduleName = SCHEDULES.literal()


@dataclass
class ModelConfig(Config):
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
    #: exact (erf) GELU in the MLPs instead of the tanh approximation (cheaper on a CPU; the shipped models before
    #: 2026-12 used tanh, which is why it is not the default)
    exact_gelu: bool = False


@dataclass
class NoiseConfig(Config):
    """The forward process (ignored by ar)."""

    #: the graph: "absorbing" (mdlm must use it) or "uniform"
    graph: GraphName = "absorbing"
    #: the schedule: "loglinear" or "geometric"
    schedule: ScheduleName = "loglinear"
    #: log-linear: α_1 = eps, the fraction of tokens still clean at t = 1
    eps: float = 1e-3
    #: geometric: σ̄(0)
    sigma_min: float = 1e-4
    #: geometric: σ̄(1)
    sigma_max: float = 20.0


@dataclass
class SamplerConfig(Config):
    """Defaults of ``dlcourse sample``."""

    #: reverse steps (diffusion models)
    steps: int = 128
    #: sedd: "tweedie" or "euler"
    method: Literal["tweedie", "euler"] = "tweedie"
    #: mdlm: reuse the network's output over unchanged steps (exact without time conditioning)
    cache: bool = True
    #: mdlm / bd3: confidence decoding (unmask the most confident positions) instead of ancestral sampling
    confidence: bool = False
    #: mdlm / bd3 confidence decoding: unmask every position at least this confident (null: a count per step)
    threshold: float | None = None


@dataclass
class TextConfig(Config):
    """A whole text run: which model, which data, the network, the noise, the sampler and the training loop."""

    #: "mdlm", "sedd", "ar" or "bd3" (the family that trains it)
    kind: Kind = "mdlm"
    #: "markov" (a character Markov chain with a known entropy rate), "topics" (the exact test bed of
    #: dlcourse.discrete.testbed, TopicLanguage.random(seed=0)), "text8", or the path of a text file (.gz too)
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
    #: bd3: tokens per block (seq_len must be a multiple); sampler.steps then counts steps per block
    block_size: int = 16
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

    def check(self) -> None:
        if self.kind in ("mdlm", "bd3") and self.noise.graph != "absorbing":
            raise ConfigError(f"{self.kind} is masked diffusion: noise.graph must be 'absorbing' (use sedd for uniform)")
        if self.kind == "bd3" and (self.block_size < 1 or self.seq_len % self.block_size):
            raise ConfigError(f"bd3 needs seq_len ({self.seq_len}) to be a multiple of block_size ({self.block_size})")
        if self.kind == "bd3" and self.model.time_conditioning:
            raise ConfigError("bd3 denoises without time conditioning (its blocks have different times): set "
                              "model.time_conditioning=false")
        if self.seq_len < 2:
            raise ConfigError(f"seq_len must be at least 2, got {self.seq_len}")
        if self.shuffle_chunk < 0:
            raise ConfigError(f"shuffle_chunk must be >= 0, got {self.shuffle_chunk}")


def _noise(graph: str) -> NoiseConfig:
    return NoiseConfig(graph=graph, schedule="loglinear" if graph == "absorbing" else "geometric")


def _toy(kind: str, graph: str = "absorbing") -> TextConfig:
    # The Markov chain of the tests at a size that trains in a few CPU minutes.
    return TextConfig(kind=kind, data="markov", seq_len=32, eval_windows=512, block_size=8,
                      model=ModelConfig(dim=128, n_layers=3, n_heads=4, time_conditioning=kind == "sedd"),
                      noise=_noise(graph), sampler=SamplerConfig(steps=32),
                      train=TrainConfig(steps=3000, batch_size=128, lr=1e-3, warmup=100, ema_decay=0.999,
                                        log_every=100, ckpt_every=1000))


def _topics(kind: str, block: int = 16) -> TextConfig:
    # The exact test bed: 64-character windows of the topic language, a 0.6M-parameter model (exact GELU), minutes
    # of CPU; its samples are scored by their exact NLL under the source (benchmarks/text_bench.py --part frontier).
    return TextConfig(kind=kind, data="topics", seq_len=64, eval_windows=512, eval_times=8, block_size=block,
                      model=ModelConfig(dim=128, n_layers=3, n_heads=4, time_conditioning=kind == "sedd", cond_dim=64,
                                        exact_gelu=True),
                      noise=_noise("absorbing"), sampler=SamplerConfig(steps=64 if kind != "bd3" else block),
                      train=TrainConfig(steps=2000, batch_size=64, lr=2e-3, warmup=100, ema_decay=0.995,
                                        log_every=100, ckpt_every=500))


def _cpu(kind: str, graph: str = "absorbing", judge: bool = False) -> TextConfig:
    # The shipped *_prose checkpoints, all of one size and one budget: ~0.6M parameters over 64-character windows of
    # a text8-style corpus, 4500 steps of 32 windows (9.2M characters, about one pass over english-prose): about 12
    # minutes on one CPU thread, 23 for bd3 (it trains on 2L positions). The judge (``cpu-judge``, AR only): 4 blocks
    # of width 256 (3.2M parameters, 5.3x) and 5500 steps, about an hour; it scores the samples of the others.
    return TextConfig(kind=kind, data="text8", seq_len=64, eval_windows=512, eval_times=8, shuffle_chunk=10_000,
                      block_size=8,
                      model=ModelConfig(dim=256 if judge else 128, n_layers=4 if judge else 3, n_heads=4,
                                        time_conditioning=kind == "sedd", cond_dim=64),
                      noise=_noise(graph), sampler=SamplerConfig(steps=64 if kind != "bd3" else 8),
                      train=TrainConfig(steps=5500 if judge else 4500, batch_size=32, lr=2e-3, warmup=100,
                                        ema_decay=0.995, log_every=50, ckpt_every=500))


def _text8(kind: str, graph: str = "absorbing") -> TextConfig:
    # The papers' text8 setting (SEDD Section 5 / MDLM Section 4.1 and D3PM before them): a 12-layer, 768-wide,
    # 12-head transformer (~85M parameters) over 256-character chunks, batch 512, Adam 3e-4 with 2500 warm-up steps,
    # EMA 0.9999, dropout 0.1, 1M steps, bf16 on a GPU. MDLM drops the time conditioning; SEDD keeps it.
    # bd3: blocks of 16 (Arriola et al. 2025 train b = 4, 8, 16).
    return TextConfig(kind=kind, data="text8", seq_len=256, eval_windows=2048, eval_times=4, block_size=16,
                      model=ModelConfig(dim=768, n_layers=12, n_heads=12, dropout=0.1, cond_dim=128,
                                        time_conditioning=kind == "sedd"),
                      noise=_noise(graph), sampler=SamplerConfig(steps=256),
                      train=TrainConfig(steps=1_000_000, batch_size=512, lr=3e-4, warmup=2500, ema_decay=0.9999,
                                        grad_clip=1.0, log_every=100, ckpt_every=10000, compile=True))


def _text8_paper(kind: str) -> dict[str, Reproduces]:
    # The papers give the architecture of their text8 models, not a parameter count: the count is this architecture's
    # (85.1M; SEDD's adaLN time conditioning adds 7.3M), and the tests hold it.
    paper = {"mdlm": ("Sahoo et al. 2024, MDLM", "Section 4.1, text8"), "sedd": ("Lou et al. 2024, SEDD", "Section 5, text8"),
             "ar": ("Sahoo et al. 2024, MDLM", "Section 4.1, text8 AR baseline"),
             "bd3": ("Arriola et al. 2025, BD3-LM", "the MDLM text8 network with blocks of 16")}[kind]
    return {"text8": Reproduces(*paper, 92.4 if kind == "sedd" else 85.1, 1_000_000,
                                differs="12 layers, 768 wide, 12 heads, 256-character context as in the paper; "
                                        "rotary positions and the GELU MLP of the SEDD / MDLM DiT")}


PRESETS: dict[str, Presets[TextConfig]] = {
    "mdlm": Presets("mdlm", toy=_toy("mdlm"), topics=_topics("mdlm"), cpu=_cpu("mdlm"), text8=_text8("mdlm"),
                    reproduces=_text8_paper("mdlm")),
    "sedd": Presets("sedd", toy=_toy("sedd"), **{"toy-uniform": _toy("sedd", "uniform")}, topics=_topics("sedd"),
                    cpu=_cpu("sedd"), **{"cpu-uniform": _cpu("sedd", "uniform")}, text8=_text8("sedd"),
                    **{"text8-uniform": _text8("sedd", "uniform")}, reproduces=_text8_paper("sedd")),
    "ar": Presets("ar", toy=_toy("ar"), topics=_topics("ar"), cpu=_cpu("ar"), **{"cpu-judge": _cpu("ar", judge=True)},
                  text8=_text8("ar"), reproduces=_text8_paper("ar")),
    "bd3": Presets("bd3", toy=_toy("bd3"), topics=_topics("bd3"), **{f"topics-b{b}": _topics("bd3", b) for b in (4, 8)},
                   cpu=_cpu("bd3"), text8=_text8("bd3"), reproduces=_text8_paper("bd3")),
}
