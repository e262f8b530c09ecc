"""The ``ncsn`` family: noise-conditional score networks and annealed Langevin dynamics (``dlcourse train|sample
ncsn``).

    dlcourse train ncsn --preset toy --out runs/ncsn-toy --export ncsn_toy.safetensors
    dlcourse train ncsn --preset cpu                              # Fashion-MNIST (--data mnist: MNIST), a CPU
    dlcourse train ncsn --preset cifar10 --device cuda            # NCSNv2's CIFAR-10 setting, for a GPU
    dlcourse sample ncsn --checkpoint ncsn_fashion --n 64 --out grid.png

Configs and presets: `dlcourse.score.config`. Fields of the noise ladder and the sampler left as ``null`` are
filled in from the data with NCSNv2's techniques
(σ₁ from the largest pairwise distance, L from the ratio rule, ε from the step-count rule) before training
starts, and the filled-in values are what the run's config.json and exported weights record.
"""

from __future__ import annotations

import argparse
import dataclasses
import math

import torch

from ..data.sets import data_shape, train_sampler
from ..errors import ConfigError
from ..registry import Family, SampleOutput
from ..utils import count_parameters, log
from .config import PRESETS, NCSNConfig
from .langevin import annealed_langevin_dynamics
from .losses import ncsn_loss
from .ncsn import (NCSN, geometric_sigmas, max_pairwise_distance, ncsnv2_gamma, ncsnv2_num_levels,
                   ncsnv2_step_size)

__all__ = ["FAMILY", "resolve_config", "sigmas_of", "sample_ncsn", "model_image_chain"]

# Largest number of training points used for technique 1 (an exact max over N² pairs).
_PAIRWISE_SUBSET = 5000


def resolve_config(cfg: NCSNConfig, data: torch.Tensor | None = None, verbose: bool = False) -> NCSNConfig:
    """A copy of ``cfg`` with every null ladder / sampler field filled in by NCSNv2's techniques.

    σ₁: technique 1 on (up to 5000 of) the training points ``data`` (drawn from the toy or loaded if not given);
    L: technique 2 (`ncsnv2_gamma` for D = data dim); ε: technique 4 for T = ``sampler.n_steps_each`` and the
    ladder's actual ratio, in the sampler's convention.
    """
    cfg = dataclasses.replace(cfg, noise=dataclasses.replace(cfg.noise), sampler=dataclasses.replace(cfg.sampler))
    notes = []
    if cfg.noise.sigma_max is None:
        if data is None:
            data = train_sampler(cfg.data, cfg.toy, cfg.data_limit)(
                torch.Generator().manual_seed(cfg.train.seed), _PAIRWISE_SUBSET)
        cfg.noise.sigma_max = round(max_pairwise_distance(data[:_PAIRWISE_SUBSET]), 4)
        notes.append(f"sigma_max={cfg.noise.sigma_max} (technique 1)")
    if cfg.noise.num_levels is None:
        gamma = ncsnv2_gamma(math.prod(data_shape(cfg.data)))
        cfg.noise.num_levels = ncsnv2_num_levels(cfg.noise.sigma_max, cfg.noise.sigma_min, gamma)
        notes.append(f"num_levels={cfg.noise.num_levels} (technique 2, gamma={gamma:.4f})")
    if cfg.sampler.eps is None:
        ratio = (cfg.noise.sigma_max / cfg.noise.sigma_min) ** (1 / (cfg.noise.num_levels - 1))
        eps = ncsnv2_step_size(ratio, cfg.noise.sigma_min, cfg.sampler.n_steps_each, cfg.sampler.convention)
        cfg.sampler.eps = float(f"{eps:.4g}")
        notes.append(f"eps={cfg.sampler.eps} (technique 4, T={cfg.sampler.n_steps_each})")
    if verbose and notes:
        log("ncsn: " + ", ".join(notes))
    return cfg


def sigmas_of(cfg: NCSNConfig) -> torch.Tensor:
    """The config's noise ladder (L,), decreasing (the config must be resolved)."""
    if cfg.noise.sigma_max is None or cfg.noise.num_levels is None:
        raise ConfigError("the noise ladder is not resolved yet; call resolve_config(cfg) first")
    return geometric_sigmas(cfg.noise.sigma_max, cfg.noise.sigma_min, cfg.noise.num_levels)


def _with_sampler(cfg: NCSNConfig, overrides: dict) -> NCSNConfig:
    """``cfg`` with sampler fields replaced; a new T without a new ε re-derives ε by technique 4."""
    scfg = dataclasses.replace(cfg.sampler, **overrides)
    if "n_steps_each" in overrides and "eps" not in overrides:
        scfg.eps = None
    return resolve_config(dataclasses.replace(cfg, sampler=scfg))


def sample_ncsn(model: NCSN, cfg: NCSNConfig, n: int, *, generator: torch.Generator | None = None,
                device: torch.device | str | None = None, record_every: int | None = None, **sampler_overrides):
    """``n`` samples (n, *data_shape) by annealed Langevin dynamics with the config's ladder and sampler.

    ``sampler_overrides`` replace fields of ``cfg.sampler`` (e.g. ``n_steps_each=10``, ``eps=...``, ``denoise=False``;
    if ``n_steps_each`` changes and ``eps`` is not given, ε is re-derived with technique 4).
    Returns samples, or ``(samples, frames)`` with ``record_every`` (see `annealed_langevin_dynamics`).
    """
    cfg = _with_sampler(cfg, sampler_overrides)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    u = torch.rand((n, *data_shape(cfg.data)), generator=generator,
                   device=generator.device if generator is not None else device)
    x0 = (cfg.sampler.init_low + (cfg.sampler.init_high - cfg.sampler.init_low) * u).to(device)
    return annealed_langevin_dynamics(model, x0, sigmas_of(cfg).to(device), cfg.sampler.eps,
                                      cfg.sampler.n_steps_each, convention=cfg.sampler.convention,
                                      denoise=cfg.sampler.denoise, generator=generator, record_every=record_every)


