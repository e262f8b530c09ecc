"""``dlcourse train sde``, ``dlcourse sample sde`` and ``dlcourse eval sde --bpd``: score SDE models end to end.

The score model is s(x, t) = net(x, t) / std(t) (the network predicts -z, the noise that made x_t, as in
Song et al. 2021's continuous VP/sub-VP models and NCSN's s(x, σ) = net / σ), with the MLP for 2-D toys and the
U-Net for images, both from `dlcourse.nn`. Images live on [-1, 1] (``2x - 1``).
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import Presets, TrainConfig, config_from_dict
from ..errors import ConfigError
from ..utils import unsqueeze_as
from .likelihood import image_bits_per_dim, log_likelihood
from .losses import sde_score_loss
from .samplers import ode_sample, pc_sample
from .sdes import SDE, make_sde

__all__ = ["SDEConfig", "ScoreModel", "PRESETS", "build_sde", "build_model", "load_sde_model", "sample_sde",
           "evaluate_bpd", "FAMILY"]

KIND = "sde"
DATA_CHOICES = ("toy", "digits", "mnist", "fashion-mnist", "cifar10")
# Number of grey levels of each image set: the dequantisation bins of its bits/dim.
N_BINS = {"digits": 17, "mnist": 256, "fashion-mnist": 256, "cifar10": 256}


@dataclass
class SDEConfig:
    """A whole score-SDE run: data, SDE, network, sampler defaults and training loop."""

    #: "toy" (a 2-D distribution, see ``toy``) or an image set: digits, mnist, fashion-mnist, cifar10
    data: str = "toy"
    #: the 2-D distribution when data="toy" (a name from dlcourse.data.toy2d)
    toy: str = "two_gaussians"
    #: "ve", "vp" or "subvp"
    sde: str = "vp"
    #: VE: σ_min, σ_max; VP / sub-VP: β_min, β_max (Song et al. 2021's defaults: 0.01, 50 and 0.1, 20)
    sde_min: float = 0.1
    sde_max: float = 20.0
    #: loss weighting: "score" (λ = std²) or "likelihood" (λ = g²)
    weighting: str = "score"
    #: "mlp" (toys) or "unet" (images)
    arch: str = "mlp"
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

    def __post_init__(self) -> None:
        if self.data not in DATA_CHOICES:
            raise ConfigError(f"unknown data {self.data!r} for sde; choose one of: {', '.join(DATA_CHOICES)}")
        if self.sde not in ("ve", "vp", "subvp"):
            raise ConfigError(f"unknown sde {self.sde!r}; choose ve, vp or subvp")
        if self.weighting not in ("score", "likelihood"):
            raise ConfigError(f"weighting must be 'score' or 'likelihood', got {self.weighting!r}")
        if (self.data == "toy") != (self.arch == "mlp"):
            raise ConfigError(f"data={self.data!r} needs arch={'mlp' if self.data == 'toy' else 'unet'!r}; "
                              f"use --preset {'toy' if self.data == 'toy' else 'digits or cpu'}")


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
    return SDEConfig(data="fashion-mnist", sde="vp", arch="unet", width=32, depth=1, channel_mults=(1, 2, 2),
                     sample_steps=500, snr=0.01,
                     train=TrainConfig(steps=20000, batch_size=64, lr=5e-4, warmup=500, ema_decay=0.999,
                                       log_every=100, ckpt_every=1000))


def _cifar10() -> SDEConfig:
    # Song et al. 2021, Appendix H: DDPM++-style setting for VP on CIFAR-10 (batch 128, lr 2e-4, warm-up 5000,
    # EMA 0.9999, grad clip 1, 1.3M iterations; here DDPM's 35.7M-parameter U-Net with dropout 0.1 and flips off).
    return SDEConfig(data="cifar10", sde="vp", arch="unet", width=128, depth=2, channel_mults=(1, 2, 2, 2),
                     attn_resolutions=(16,), dropout=0.1, sample_steps=1000, snr=0.01,
                     train=TrainConfig(steps=1_300_000, batch_size=128, lr=2e-4, warmup=5000, ema_decay=0.9999,
                                       grad_clip=1.0, log_every=100, ckpt_every=10000))


PRESETS: Presets[SDEConfig] = Presets(KIND, toy=_toy(), digits=_digits(), cpu=_cpu(), cifar10=_cifar10())


def build_sde(cfg: SDEConfig) -> SDE:
    if cfg.sde == "ve":
        return make_sde("ve", sigma_min=cfg.sde_min, sigma_max=cfg.sde_max)
    return make_sde(cfg.sde, beta_min=cfg.sde_min, beta_max=cfg.sde_max)


class ScoreModel(nn.Module):
    """s(x, t) = net(x, t) / std(t): the network predicts the (negated) noise; dividing by the kernel's std gives
    a score with the right scale at every t (Song et al. 2021, Appendix H; Ho et al. 2020's ε-prediction)."""

    def __init__(self, net: nn.Module, sde: SDE):
        super().__init__()
        self.net, self.sde = net, sde

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        _, std = self.sde.marginal_coeffs(t)
        return self.net(x, t) / unsqueeze_as(std, x)


def data_shape(cfg: SDEConfig) -> tuple[int, ...]:
    if cfg.data == "toy":
        return (2,)
    from ..data.images import IMAGE_SHAPES

    return IMAGE_SHAPES[cfg.data]


def build_model(cfg: SDEConfig) -> ScoreModel:
    from ..nn import MLP, UNet

    shape = data_shape(cfg)
    if cfg.arch == "mlp":
        net = MLP(2, hidden=cfg.width, num_blocks=cfg.depth, embedding="fourier", fourier_scale=4.0)
    else:
        net = UNet(shape[0], cfg.width, cfg.channel_mults, cfg.depth, cfg.attn_resolutions, cfg.dropout,
                   image_size=shape[1], embedding="fourier", fourier_scale=4.0)
    return ScoreModel(net, build_sde(cfg))


def _images(cfg: SDEConfig, split: str) -> torch.Tensor:
    """Images of a split on [-1, 1] (N, C, H, W)."""
    from ..data.images import load_images

    images, _ = load_images(cfg.data, split)
    return 2 * images - 1


def train(cfg: SDEConfig, run) -> Any:
    """``dlcourse train sde``: data, model and the continuous-time DSM loss through the shared loop."""
    from ..registry import export_trained
    from ..train import DistributionSampler, TensorSampler, fit
    from ..utils import seed_all

    seed_all(cfg.train.seed)
    if cfg.data == "toy":
        from ..data.toy2d import get_toy

        sampler = DistributionSampler(get_toy(cfg.toy), cfg.train.batch_size)  # (B, 2) fresh every step
    else:
        sampler = TensorSampler(_images(cfg, "train"), batch_size=cfg.train.batch_size)
    sde = build_sde(cfg)

    def loss_fn(model, x: torch.Tensor) -> torch.Tensor:
        return sde_score_loss(model, sde, x, weighting=cfg.weighting)

    seed_all(cfg.train.seed)
    model = build_model(cfg)
    result = fit(model, loss_fn, sampler, cfg.train, run.out_dir, kind=KIND, config=cfg, device=run.device,
                 resume=run.resume)
    print(f"sde: trained {result.step} steps, last loss {result.metrics.get('loss', float('nan')):.4g}; "
          f"run folder {run.out_dir}")
    export_trained(run, KIND, cfg, result.ema_model.state_dict(), result.metrics, lambda: _describe(cfg))
    return result


def _describe(cfg: SDEConfig) -> tuple[str, str]:
    """(what, data) lines of a manifest entry."""
    nparams = sum(p.numel() for p in build_model(cfg).parameters())
    what = (f"score SDE model ({cfg.sde.upper()} SDE, {cfg.arch.upper()} with {nparams / 1e6:.2f}M parameters, "
            f"s(x, t) = net(x, t) / std(t), {cfg.weighting} weighting)")
    data = (f"2-D toy {cfg.toy!r} (dlcourse.data.toy2d)" if cfg.data == "toy"
            else f"{cfg.data} train split, pixels mapped to [-1, 1]")
    return what, data


def load_sde_model(name_or_path: str | Path, device: torch.device | str | None = None) -> tuple[ScoreModel, SDEConfig]:
    """A trained score SDE model (eval mode) and its config, from a shipped name, a .safetensors export, a run
    folder or its ckpt.pt (EMA weights)."""
    from ..checkpoint import load_model_weights, load_state_into

    state, meta, path = load_model_weights(name_or_path, kind=KIND)
    cfg = config_from_dict(SDEConfig, meta["config"])
    model = build_model(cfg)
    load_state_into(model, state, source=str(path))
    return model.to(device or "cpu").eval(), cfg


def sample_sde(model: ScoreModel, cfg: SDEConfig, n: int, *, sampler: str = "pc", steps: int | None = None,
               snr: float | None = None, generator: torch.Generator | None = None,
               device: torch.device | str | None = None):
    """``n`` samples by ``sampler``: "pc" (reverse diffusion + Langevin), "predictor" (reverse diffusion only),
    "corrector" (Langevin only), "em" (Euler-Maruyama) or "ode" (probability flow, adaptive RK45).
    Returns a `SampleResult` (``.x`` on the data's scale, ``.nfe``)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    shape = (n, *data_shape(cfg))
    if sampler == "ode":
        return ode_sample(model.sde, model, shape, generator=generator, device=device)
    kinds = {"pc": ("reverse_diffusion", "langevin"), "predictor": ("reverse_diffusion", "none"),
             "corrector": ("none", "langevin"), "em": ("euler_maruyama", "none")}
    if sampler not in kinds:
        raise ConfigError(f"unknown sampler {sampler!r}; choose one of: {', '.join([*kinds, 'ode'])}")
    pred, corr = kinds[sampler]
    return pc_sample(model.sde, model, shape, predictor=pred, corrector=corr, snr=cfg.snr if snr is None else snr,
                     n_steps=steps or cfg.sample_steps, generator=generator, device=device)


def evaluate_bpd(model: ScoreModel, cfg: SDEConfig, *, n: int | None = None, divergence: str | None = None,
                 seed: int = 0, batch_size: int = 100) -> dict[str, float]:
    """Test-split negative log-likelihood through the probability-flow ODE: bits/dim with uniform dequantisation for
    images (Hutchinson divergence by default), nats per point and the true value for toys (exact divergence).
    Returns a dict of metrics including the mean NFE and the number of points."""
    import time

    gen = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    start = time.perf_counter()
    if cfg.data == "toy":
        from ..data.toy2d import get_toy

        dist = get_toy(cfg.toy)
        x = dist.sample(n or 1000, generator=gen)
        res = log_likelihood(model.sde, model, x.to(device), divergence=divergence or "exact")
        out = {"nll_nats": float(-res.logp.mean()), "nfe": float(res.nfe), "n": float(x.shape[0])}
        if getattr(dist, "has_density", False):
            out["true_nll_nats"] = float(-dist.log_prob(x).mean())
    else:
        x = (_images(cfg, "test")[:n] + 1) / 2  # back to [0, 1] for dequantisation
        bpds, nfes = [], []
        for chunk in x.split(batch_size):
            bpd, nfe = image_bits_per_dim(model.sde, model, chunk.to(device), n_bins=N_BINS[cfg.data],
                                          generator=gen, divergence=divergence or "hutchinson")
            bpds.append(bpd.cpu())
            nfes.append(nfe)
        out = {"test_bpd": float(torch.cat(bpds).mean()), "nfe": float(sum(nfes) / len(nfes)), "n": float(x.shape[0])}
    out["seconds"] = round(time.perf_counter() - start, 2)
    return out


# ---- command line ----

def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sde", default=None, choices=("ve", "vp", "subvp"), help="the forward SDE (default: the preset's)")
    p.add_argument("--data", default=None, metavar="DATA", help=f"{', '.join(DATA_CHOICES)} (default: the preset's)")


def _apply_train_args(cfg: SDEConfig, args: argparse.Namespace) -> SDEConfig:
    if args.sde is not None and args.sde != cfg.sde:
        defaults = {"ve": (0.01, 50.0), "vp": (0.1, 20.0), "subvp": (0.1, 20.0)}[args.sde]
        cfg = dataclasses.replace(cfg, sde=args.sde, sde_min=defaults[0], sde_max=defaults[1])
    if args.data is not None:
        if args.data not in DATA_CHOICES:
            raise ConfigError(f"unknown --data {args.data!r}; choose one of: {', '.join(DATA_CHOICES)}")
        if (args.data == "toy") != (cfg.arch == "mlp"):
            raise ConfigError(f"--data {args.data} does not fit this preset's {cfg.arch}; use --preset "
                              f"{'toy' if args.data == 'toy' else 'digits, cpu or cifar10'}")
        cfg = dataclasses.replace(cfg, data=args.data)
    return cfg


def _add_sample_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, metavar="NAME_OR_PATH",
                   help="a shipped checkpoint name (e.g. sde_digits), a .safetensors export, a run folder or ckpt.pt")
    p.add_argument("--sampler", default="pc", help="pc, predictor, corrector, em or ode (default: %(default)s)")
    p.add_argument("--steps", type=int, default=None, help="sampler steps (default: the config's)")
    p.add_argument("--snr", type=float, default=None, help="corrector signal-to-noise ratio (default: the config's)")
    p.add_argument("--n", type=int, default=64, help="number of samples (default: %(default)s)")
    p.add_argument("--out", type=Path, required=True, help="output: .png (grid or scatter plot) or .pt (tensor)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampler's noise (default: %(default)s)")
    p.add_argument("--scale", type=int, default=4, help="enlarge each image this many times in the PNG")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")


def _sample_cmd(args: argparse.Namespace) -> int:
    from ..registry import check_output
    from ..score.family import save_image_grid, save_scatter
    from ..utils import get_device

    if args.n < 1:
        raise ConfigError(f"--n must be at least 1, got {args.n}")
    check_output(args.out, args.force)
    device = get_device(args.device)
    model, cfg = load_sde_model(args.checkpoint, device)
    gen = torch.Generator(device=device).manual_seed(args.seed)
    res = sample_sde(model, cfg, args.n, sampler=args.sampler, steps=args.steps, snr=args.snr, generator=gen)
    x = res.x.cpu()
    if args.out.suffix == ".pt":
        args.out.parent.mkdir(parents=True, exist_ok=True)
        torch.save(x, args.out)
    elif cfg.data == "toy":
        save_scatter(x, args.out, title=f"sde samples ({cfg.toy}, {args.sampler}, NFE {res.nfe})")
    else:
        save_image_grid(((x + 1) / 2).clamp(0, 1), args.out, scale=args.scale)
    print(f"sde: wrote {args.n} samples to {args.out} ({args.sampler}, NFE {res.nfe})")
    return 0


def _add_eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, metavar="NAME_OR_PATH", help="as for `dlcourse sample sde`")
    p.add_argument("--bpd", action="store_true", required=True,
                   help="test-split bits/dim (images) or nats/point (toys) through the probability-flow ODE")
    p.add_argument("--n", type=int, default=None, help="evaluate the first N test points (default: all; toys: 1000)")
    p.add_argument("--divergence", choices=("exact", "hutchinson"), default=None,
                   help="divergence of the ODE drift (default: exact for toys, hutchinson for images)")
    p.add_argument("--seed", type=int, default=0, help="seed of the dequantisation and Hutchinson noise")
    p.add_argument("--record", action="store_true",
                   help="store the result in the shipped checkpoint's manifest entry (shipped names only)")


def _eval_cmd(args: argparse.Namespace) -> int:
    import shlex

    from ..utils import get_device

    model, cfg = load_sde_model(args.checkpoint, get_device(args.device))
    metrics = evaluate_bpd(model, cfg, n=args.n, divergence=args.divergence, seed=args.seed)
    print("  ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
    if args.record:
        from ..checkpoint import update_manifest_metrics

        command = "dlcourse " + " ".join(shlex.quote(a) for a in args.argv)
        update_manifest_metrics(args.checkpoint, metrics, command)
        print(f"sde: recorded the evaluation in the manifest entry of {args.checkpoint!r}")
    return 0


def _make_family():
    from ..registry import Family

    return Family(name=KIND, help="score SDEs: VE / VP / sub-VP, predictor-corrector, probability flow (Song et al. 2021)",
                  presets=PRESETS, train=train, add_train_args=_add_train_args, apply_train_args=_apply_train_args,
                  add_sample_args=_add_sample_args, sample=_sample_cmd, add_eval_args=_add_eval_args,
                  evaluate=_eval_cmd)


FAMILY = _make_family()
