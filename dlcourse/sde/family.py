"""The ``sde`` family: score SDE models end to end (``dlcourse train|sample|eval sde``).

    dlcourse train sde --preset cpu --sde subvp --out runs/sde-subvp        # Fashion-MNIST, a CPU
    dlcourse sample sde --checkpoint sde_fashion_vp --sampler pc --steps 500 --out grid.png
    dlcourse eval sde --checkpoint sde_fashion_vp --bpd --n 500

The score model is s(x, t) = net(x, t) / std(t) (the network predicts -z, the noise that made x_t, as in
Song et al. 2021's continuous VP/sub-VP models and NCSN's s(x, σ) = net / σ), with the MLP for 2-D toys and the
U-Net for images, both from `dlcourse.nn`. Images live on [-1, 1] (``2x - 1``).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from ..config import Config, Presets, Reproduces, TrainConfig
from ..data.sets import DATASETS, DataName, ToyName, data_shape, held_out, train_sampler
from ..errors import ConfigError
from ..registry import Family, SampleOutput
from ..utils import count_parameters, unsqueeze_as
from .likelihood import image_bits_per_dim, log_likelihood
from .losses import Weighting, sde_score_loss
from .samplers import ode_sample, pc_sample
from .sdes import SDE, SDES, VPSDE

__all__ = ["SDEConfig", "ScoreModel", "PRESETS", "SAMPLERS", "build_sde", "sample_sde", "evaluate_bpd", "FAMILY"]

SDEName = SDES.literal()
# dlcourse sample sde --sampler NAME: (predictor, corrector) of `pc_sample`, or the ODE solver
SAMPLERS = {"pc": ("reverse_diffusion", "langevin"), "predictor": ("reverse_diffusion", "none"),
            "corrector": ("none", "langevin"), "em": ("euler_maruyama", "none"), "ancestral": ("ancestral", "none"),
            "ancestral-pc": ("ancestral", "langevin"), "pf": ("probability_flow", "none"), "ode": None}


@dataclass
class SDEConfig(Config):
    """A whole score-SDE run: data, SDE, network, sampler defaults and training loop."""

    #: "toy" (a 2-D distribution, see ``toy``) or an image set: digits, mnist, fashion-mnist, cifar10
    data: DataName = "toy"
    #: the 2-D distribution when data="toy" (a name from dlcourse.data.toy2d)
    toy: ToyName = "two_gaussians"
    #: the forward SDE, a name of dlcourse.sde.sdes.SDES: ve, vp, subvp, cosine
    sde: SDEName = "vp"
    #: the SDE's two constants (VE: σ_min, σ_max; VP / sub-VP: β_min, β_max); null: the paper's (0.01, 50 / 0.1, 20)
    sde_min: float | None = None
    sde_max: float | None = None
    #: VP's discrete chain for the reverse-diffusion and ancestral predictors: "exact" (stable) or "ddpm" (DDPM's table)
    discretization: Literal["exact", "ddpm"] = "exact"
    #: loss weighting: "score" (λ = std²) or "likelihood" (λ = g²)
    weighting: Weighting = "score"
    #: "mlp" (toys) or "unet" (images)
    arch: Literal["mlp", "unet"] = "mlp"
    #: MLP hidden width / U-Net base channels
    width: int = 128
    #: MLP residual blocks / U-Net residual blocks per level
    depth: int = 3
    #: U-Net channel multipliers per level
    channel_mults: tuple[int, ...] = (1, 2)
    #: U-Net: image sizes with self-attention
    attn_resolutions: tuple[int, ...] = ()
    #: U-Net dropout
    dropout: float = 0.0
    #: default number of sampler steps
    sample_steps: int = 500
    #: default Langevin corrector signal-to-noise ratio (Song et al. 2021 use 0.16 on CIFAR-10 VE, 0.01 VP)
    snr: float = 0.16
    #: the shared training loop
    train: TrainConfig = field(default_factory=TrainConfig)

    def check(self) -> None:
        if (self.data == "toy") != (self.arch == "mlp"):
            raise ConfigError(f"data={self.data!r} needs arch={'mlp' if self.data == 'toy' else 'unet'!r}; "
                              f"use --preset {'toy' if self.data == 'toy' else 'digits or cpu'}")
        if (self.sde_min is not None or self.sde_max is not None) and not SDES.get(self.sde).range_params:
            raise ConfigError(f"the {self.sde} SDE has no constants to set: leave sde_min and sde_max null")
        if self.discretization != "exact" and not issubclass(SDES.get(self.sde), VPSDE):
            raise ConfigError(f"discretization={self.discretization!r} is a VP option; the {self.sde} SDE has one chain")


def _toy() -> SDEConfig:
    return SDEConfig(data="toy", toy="two_gaussians", sde="vp", arch="mlp", width=128, depth=3, sample_steps=500,
                     train=TrainConfig(steps=4000, batch_size=512, lr=1e-3, warmup=100, ema_decay=0.995,
                                       log_every=100, ckpt_every=1000))


def _digits() -> SDEConfig:
    return SDEConfig(data="digits", sde="vp", arch="unet", width=32, depth=2, channel_mults=(1, 2),
                     attn_resolutions=(4,), sample_steps=500, snr=0.01,
                     train=TrainConfig(steps=6000, batch_size=128, lr=1e-3, warmup=200, ema_decay=0.999,
                                       log_every=100, ckpt_every=1000))


def _cpu() -> SDEConfig:
    # The shipped 28x28 models (Fashion-MNIST): the NCSN cpu preset's 1.0M-parameter U-Net (16 channels at 28x28,
    # 32 at 14x14, 64 with attention at 7x7), the same budget for VE, VP and sub-VP (--sde; the shipped ones were
    # trained for fewer steps, see the manifest). EMA with warm-up: after 1000 steps of the plain EMA 37% of the
    # initial, zero output layer is still in the average, which shrinks the score by as much and makes the
    # reverse SDE diverge.
    return SDEConfig(data="fashion-mnist", sde="vp", arch="unet", width=16, depth=2, channel_mults=(1, 2, 4),
                     attn_resolutions=(7,), sample_steps=500, snr=0.16,
                     train=TrainConfig(steps=6000, batch_size=64, lr=5e-4, warmup=200, ema_decay=0.999,
                                       ema_warmup=True, log_every=100, ckpt_every=500))


def _cifar10() -> SDEConfig:
    # Song et al. 2021, "DDPM cont. (VP)" of Table 2 (bits/dim 3.21; sub-VP 3.05 with --sde subvp): DDPM's CIFAR-10
    # network (Ho et al. 2020, Appendix B: 35.7M parameters, base 128, multipliers 1,2,2,2, two residual blocks,
    # attention at 16x16, dropout 0.1) trained on the continuous VP objective; Appendix H's training setting (batch
    # 128, Adam 2e-4 with 5000 warm-up steps, EMA 0.9999, gradient clip 1, 1.3M iterations). Differences: the noise
    # level enters by Fourier features of t instead of DDPM's sinusoidal embedding of 999 t, and no flips.
    return SDEConfig(data="cifar10", sde="vp", arch="unet", width=128, depth=2, channel_mults=(1, 2, 2, 2),
                     attn_resolutions=(16,), dropout=0.1, sample_steps=1000, snr=0.01,
                     train=TrainConfig(steps=1_300_000, batch_size=128, lr=2e-4, warmup=5000, ema_decay=0.9999,
                                       grad_clip=1.0, log_every=100, ckpt_every=10000))


def _cifar10_subvp() -> SDEConfig:
    cfg = _cifar10()
    cfg.sde = "subvp"
    return cfg


_DDPM_CONT = ("Fourier features of t stand in for DDPM's sinusoidal embedding of 999 t, and there are no random flips; "
              "the network's size and everything else are the paper's")
PRESETS: Presets[SDEConfig] = Presets(
    "sde", toy=_toy(), digits=_digits(), cpu=_cpu(), cifar10=_cifar10(), **{"cifar10-subvp": _cifar10_subvp()},
    reproduces={
        "cifar10": Reproduces("Song et al. 2021, score SDEs", "Table 2, DDPM cont. (VP)", 35.7, 1_300_000,
                              differs=_DDPM_CONT, reported="3.21 bits/dim on CIFAR-10"),
        "cifar10-subvp": Reproduces("Song et al. 2021, score SDEs", "Table 2, DDPM cont. (sub-VP)", 35.7, 1_300_000,
                                    differs=_DDPM_CONT, reported="3.05 bits/dim on CIFAR-10")})


def build_sde(cfg: SDEConfig) -> SDE:
    """The config's SDE, with its constants where the config sets them."""
    cls = SDES.get(cfg.sde)
    values = dict(zip(cls.range_params, (cfg.sde_min, cfg.sde_max)))
    kwargs = {k: v for k, v in values.items() if v is not None}
    if issubclass(cls, VPSDE):
        kwargs["discretization"] = cfg.discretization
    return cls(**kwargs)


