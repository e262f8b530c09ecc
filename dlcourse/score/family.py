"""The ``ncsn`` model family: config, presets, ``dlcourse train ncsn`` and ``dlcourse sample ncsn``.

    dlcourse train ncsn --preset toy --out runs/ncsn-toy --export ncsn_toy.safetensors
    dlcourse train ncsn --preset cpu --data fashion-mnist
    dlcourse train ncsn --preset cifar10 --device cuda          # NCSNv2's CIFAR-10 setting, for a GPU
    dlcourse sample ncsn --checkpoint ncsn_digits --n 64 --out grid.png

Fields of the noise ladder and the sampler left as ``null`` are filled in from the data with NCSNv2's techniques
(σ₁ from the largest pairwise distance, L from the ratio rule, ε from the step-count rule) before training
starts, and the filled-in values are what the run's config.json and exported weights record.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import Presets, TrainConfig, config_from_dict
from ..errors import CheckpointError, ConfigError
from .langevin import CONVENTIONS, annealed_langevin_dynamics
from .losses import ncsn_loss
from .ncsn import (NCSN, geometric_sigmas, max_pairwise_distance, ncsnv2_gamma, ncsnv2_num_levels,
                   ncsnv2_step_size)

__all__ = ["NCSNConfig", "ModelConfig", "NoiseConfig", "SamplerConfig", "PRESETS", "DATA_CHOICES", "FAMILY",
           "build_model", "resolve_config", "data_shape", "sigmas_of", "load_ncsn", "sample_ncsn", "train",
           "save_image_grid", "save_scatter"]

KIND = "ncsn"
DATA_CHOICES = ("toy", "digits", "mnist", "fashion-mnist", "cifar10")
# Largest number of training points used for technique 1 (an exact max over N² pairs).
_PAIRWISE_SUBSET = 5000


@dataclass
class ModelConfig:
    """The score network: an MLP for 2-D toys, a U-Net for images, wrapped as s(x, σ) = net(x, log σ)/σ."""

    #: "mlp" (2-D toys) or "unet" (images)
    arch: str = "mlp"
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
    #: embedding of log σ: "fourier" or "sinusoidal"
    embedding: str = "fourier"
    #: std of the Fourier frequencies (per unit of log σ)
    fourier_scale: float = 16.0
    #: feed log σ to the net as well as dividing by σ (False: NCSNv2's unconditional s(x)/σ)
    conditional: bool = True

    def __post_init__(self) -> None:
        if self.arch not in ("mlp", "unet"):
            raise ConfigError(f"model.arch must be 'mlp' or 'unet', got {self.arch!r}")


@dataclass
class NoiseConfig:
    """The geometric noise ladder σ₁ > ... > σ_L (Song & Ermon 2019, Section 4.1)."""

    #: σ₁; null: NCSNv2 technique 1, the largest distance between two training points
    sigma_max: float | None = None
    #: σ_L
    sigma_min: float = 0.01
    #: L; null: NCSNv2 technique 2 (the ratio rule for the data's dimension)
    num_levels: int | None = None

    def __post_init__(self) -> None:
        if self.sigma_min <= 0 or (self.sigma_max is not None and self.sigma_max <= self.sigma_min):
            raise ConfigError(f"need sigma_max > sigma_min > 0, got {self.sigma_max} and {self.sigma_min}")
        if self.num_levels is not None and self.num_levels < 2:
            raise ConfigError(f"num_levels must be at least 2, got {self.num_levels}")


@dataclass
class SamplerConfig:
    """Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1) as used by ``dlcourse sample ncsn``."""

    #: T, Langevin steps per noise level
    n_steps_each: int = 5
    #: ε, the step size at the last level; null: NCSNv2 technique 4 for this T
    eps: float | None = None
    #: step convention: "code" (x + ε s + √(2ε) z, NCSNv2) or "paper" (x + ε/2 s + √ε z, NCSN Algorithm 1)
    convention: str = "code"
    #: finish with the denoising step x + σ_L² s(x, σ_L)
    denoise: bool = True
    #: the chains start uniform in [init_low, init_high] in every coordinate
    init_low: float = 0.0
    #: upper end of the uniform initialisation
    init_high: float = 1.0

    def __post_init__(self) -> None:
        if self.convention not in CONVENTIONS:
            raise ConfigError(f"sampler.convention must be one of {', '.join(CONVENTIONS)}, got {self.convention!r}")
        if self.n_steps_each < 1:
            raise ConfigError(f"sampler.n_steps_each must be >= 1, got {self.n_steps_each}")


@dataclass
class NCSNConfig:
    """A whole NCSN run: data, network, noise ladder, sampler and training loop."""

    #: "toy" (a 2-D distribution, see ``toy``) or an image set: digits, mnist, fashion-mnist, cifar10
    data: str = "toy"
    #: the 2-D distribution when data="toy" (a name from dlcourse.data.toy2d)
    toy: str = "two_gaussians"
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

    def __post_init__(self) -> None:
        if self.data not in DATA_CHOICES:
            raise ConfigError(f"unknown data {self.data!r} for ncsn; choose one of: {', '.join(DATA_CHOICES)}")
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
    # A small U-Net for any image set on a laptop; every ladder and sampler number from NCSNv2's techniques.
    return NCSNConfig(
        data="digits",
        model=ModelConfig(arch="unet", channels=32, channel_mults=(1, 2, 2), num_res_blocks=1, attn_resolutions=()),
        train=TrainConfig(steps=5000, batch_size=64, lr=5e-4, warmup=200, ema_decay=0.999, log_every=100,
                          ckpt_every=1000),
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
    KIND, toy=_toy_preset(), digits=_digits_preset(), cpu=_cpu_preset(), gpu=_gpu_preset(), cifar10=_cifar10_preset()
)


# ---------------------------------------------------------------------------------------------------------------
# data, model, ladder
# ---------------------------------------------------------------------------------------------------------------


def data_shape(cfg: NCSNConfig) -> tuple[int, ...]:
    """Shape of one data point: (2,) for the toys, (C, H, W) for images."""
    if cfg.data == "toy":
        return (2,)
    from ..data.images import IMAGE_SHAPES

    return IMAGE_SHAPES[cfg.data]


def build_model(cfg: NCSNConfig) -> NCSN:
    """The `NCSN` score model s(x, σ) that ``cfg`` describes (untrained)."""
    from ..nn import MLP, UNet

    m = cfg.model
    shape = data_shape(cfg)
    if m.arch == "mlp":
        net = MLP(shape[0], hidden=m.hidden, num_blocks=m.num_blocks, embedding=m.embedding,
                  fourier_scale=m.fourier_scale)
    else:
        net = UNet(shape[0], m.channels, m.channel_mults, m.num_res_blocks, m.attn_resolutions, m.dropout,
                   image_size=shape[1], embedding=m.embedding, fourier_scale=m.fourier_scale)
    return NCSN(net, conditional=m.conditional)


def _load_training_data(cfg: NCSNConfig, n_toy: int = 0) -> torch.Tensor | None:
    """The training images (N, C, H, W) in [0, 1], or ``n_toy`` samples of the toy (None if n_toy = 0)."""
    if cfg.data == "toy":
        if not n_toy:
            return None
        from ..data.toy2d import get_toy

        return get_toy(cfg.toy).sample(n_toy, generator=torch.Generator().manual_seed(cfg.train.seed))
    from ..data.images import load_images

    images, _ = load_images(cfg.data, "train", limit=cfg.data_limit or None)
    return images


def resolve_config(cfg: NCSNConfig, data: torch.Tensor | None = None, verbose: bool = False) -> NCSNConfig:
    """A copy of ``cfg`` with every null ladder / sampler field filled in by NCSNv2's techniques.

    σ₁: technique 1 on (up to 5000 of) the training points; L: technique 2 (`ncsnv2_gamma` for D = data dim);
    ε: technique 4 for T = ``sampler.n_steps_each`` and the ladder's actual ratio, in the sampler's convention.
    """
    cfg = dataclasses.replace(cfg, noise=dataclasses.replace(cfg.noise), sampler=dataclasses.replace(cfg.sampler))
    notes = []
    if cfg.noise.sigma_max is None:
        if data is None:
            data = _load_training_data(cfg, n_toy=_PAIRWISE_SUBSET)
        cfg.noise.sigma_max = round(max_pairwise_distance(data[:_PAIRWISE_SUBSET]), 4)
        notes.append(f"sigma_max={cfg.noise.sigma_max} (technique 1)")
    if cfg.noise.num_levels is None:
        gamma = ncsnv2_gamma(math.prod(data_shape(cfg)))
        cfg.noise.num_levels = ncsnv2_num_levels(cfg.noise.sigma_max, cfg.noise.sigma_min, gamma)
        notes.append(f"num_levels={cfg.noise.num_levels} (technique 2, gamma={gamma:.4f})")
    if cfg.sampler.eps is None:
        ratio = (cfg.noise.sigma_max / cfg.noise.sigma_min) ** (1 / (cfg.noise.num_levels - 1))
        eps = ncsnv2_step_size(ratio, cfg.noise.sigma_min, cfg.sampler.n_steps_each, cfg.sampler.convention)
        cfg.sampler.eps = float(f"{eps:.4g}")
        notes.append(f"eps={cfg.sampler.eps} (technique 4, T={cfg.sampler.n_steps_each})")
    if verbose and notes:
        print("ncsn: " + ", ".join(notes))
    return cfg


def sigmas_of(cfg: NCSNConfig) -> torch.Tensor:
    """The config's noise ladder (L,), decreasing (the config must be resolved)."""
    if cfg.noise.sigma_max is None or cfg.noise.num_levels is None:
        raise ConfigError("the noise ladder is not resolved yet; call resolve_config(cfg) first")
    return geometric_sigmas(cfg.noise.sigma_max, cfg.noise.sigma_min, cfg.noise.num_levels)