def model_image_chain(checkpoint: str, n_images: int = 16, *, seed: int = 0, n_frames: int = 40,
                      **sampler_overrides):
    """The recorded chain (`dlcourse.viz.langevin.ImageChain`) of a trained image NCSN (a shipped name or a path)
    on the CPU, with its config's ladder and sampler (``sampler_overrides`` as in `sample_ncsn`): the same samples
    as ``dlcourse sample ncsn --seed SEED`` on the CPU."""
    from ..viz.langevin import image_chain

    model, cfg = FAMILY.load(checkpoint, "cpu")
    if cfg.data == "toy":
        raise ConfigError(f"{checkpoint} is a 2-D model; use LangevinPlayer(score_fn=model) for it")
    cfg = _with_sampler(cfg, sampler_overrides)
    s = cfg.sampler
    generator = torch.Generator().manual_seed(int(seed))
    x0 = s.init_low + (s.init_high - s.init_low) * torch.rand((n_images, *data_shape(cfg.data)), generator=generator)
    return image_chain(model, x0, sigmas_of(cfg), s.eps, s.n_steps_each, convention=s.convention, denoise=s.denoise,
                       n_frames=n_frames, generator=generator)


class NCSNFamily(Family):
    name = "ncsn"
    config = NCSNConfig
    presets = PRESETS
    aliases = {"data": "data"}

    def build_model(self, cfg: NCSNConfig) -> NCSN:
        from ..nn import MLP, UNet

        m, shape = cfg.model, data_shape(cfg.data)
        if m.arch == "mlp":
            net = MLP(shape[0], hidden=m.hidden, num_blocks=m.num_blocks, embedding=m.embedding,
                      fourier_scale=m.fourier_scale)
        else:
            net = UNet(shape[0], m.channels, m.channel_mults, m.num_res_blocks, m.attn_resolutions, m.dropout,
                       image_size=shape[1], embedding=m.embedding, fourier_scale=m.fourier_scale)
        return NCSN(net, conditional=m.conditional)

    def train_data(self, cfg: NCSNConfig):
        return train_sampler(cfg.data, cfg.toy, cfg.data_limit)

    def prepare(self, cfg: NCSNConfig, sampler) -> NCSNConfig:
        data = sampler.tensors[0] if hasattr(sampler, "tensors") else None  # images; toys are drawn afresh
        return resolve_config(cfg, data, verbose=True)

    def loss(self, cfg: NCSNConfig):
        sigmas = sigmas_of(cfg)

        def loss_fn(model, x: torch.Tensor) -> torch.Tensor:
            if cfg.random_flip:
                flip = torch.rand(x.shape[0], device=x.device) < 0.5  # (B,)
                x = torch.where(flip.reshape(-1, *([1] * (x.dim() - 1))), x.flip(-1), x)
            return ncsn_loss(model, x, sigmas)

        return loss_fn

    def describe(self, cfg: NCSNConfig, model) -> tuple[str, str]:
        arch = "MLP" if cfg.model.arch == "mlp" else "U-Net"
        s = cfg.sampler
        what = (f"NCSN score net ({arch}, {count_parameters(model) / 1e6:.2f}M parameters), s(x, sigma) = "
                f"net(x, log sigma)/sigma; {cfg.noise.num_levels} levels {cfg.noise.sigma_max:g} -> "
                f"{cfg.noise.sigma_min:g}; annealed Langevin T={s.n_steps_each}, eps={s.eps:g} ({s.convention} "
                f"convention){', final denoising step' if s.denoise else ''}")
        if cfg.data == "toy":
            return what, f"2-D toy {cfg.toy!r} (dlcourse.data.toy2d), fresh samples every step"
        limit = f" (first {cfg.data_limit})" if cfg.data_limit else ""
        return what, f"{cfg.data} train split{limit}, pixels in [0, 1]"

    def add_sample_args(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--steps-each", type=int, default=None, help="Langevin steps per level (default: the config's)")
        p.add_argument("--eps", type=float, default=None, help="step size at the last level (default: the config's)")
        p.add_argument("--no-denoise", action="store_true", help="skip the final denoising step")

    def add_eval_args(self, p: argparse.ArgumentParser) -> None:
        from ..quality.metrics import add_quality_args

        p.add_argument("--quality", action="store_true", required=True,
                       help="Fréchet distance and classifier score of --n samples")
        p.add_argument("--n", "--samples", dest="n", type=int, default=1000, help="samples (default: %(default)s)")
        p.add_argument("--seed", type=int, default=0, help="seed of the sampler (default: %(default)s)")
        add_quality_args(p)
        self.add_sample_args(p)

    def evaluate(self, model, cfg: NCSNConfig, args) -> dict:
        from ..quality.metrics import family_quality

        return family_quality(self, model, cfg, args)

    def sample(self, model, cfg: NCSNConfig, n: int, generator, args) -> SampleOutput:
        overrides = {k: v for k, v in (("n_steps_each", args.steps_each), ("eps", args.eps)) if v is not None}
        if args.no_denoise:
            overrides["denoise"] = False
        x = sample_ncsn(model, cfg, n, generator=generator, **overrides).cpu()
        scfg = _with_sampler(cfg, overrides).sampler
        nfe = cfg.noise.num_levels * scfg.n_steps_each + int(scfg.denoise)
        return SampleOutput(x, nfe, f"annealed Langevin{'' if scfg.denoise else ', no final denoising'}, NFE {nfe}")


FAMILY = NCSNFamily()
