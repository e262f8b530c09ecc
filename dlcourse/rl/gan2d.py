"""A GAN on the 2-D toy distributions: the adversarial game of Goodfellow et al. (2014) before GAIL applies it
to behaviour.

    gan = GAN2D(GANConfig(toy="eight_gaussians"))
    for _ in range(2000):
        stats = gan.step()                   # one discriminator and one generator update
    probs = gan.heatmap(lim=3.0, n=64)       # D(x) on a 64 x 64 grid, for the lecture's heat map
    x = gan.samples(512)                     # (512, 2) generator samples (fixed latent codes)
    frames = train_with_snapshots(GANConfig(), steps=2000, every=100)   # for a step-through widget

`gan_step` is the whole algorithm for one iteration (Goodfellow et al. 2014, Algorithm 1 with k = d_steps) and takes
its batches as arguments, so a widget or a test can drive it with any data.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config
from ..errors import ConfigError

__all__ = ["GANConfig", "Generator", "Discriminator2D", "discriminator_loss", "generator_loss", "gan_step", "GAN2D",
           "train_with_snapshots", "grid"]


def _mlp(in_dim: int, out_dim: int, hidden: int, depth: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    d = in_dim
    for _ in range(depth):
        layers += [nn.Linear(d, hidden), nn.LeakyReLU(0.2)]
        d = hidden
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


class Generator(nn.Module):
    """G(z): latent z (B, latent_dim) ~ N(0, I) -> a point x (B, 2)."""

    def __init__(self, latent_dim: int = 2, hidden: int = 128, depth: int = 3) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.net = _mlp(latent_dim, 2, hidden, depth)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)  # (B, 2)


class Discriminator2D(nn.Module):
    """The logit of D(x) = P[x is real], for points x (B, 2); returns (B,)."""

    def __init__(self, hidden: int = 128, depth: int = 3) -> None:
        super().__init__()
        self.net = _mlp(2, 1, hidden, depth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)  # (B,)


def discriminator_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """-(E_data[log D(x)] + E_z[log(1 - D(G(z)))]), the negated value function V(D, G) of Goodfellow et al. 2014,
    eq. (1), that D maximises; binary cross-entropy with label 1 for data and 0 for samples. Logits (B,)."""
    return F.softplus(-logits_real).mean() + F.softplus(logits_fake).mean()


def generator_loss(logits_fake: torch.Tensor, non_saturating: bool = True) -> torch.Tensor:
    """The generator's loss. ``non_saturating``: -E_z[log D(G(z))] (Goodfellow et al. 2014, Section 3, the fix for
    vanishing gradients early in training); otherwise the minimax E_z[log(1 - D(G(z)))] of eq. (1)."""
    if non_saturating:
        return F.softplus(-logits_fake).mean()
    return -F.softplus(logits_fake).mean()  # log(1 - σ(l)) = -softplus(l)


@dataclass
class GANConfig(Config):
    """The 2-D GAN: data, networks and optimisers."""

    #: toy distribution (a name from dlcourse.data.toy2d)
    toy: str = "eight_gaussians"
    #: dimension of the latent z
    latent_dim: int = 2
    #: hidden width of both networks
    hidden: int = 128
    #: hidden layers of both networks
    depth: int = 3
    #: Adam learning rate of both networks
    lr: float = 2e-4
    #: Adam's β₁ (0.5 as in DCGAN, Radford et al. 2016)
    beta1: float = 0.5
    #: points per batch
    batch_size: int = 256
    #: discriminator updates per generator update (k in Goodfellow et al. 2014, Algorithm 1)
    d_steps: int = 1
    #: use the non-saturating generator loss
    non_saturating: bool = True
    #: seed of the networks and the data stream
    seed: int = 0

    def check(self) -> None:
        if self.latent_dim < 1 or self.hidden < 1 or self.batch_size < 1 or self.d_steps < 1 or self.lr <= 0:
            raise ConfigError("latent_dim, hidden, batch_size, d_steps must be >= 1 and lr > 0")


def gan_step(G: Generator, D: Discriminator2D, opt_g, opt_d, real: torch.Tensor, z_d: torch.Tensor,
             z_g: torch.Tensor, non_saturating: bool = True) -> dict[str, float]:
    """One iteration of Goodfellow et al. 2014, Algorithm 1: a discriminator step on ``real`` (B, 2) against
    G(``z_d``), then a generator step with latents ``z_g`` (B, latent_dim). Returns both losses and D's mean outputs."""
    fake = G(z_d).detach()  # (B, 2)
    logits_real, logits_fake = D(real), D(fake)
    d_loss = discriminator_loss(logits_real, logits_fake)
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_d.step()
    g_loss = generator_loss(D(G(z_g)), non_saturating)
    opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    opt_g.step()
    return {"d_loss": float(d_loss.detach()), "g_loss": float(g_loss.detach()),
            "d_real": float(torch.sigmoid(logits_real).mean().detach()),
            "d_fake": float(torch.sigmoid(logits_fake).mean().detach())}


