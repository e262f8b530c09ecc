"""Embeddings of a per-sample scalar ``c`` of shape (B,): a noise level log σ, a diffusion time t, ...

Both map (B,) -> (B, dim) with sines and cosines, so a network sees a smooth, bounded, multi-scale code of c
instead of one raw number whose magnitude can be anything from 1e-2 to 1e3.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ShapeError

__all__ = ["GaussianFourierFeatures", "SinusoidalEmbedding", "check_condition", "make_embedding"]


def check_condition(c: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """``c`` as a floating tensor of shape (B,) on ``x``'s device, for ``x`` of shape (B, ...).

    A Python number or a 0-d tensor is broadcast to every sample; anything else must already be (B,).
    """
    c = torch.as_tensor(c, device=x.device)
    if not c.is_floating_point():
        c = c.to(x.dtype)
    if c.dim() == 0:
        return c.expand(x.shape[0])
    if c.shape != (x.shape[0],):
        raise ShapeError(f"the conditioning c must be a float or a tensor of shape ({x.shape[0]},), one value per "
                         f"sample of x {tuple(x.shape)}; got shape {tuple(c.shape)}")
    return c


class GaussianFourierFeatures(nn.Module):
    """γ(c) = [sin(2π w c), cos(2π w c)] with fixed random frequencies w ~ N(0, scale²) (dim/2 of them).

    Random Fourier features (Tancik et al. 2020, "Fourier features let networks learn high frequency functions",
    Section 3); the noise-level embedding of NCSN++ (Song et al. 2021, Appendix H, applied to log σ with
    scale = 16). The frequencies are a buffer: saved with the weights, never trained.
    """

    def __init__(self, dim: int, scale: float = 16.0) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"embedding dim must be even, got {dim}")
        self.dim, self.scale = dim, scale
        self.register_buffer("freqs", torch.randn(dim // 2) * scale)  # (dim/2,)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        angles = 2 * math.pi * c.unsqueeze(-1) * self.freqs.to(c.dtype)  # (B, dim/2)
        return torch.cat([angles.sin(), angles.cos()], dim=-1)  # (B, dim)


class SinusoidalEmbedding(nn.Module):
    """The Transformer position code applied to a scalar: [sin(c ω_k), cos(c ω_k)], ω_k = max_period^(-k/(dim/2)).

    Vaswani et al. 2017, Section 3.5; the timestep embedding of DDPM (Ho et al. 2020, Appendix B). The
    frequencies span 1 down to 1/max_period, so c should vary over a range of order 1..max_period: pass
    ``input_scale=1000`` for a time t in [0, 1] (as score_sde does for VP models).
    """

    def __init__(self, dim: int, max_period: float = 10_000.0, input_scale: float = 1.0) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"embedding dim must be even, got {dim}")
        self.dim, self.max_period, self.input_scale = dim, max_period, input_scale
        k = torch.arange(dim // 2, dtype=torch.float32)
        self.register_buffer("freqs", torch.exp(-math.log(max_period) * k / (dim // 2)), persistent=False)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        angles = self.input_scale * c.unsqueeze(-1) * self.freqs.to(c.dtype)  # (B, dim/2)
        return torch.cat([angles.sin(), angles.cos()], dim=-1)  # (B, dim)


def make_embedding(kind: str, dim: int, fourier_scale: float = 16.0, input_scale: float = 1.0) -> nn.Module:
    """``"fourier"`` -> `GaussianFourierFeatures`, ``"sinusoidal"`` -> `SinusoidalEmbedding`."""
    if kind == "fourier":
        return GaussianFourierFeatures(dim, fourier_scale)
    if kind == "sinusoidal":
        return SinusoidalEmbedding(dim, input_scale=input_scale)
    from ..errors import ConfigError

    raise ConfigError(f"unknown embedding {kind!r}; choose 'fourier' or 'sinusoidal'")