# ---------------------------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------------------------


def train(cfg: NCSNConfig, run) -> Any:
    """``dlcourse train ncsn``: resolve the ladder, build data and model, run the shared loop, export if asked."""
    from ..registry import export_trained
    from ..train import DistributionSampler, TensorSampler, fit
    from ..utils import seed_all

    seed_all(cfg.train.seed)
    if cfg.data == "toy":
        from ..data.toy2d import get_toy

        sampler = DistributionSampler(get_toy(cfg.toy), cfg.train.batch_size)  # (B, 2) fresh every step
        data = None
    else:
        data = _load_training_data(cfg)
        sampler = TensorSampler(data, batch_size=cfg.train.batch_size)
    cfg = resolve_config(cfg, data, verbose=True)
    sigmas = sigmas_of(cfg)

    def loss_fn(model, x: torch.Tensor) -> torch.Tensor:
        if cfg.random_flip:
            flip = torch.rand(x.shape[0], device=x.device) < 0.5  # (B,)
            x = torch.where(flip.reshape(-1, *([1] * (x.dim() - 1))), x.flip(-1), x)
        return ncsn_loss(model, x, sigmas)

    seed_all(cfg.train.seed)
    model = build_model(cfg)
    result = fit(model, loss_fn, sampler, cfg.train, run.out_dir, kind=KIND, config=cfg, device=run.device,
                 resume=run.resume)
    print(f"ncsn: trained {result.step} steps, last loss {result.metrics.get('loss', float('nan')):.4g}; "
          f"run folder {run.out_dir}")
    export_trained(run, KIND, cfg, result.ema_model.state_dict(), result.metrics, lambda: _describe(cfg))
    return result