class ScoreModel(nn.Module):
    """s(x, t) = net(x, t) / std(t): the network predicts the (negated) noise; dividing by the kernel's std gives
    a score with the right scale at every t (Song et al. 2021, Appendix H; Ho et al. 2020's ε-prediction)."""

    def __init__(self, net: nn.Module, sde: SDE):
        super().__init__()
        self.net, self.sde = net, sde

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        _, std = self.sde.marginal_coeffs(t)
        return self.net(x, t) / unsqueeze_as(std, x)


def sample_sde(model: ScoreModel, cfg: SDEConfig, n: int, *, sampler: str = "pc", steps: int | None = None,
               snr: float | None = None, denoise: bool = True, generator: torch.Generator | None = None,
               device: torch.device | str | None = None, record_every: int | None = None):
    """``n`` samples by ``sampler``, a name of `SAMPLERS`: predictor-corrector variants of `pc_sample` or "ode"
    (probability flow, adaptive RK45). Returns a `SampleResult` (``.x`` on the model's scale, ``.nfe``)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    shape = (n, *data_shape(cfg.data))
    if sampler not in SAMPLERS:
        raise ConfigError(f"unknown sampler {sampler!r}; choose one of: {', '.join(SAMPLERS)}")
    if SAMPLERS[sampler] is None:
        return ode_sample(model.sde, model, shape, denoise=denoise, generator=generator, device=device)
    pred, corr = SAMPLERS[sampler]
    return pc_sample(model.sde, model, shape, predictor=pred, corrector=corr, snr=cfg.snr if snr is None else snr,
                     n_steps=steps or cfg.sample_steps, denoise=denoise, generator=generator, device=device,
                     record_every=record_every)


def evaluate_bpd(model: ScoreModel, cfg: SDEConfig, *, n: int | None = None, divergence: str | None = None,
                 eps: float | None = None, seed: int = 0, batch_size: int = 100, per_image: bool = False
                 ) -> dict[str, Any]:
    """Test-split negative log-likelihood through the probability-flow ODE from ``eps`` (default the SDE's t_min,
    1e-5): bits/dim with uniform dequantisation for images (Hutchinson divergence by default), nats per point and
    the true value for toys (exact divergence). Returns the metrics, with the mean NFE and the number of points;
    for images with ``per_image=True`` also ``"per_image"``, the tensor of each test image's bits/dim (two models
    evaluated with the same seed see the same images, dequantisation noise and probes, so they can be paired)."""
    from ..train import Distributed

    device = next(model.parameters()).device
    group = Distributed.from_env(device)  # under torchrun each process takes a share of the test points
    gen = torch.Generator().manual_seed(seed + group.rank)
    start = time.perf_counter()
    eps = model.sde.t_min if eps is None else eps
    if cfg.data == "toy":
        from ..data.toy2d import get_toy

        x = held_out("toy", cfg.toy, n or 1000, seed=seed)
        mine = x[list(group.shard(len(x)))]
        res = log_likelihood(model.sde, model, mine.to(device), eps=eps, divergence=divergence or "exact")
        logp = group.gather(res.logp)
        out = {"nll_nats": float(-logp.mean()), "nfe": float(res.nfe), "n": float(x.shape[0])}
        dist = get_toy(cfg.toy)
        if getattr(dist, "has_density", False):
            out["true_nll_nats"] = float(-dist.log_prob(x).mean())
    else:
        x = held_out(cfg.data, n=n)  # [0, 1] for dequantisation
        share = group.shard(len(x))
        mine = x[share.start:share.stop]
        bpds, nfes = [], []
        for chunk in mine.split(batch_size):
            bpd, nfe = image_bits_per_dim(model.sde, model, chunk.to(device), n_bins=DATASETS.get(cfg.data).levels,
                                          generator=gen, eps=eps, divergence=divergence or "hutchinson")
            bpds.append(bpd.cpu())
            nfes.append(float(nfe))
        bpd = group.gather(torch.cat(bpds))
        nfe = group.gather(torch.tensor(nfes))
        out = {"test_bpd": float(bpd.mean()), "test_bpd_se": float(bpd.std() / len(bpd) ** 0.5),
               "nfe": float(nfe.mean()), "n": float(x.shape[0])}
        if per_image:
            out["per_image"] = bpd
    out["eps"] = eps
    out["seconds"] = round(time.perf_counter() - start, 2)
    return out


class SDEFamily(Family):
    name = "sde"
    config = SDEConfig
    presets = PRESETS
    aliases = {"data": "data", "sde": "sde"}

    def build_model(self, cfg: SDEConfig) -> ScoreModel:
        from ..nn import MLP, UNet

        shape = data_shape(cfg.data)
        if cfg.arch == "mlp":
            net = MLP(2, hidden=cfg.width, num_blocks=cfg.depth, embedding="fourier", fourier_scale=4.0)
        else:
            net = UNet(shape[0], cfg.width, cfg.channel_mults, cfg.depth, cfg.attn_resolutions, cfg.dropout,
                       image_size=shape[1], embedding="fourier", fourier_scale=4.0)
        return ScoreModel(net, build_sde(cfg))

    def train_data(self, cfg: SDEConfig):
        return train_sampler(cfg.data, cfg.toy, centred=True)

    def loss(self, cfg: SDEConfig):
        sde = build_sde(cfg)
        return lambda model, x: sde_score_loss(model, sde, x, weighting=cfg.weighting)

    def describe(self, cfg: SDEConfig, model) -> tuple[str, str]:
        what = (f"score SDE model ({cfg.sde} SDE, {cfg.arch.upper()} with {count_parameters(model) / 1e6:.2f}M "
                f"parameters, s(x, t) = net(x, t) / std(t), {cfg.weighting} weighting)")
        data = (f"2-D toy {cfg.toy!r} (dlcourse.data.toy2d)" if cfg.data == "toy"
                else f"{cfg.data} train split, pixels mapped to [-1, 1]")
        return what, data

    def add_sample_args(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--sampler", default="pc", choices=tuple(SAMPLERS), help="(default: %(default)s)")
        p.add_argument("--steps", type=int, default=None, help="sampler steps (default: the config's)")
        p.add_argument("--snr", type=float, default=None, help="corrector signal-to-noise ratio (default: the config's)")
        p.add_argument("--no-denoise", action="store_true", help="skip the final (Tweedie) denoising step")

    def sample(self, model, cfg: SDEConfig, n: int, generator, args) -> SampleOutput:
        res = sample_sde(model, cfg, n, sampler=args.sampler, steps=args.steps, snr=args.snr,
                         denoise=not args.no_denoise, generator=generator)
        x = res.x.cpu() if cfg.data == "toy" else ((res.x.cpu() + 1) / 2).clamp(0, 1)
        plain = "" if not args.no_denoise else ", no final denoising"
        return SampleOutput(x, res.nfe, f"{args.sampler}{plain}, NFE {res.nfe}")

    def add_eval_args(self, p: argparse.ArgumentParser) -> None:
        from ..quality.metrics import add_quality_args

        what = p.add_mutually_exclusive_group(required=True)
        what.add_argument("--bpd", action="store_true",
                          help="test-split bits/dim (images) or nats/point (toys) through the probability-flow ODE")
        what.add_argument("--quality", action="store_true",
                          help="Fréchet distance and classifier score of --n samples (default 1000)")
        p.add_argument("--n", "--samples", dest="n", type=int, default=None,
                       help="--bpd: the first N test points (default: all; toys 1000); --quality: samples")
        p.add_argument("--divergence", choices=("exact", "hutchinson"), default=None,
                       help="divergence of the ODE drift (default: exact for toys, hutchinson for images)")
        p.add_argument("--eps", type=float, default=None, help="start time of the ODE (default: the SDE's, 1e-5)")
        p.add_argument("--seed", type=int, default=0, help="seed of the dequantisation, Hutchinson and sampler noise")
        add_quality_args(p)
        self.add_sample_args(p)

    def evaluate(self, model, cfg: SDEConfig, args) -> dict:
        if args.quality:
            from ..quality.metrics import family_quality

            return family_quality(self, model, cfg, args)
        return evaluate_bpd(model, cfg, n=args.n, divergence=args.divergence, eps=args.eps, seed=args.seed)


FAMILY = SDEFamily()