def grid(lim: float, n: int, device=None) -> torch.Tensor:
    """An n x n grid over [-lim, lim]², as points (n*n, 2), row-major with y varying slowest."""
    ticks = torch.linspace(-lim, lim, n, device=device)
    yy, xx = torch.meshgrid(ticks, ticks, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=-1)


class GAN2D:
    """Generator, discriminator, their optimisers and the data stream, advanced one `step` at a time."""

    def __init__(self, cfg: GANConfig | None = None, device: torch.device | str | None = None) -> None:
        from ..data.toy2d import get_toy

        self.cfg = cfg = cfg or GANConfig()
        device = torch.device(device or "cpu")
        torch.manual_seed(cfg.seed)
        self.G = Generator(cfg.latent_dim, cfg.hidden, cfg.depth).to(device)
        self.D = Discriminator2D(cfg.hidden, cfg.depth).to(device)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
        self.dist = get_toy(cfg.toy)
        self.data_gen = torch.Generator().manual_seed(cfg.seed)
        self.z_fixed = torch.randn(1024, cfg.latent_dim, generator=torch.Generator().manual_seed(cfg.seed + 1)).to(device)
        self.n_steps = 0

    @property
    def device(self) -> torch.device:
        return self.z_fixed.device

    def step(self) -> dict[str, float]:
        """``d_steps`` iterations of `gan_step` (the last generator step counts); returns the last losses."""
        cfg = self.cfg
        for _ in range(cfg.d_steps):
            real = self.dist.sample(cfg.batch_size, generator=self.data_gen).to(self.device)  # (B, 2)
            z = torch.randn(2, cfg.batch_size, cfg.latent_dim, generator=self.data_gen).to(self.device)
            stats = gan_step(self.G, self.D, self.opt_g, self.opt_d, real, z[0], z[1], cfg.non_saturating)
        self.n_steps += 1
        return stats

    @torch.no_grad()
    def heatmap(self, lim: float = 3.0, n: int = 64) -> torch.Tensor:
        """D(x) = P[real] on `grid`(lim, n), shape (n, n) (rows: y from -lim to lim)."""
        return torch.sigmoid(self.D(grid(lim, n, self.device))).reshape(n, n).cpu()

    @torch.no_grad()
    def samples(self, n: int = 512) -> torch.Tensor:
        """G(z) for the first n of a fixed set of latents (so frames over training are comparable), (n, 2)."""
        if n > len(self.z_fixed):
            raise ConfigError(f"at most {len(self.z_fixed)} fixed-latent samples, asked for {n}")
        return self.G(self.z_fixed[:n]).cpu()


def train_with_snapshots(cfg: GANConfig | None = None, steps: int = 2000, every: int = 100, lim: float = 3.0,
                         n_grid: int = 48, n_samples: int = 512, device=None) -> list[dict]:
    """Train a `GAN2D` and keep a frame every ``every`` steps (and at step 0): {"step", "heatmap" (n_grid, n_grid),
    "samples" (n_samples, 2), "d_loss", "g_loss"}, for the lecture's step-through widget."""
    gan = GAN2D(cfg, device)
    frames = [{"step": 0, "heatmap": gan.heatmap(lim, n_grid), "samples": gan.samples(n_samples),
               "d_loss": float("nan"), "g_loss": float("nan")}]
    for s in range(1, steps + 1):
        stats = gan.step()
        if s % every == 0:
            frames.append({"step": s, "heatmap": gan.heatmap(lim, n_grid), "samples": gan.samples(n_samples),
                           "d_loss": stats["d_loss"], "g_loss": stats["g_loss"]})
    return frames