def _describe(cfg: NCSNConfig) -> tuple[str, str]:
    """(what, data) lines of a manifest entry."""
    nparams = sum(p.numel() for p in build_model(cfg).parameters())
    arch = "MLP" if cfg.model.arch == "mlp" else "U-Net"
    what = (f"NCSN score net ({arch}, {nparams / 1e6:.2f}M parameters), s(x, sigma) = net(x, log sigma)/sigma; "
            f"{cfg.noise.num_levels} levels {cfg.noise.sigma_max:g} -> {cfg.noise.sigma_min:g}; annealed Langevin "
            f"T={cfg.sampler.n_steps_each}, eps={cfg.sampler.eps:g} ({cfg.sampler.convention} convention)"
            f"{', final denoising step' if cfg.sampler.denoise else ''}")
    if cfg.data == "toy":
        from ..data.toy2d import GaussianMixture, get_toy

        dist = get_toy(cfg.toy)
        data = f"2-D toy {cfg.toy!r} (dlcourse.data.toy2d), fresh samples every step"
        if isinstance(dist, GaussianMixture):
            parts = []
            for w, m, c in zip(dist.weights.tolist(), dist.means.tolist(), dist.covs):
                iso = torch.allclose(c, c[0, 0] * torch.eye(2, dtype=c.dtype))
                cov = f"{c[0, 0].item():g} I" if iso else str([[round(v, 3) for v in r] for r in c.tolist()])
                parts.append(f"{w:g} N({tuple(round(v, 3) for v in m)}, {cov})")
            data += ": " + " + ".join(parts)
    else:
        data = f"{cfg.data} train split{f' (first {cfg.data_limit})' if cfg.data_limit else ''}, pixels in [0, 1]"
    return what, data


