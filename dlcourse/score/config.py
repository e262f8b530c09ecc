"""Configs and presets of the ``ncsn`` family (`family` holds the code).

Presets are plain values: ``toy`` (Song & Ermon 2019's Figure 3 mixture), ``digits`` (8x8 digits), ``cpu`` (the
shipped 28x28 Fashion-MNIST model), ``gpu`` and ``cifar10`` (NCSNv2's CIFAR-10 setting, for a GPU). Fields left
``null`` are filled in from the data by NCSNv2's techniques (`dlcourse.score.family.resolve_config`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..config import Config, Presets, Reproduces, TrainConfig
from ..data.sets import DataName, ToyName
from ..errors import ConfigError
from .langevin import Convention

__all__ = ["ModelConfig", "NoiseConfig", "SamplerConfig", "NCSNConfig", "PRESETS"]


@dataclass
class ModelConfig(Config):
    """The score network: an MLP for 2-D toys, a U-Net for images, wrapped as s(x, σ) = net(x, log σ)/σ."""

    #: "mlp" (2-D toys) or "unet" (images)
    arch: Literal["mlp", "unet"] = "mlp"
    #: MLP: hidden width
    hidden: int = 128
    #: MLP: residual blocks
    num_blocks: int = 3
    #: U-Net: base channels
    channels: int = 64
    #: U-Net: channel multiplier per resolution level
    channel_mults: tuple[int, ...] = (1, 2, 2)
    #: U-Net: residual blocks per level
    num_res_blocks: int = 2
    #: U-Net: image sizes at which self-attention is used (there is always one in the middle)
    attn_resolutions: tuple[int, ...] = ()
    #: U-Net: dropout in the residual blocks
    dropout: float = 0.0
    #: embedding of log σ
    embedding: Literal["fourier", "sinusoidal"] = "fourier"
    #: std of the Fourier frequencies (per unit of log σ)
    fourier_scale: float = 16.0
    #: feed log σ to the net as well as dividing by σ (False: NCSNv2's unconditional s(x)/σ)
    conditional: bool = True


@dataclass
class NoiseConfig(Config):
    """The geometric noise ladder σ₁ > ... > σ_L (Song & Ermon 2019, Section 4.1)."""

    #: σ₁; null: NCSNv2 technique 1, the largest distance between two training points
    sigma_max: float | None = None
    #: σ_L
    sigma_min: float = 0.01
    #: L; null: NCSNv2 technique 2 (the ratio rule for the data's dimension)
    num_levels: int | None = None

    def check(self) -> None:
        if self.sigma_min <= 0 or (self.sigma_max is not None and self.sigma_max <= self.sigma_min):
            raise ConfigError(f"need sigma_max > sigma_min > 0, got {self.sigma_max} and {self.sigma_min}")
        if self.num_levels is not None and self.num_levels < 2:
            raise ConfigError(f"num_levels must be at least 2, got {self.num_levels}")


@dataclass
class SamplerConfig(Config):
    """Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1) as used by ``dlcourse sample ncsn``."""

    #: T, Langevin steps per noise level
    n_steps_each: int = 5
    #: ε, the step size at the last level; null: NCSNv2 technique 4 for this T
    eps: float | None = None
    #: step convention: "code" (x + ε s + √(2ε) z, NCSNv2) or "paper" (x + ε/2 s + √ε z, NCSN Algorithm 1)
    convention: Convention = "code"
    #: finish with the denoising step x + σ_L² s(x, σ_L)
    denoise: bool = True
    #: the chains start uniform in [init_low, init_high] in every coordinate
    init_low: float = 0.0
    #: upper end of the uniform initialisation
    init_high: float = 1.0

    def check(self) -> None:
        if self.n_steps_each < 1:
            raise ConfigError(f"sampler.n_steps_each must be >= 1, got {self.n_steps_each}")


@dataclass
class NCSNConfig(Config):
    """A whole NCSN run: data, network, noise ladder, sampler and training loop."""

    #: "toy" (a 2-D distribution, see ``toy``) or an image set: digits, mnist, fashion-mnist, cifar10
    data: DataName = "toy"
    #: the 2-D distribution when data="toy" (a name from dlcourse.data.toy2d)
    toy: ToyName = "two_gaussians"
    #: use only the first this many training images (0: all)
    data_limit: int = 0
    #: random horizontal flips of training images (NCSNv2 uses them on CIFAR-10)
    random_flip: bool = False
    #: the score network
    model: ModelConfig = field(default_factory=ModelConfig)
    #: the noise ladder
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    #: the sampler
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    #: the shared training loop
    train: TrainConfig = field(default_factory=TrainConfig)

    def check(self) -> None:
        if (self.data == "toy") != (self.model.arch == "mlp"):
            want = "mlp" if self.data == "toy" else "unet"
            raise ConfigError(f"data={self.data!r} needs model.arch={want!r} (got {self.model.arch!r}); use "
                              f"--preset {'toy' if want == 'mlp' else 'cpu'} or --set model.arch={want}")


def _toy_preset() -> NCSNConfig:
    # The mixture of Song & Ermon (2019), Figure 3. In 2-D technique 2 does not apply, so the ladder is by hand:
    # σ₁ = 20 as in the paper, down to σ_L = 0.1 (a tenth of the modes' std) with ratio ≈ 1.3; the same
    # per-level signal-to-noise ratio ε/σ_L² = 0.1 as the paper's σ₁₀ = 1, ε = 0.1.
    return NCSNConfig(
        data="toy", toy="two_gaussians",
        model=ModelConfig(arch="mlp", hidden=128, num_blocks=3, fourier_scale=1.0),
        noise=NoiseConfig(sigma_max=20.0, sigma_min=0.1, num_levels=20),
        sampler=SamplerConfig(n_steps_each=100, eps=1e-3, convention="paper", denoise=True, init_low=-8.0,
                              init_high=8.0),
        train=TrainConfig(steps=4000, batch_size=512, lr=1e-3, warmup=100, ema_decay=0.995, log_every=100,
                          ckpt_every=1000),
    )


def _digits_preset() -> NCSNConfig:
    # The shipped 8x8 digits model: a 1.0M-parameter U-Net, 6000 steps of batch 128 (~35 minutes on one free CPU
    # core); ladder and step size from NCSNv2's techniques: 22 levels from 4.80 to 0.01, T = 10, eps = 1.56e-5.
    return NCSNConfig(
        data="digits",
        model=ModelConfig(arch="unet", channels=32, channel_mults=(1, 2), num_res_blocks=2, attn_resolutions=(4,),
                          dropout=0.0),
        noise=NoiseConfig(sigma_max=None, sigma_min=0.01, num_levels=None),
        sampler=SamplerConfig(n_steps_each=10, eps=None, convention="code", denoise=True),
        train=TrainConfig(steps=6000, batch_size=128, lr=1e-3, warmup=200, ema_decay=0.999, log_every=100,
                          ckpt_every=1000),
    )


def _cpu_preset() -> NCSNConfig:
    # The shipped 28x28 model (Fashion-MNIST; any 28x28 set with --data): a 1.0M-parameter U-Net, narrow at full
    # resolution (16 channels) and wider below (32 at 14x14, 64 with attention at 7x7), which is what one CPU core
    # can train (about 75 images/s); every ladder and sampler number from NCSNv2's techniques.
    return NCSNConfig(
        data="fashion-mnist",
        model=ModelConfig(arch="unet", channels=16, channel_mults=(1, 2, 4), num_res_blocks=2, attn_resolutions=(7,)),
        train=TrainConfig(steps=6000, batch_size=64, lr=5e-4, warmup=200, ema_decay=0.999, log_every=100,
                          ckpt_every=500),
    )


def _gpu_preset() -> NCSNConfig:
    # DDPM's CIFAR-10 U-Net (35.7M parameters) with NCSNv2's techniques choosing the ladder for any data set.
    return NCSNConfig(
        data="cifar10", random_flip=True,
        model=ModelConfig(arch="unet", channels=128, channel_mults=(1, 2, 2, 2), num_res_blocks=2,
                          attn_resolutions=(16,), dropout=0.1),
        train=TrainConfig(steps=300_000, batch_size=128, lr=1e-4, warmup=5000, ema_decay=0.999, log_every=100,
                          ckpt_every=5000),
    )


def _cifar10_preset() -> NCSNConfig:
    # NCSNv2's CIFAR-10 setting (Song & Ermon 2020, Appendix B.1): σ₁ = 50, L = 232, σ_L = 0.01, T = 5,
    # ε = 6.2e-6 in the code convention, batch 128, Adam lr 1e-4, EMA 0.999, 300k steps, flips; with DDPM's
    # U-Net (35.7M parameters) in place of their RefineNet (29.7M).
    cfg = _gpu_preset()
    cfg.noise = NoiseConfig(sigma_max=50.0, sigma_min=0.01, num_levels=232)
    cfg.sampler = SamplerConfig(n_steps_each=5, eps=6.2e-6, convention="code", denoise=True)
    cfg.train.warmup = 0
    cfg.train.grad_clip = None
    return cfg


PRESETS: Presets[NCSNConfig] = Presets(
    "ncsn", toy=_toy_preset(), digits=_digits_preset(), cpu=_cpu_preset(), gpu=_gpu_preset(), cifar10=_cifar10_preset(),
    reproduces={"cifar10": Reproduces(
        "Song & Ermon 2020, NCSNv2", "Appendix B.1, CIFAR-10 (32x32)", 29.7, 300_000, ours_m=35.75,
        differs="DDPM's U-Net (35.7M parameters, conditioned on log sigma) replaces NCSNv2's RefineNet (29.7M, "
                "unconditional s(x)/sigma); the noise ladder, step size, batch, optimiser, EMA and steps are the paper's",
        reported="FID 10.87 on CIFAR-10")})