# ---------------------------------------------------------------------------------------------------------------
# loading and sampling
# ---------------------------------------------------------------------------------------------------------------


def load_ncsn(name_or_path: str | Path, device: torch.device | str | None = None) -> tuple[NCSN, NCSNConfig]:
    """A trained NCSN in eval mode, and its config, from a shipped name (``"ncsn_toy"``), an exported
    ``.safetensors`` file, a run folder or its ``ckpt.pt`` (whose EMA weights are used)."""
    from ..checkpoint import load_model_weights, load_state_into

    state, meta, path = load_model_weights(name_or_path, kind=KIND)
    cfg = config_from_dict(NCSNConfig, meta["config"])
    model = build_model(cfg)
    load_state_into(model, state, source=str(path))
    return model.to(device or "cpu").eval(), cfg


def sample_ncsn(model: NCSN, cfg: NCSNConfig, n: int, *, generator: torch.Generator | None = None,
                device: torch.device | str | None = None, record_every: int | None = None, **sampler_overrides):
    """``n`` samples (n, *data_shape) by annealed Langevin dynamics with the config's ladder and sampler.

    ``sampler_overrides`` replace fields of ``cfg.sampler`` (e.g. ``n_steps_each=10``, ``eps=...``, ``denoise=False``;
    if ``n_steps_each`` changes and ``eps`` is not given, ε is re-derived with technique 4).
    Returns samples, or ``(samples, frames)`` with ``record_every`` (see `annealed_langevin_dynamics`).
    """
    scfg = dataclasses.replace(cfg.sampler, **sampler_overrides)
    if "n_steps_each" in sampler_overrides and "eps" not in sampler_overrides:
        scfg.eps = None
    cfg = resolve_config(dataclasses.replace(cfg, sampler=scfg))
    device = torch.device(device) if device is not None else next(model.parameters()).device
    shape = (n, *data_shape(cfg))
    u = torch.rand(shape, generator=generator, device=generator.device if generator is not None else device)
    x0 = (cfg.sampler.init_low + (cfg.sampler.init_high - cfg.sampler.init_low) * u).to(device)
    return annealed_langevin_dynamics(model, x0, sigmas_of(cfg).to(device), cfg.sampler.eps,
                                      cfg.sampler.n_steps_each, convention=cfg.sampler.convention,
                                      denoise=cfg.sampler.denoise, generator=generator, record_every=record_every)


def save_image_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None, scale: int = 1,
                    pad: int = 1) -> Path:
    """Write images (N, C, H, W) in [0, 1] (clamped) as one PNG grid, each image enlarged ``scale`` times."""
    import numpy as np
    from PIL import Image

    x = images.detach().float().clamp(0, 1).cpu()
    n, c, h, w = x.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    ncol = math.ceil(n / nrow)
    grid = torch.ones(c, ncol * (h + pad) + pad, nrow * (w + pad) + pad)
    for i in range(n):
        r, q = divmod(i, nrow)
        grid[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = x[i]
    arr = (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    img = Image.fromarray(arr[:, :, 0] if c == 1 else arr)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def save_scatter(points: torch.Tensor, path: str | Path, title: str = "", lim: float = 10.0) -> Path:
    """Write 2-D points (N, 2) as a small scatter-plot PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    p = points.detach().float().cpu().numpy()
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(p[:, 0], p[:, 1], s=2, alpha=0.5)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_title(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80, metadata={"Software": None})
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------------------------
# CLI hooks
# ---------------------------------------------------------------------------------------------------------------


def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default=None, metavar="DATA",
                   help=f"training data: {', '.join(DATA_CHOICES)} (default: the preset's)")


def _apply_train_args(cfg: NCSNConfig, args: argparse.Namespace) -> NCSNConfig:
    if args.data is None:
        return cfg
    if args.data not in DATA_CHOICES:
        raise ConfigError(f"unknown --data {args.data!r}; choose one of: {', '.join(DATA_CHOICES)}")
    if (args.data == "toy") != (cfg.model.arch == "mlp"):
        raise ConfigError(f"--data {args.data} does not fit this preset's {cfg.model.arch}; use --preset "
                          f"{'toy' if args.data == 'toy' else 'cpu, digits, gpu or cifar10'}")
    cfg.data = args.data  # a preset's explicit ladder (cifar10) is kept; null fields are derived from this data
    return cfg


def _add_sample_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, metavar="NAME_OR_PATH",
                   help="a shipped checkpoint name (e.g. ncsn_digits), a .safetensors export, a run folder or ckpt.pt")
    p.add_argument("--n", type=int, default=64, help="number of samples (default: %(default)s)")
    p.add_argument("--out", type=Path, required=True, help="output: .png (grid or scatter plot) or .pt (tensor)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampler's noise (default: %(default)s)")
    p.add_argument("--steps-each", type=int, default=None, help="Langevin steps per level (default: the config's)")
    p.add_argument("--eps", type=float, default=None, help="step size at the last level (default: the config's)")
    p.add_argument("--no-denoise", action="store_true", help="skip the final denoising step")
    p.add_argument("--scale", type=int, default=4, help="enlarge each image this many times in the PNG")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")


def _sample_cmd(args: argparse.Namespace) -> int:
    from ..registry import check_output
    from ..utils import get_device

    device = get_device(args.device)
    if args.n < 1:
        raise ConfigError(f"--n must be at least 1, got {args.n}")
    check_output(args.out, args.force)
    model, cfg = load_ncsn(args.checkpoint, device)
    overrides: dict[str, Any] = {}
    if args.steps_each is not None:
        overrides["n_steps_each"] = args.steps_each
    if args.eps is not None:
        overrides["eps"] = args.eps
    if args.no_denoise:
        overrides["denoise"] = False
    generator = torch.Generator(device=device).manual_seed(args.seed)
    x = sample_ncsn(model, cfg, args.n, generator=generator, device=device, **overrides).cpu()
    if args.out.suffix == ".pt":
        args.out.parent.mkdir(parents=True, exist_ok=True)
        torch.save(x, args.out)
    elif cfg.data == "toy":
        save_scatter(x, args.out, title=f"ncsn samples ({cfg.toy})")
    else:
        save_image_grid(x, args.out, scale=args.scale)
    print(f"ncsn: wrote {args.n} samples to {args.out}")
    return 0


def _make_family():
    from ..registry import Family

    return Family(name=KIND, help="noise-conditional score network + annealed Langevin (Song & Ermon 2019, 2020)",
                  presets=PRESETS, train=train, add_train_args=_add_train_args, apply_train_args=_apply_train_args,
                  add_sample_args=_add_sample_args, sample=_sample_cmd)


FAMILY = _make_family()
