"""A conditional residual MLP ``(x, c) -> (B, out_dim)`` for low-dimensional data (the 2-D toys).

Conditioned on a per-sample scalar c of shape (B,) (log σ for NCSN, t for the score SDEs) through a Fourier or
sinusoidal embedding that is added inside every residual block.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ShapeError
from .embed import check_condition, make_embedding

__all__ = ["MLP"]


class _ResidualBlock(nn.Module):
    """h + W₂ act(W₁ act(h) + E e): one hidden layer, the embedding e added before the second activation."""

    def __init__(self, hidden: int, emb_dim: int) -> None:
        super().__init__()
        self.lin1 = nn.Linear(hidden, hidden)
        self.emb = nn.Linear(emb_dim, hidden)
        self.lin2 = nn.Linear(hidden, hidden)
        self.act = nn.SiLU()

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return h + self.lin2(self.act(self.lin1(self.act(h)) + self.emb(emb)))  # (B, H)


class MLP(nn.Module):
    """Residual MLP with a conditioning scalar: ``MLP(2)(x (B, 2), c (B,)) -> (B, 2)``.

    Args:
        in_dim: data dimension D.
        out_dim: output dimension (default D: a vector field such as a score).
        hidden: width of the hidden layers.
        num_blocks: number of residual blocks (two linear layers each).
        emb_dim: size of the embedding of c.
        embedding: ``"fourier"`` (random Fourier features; good for c = log σ) or ``"sinusoidal"``.
        fourier_scale: std of the Fourier frequencies.
        input_scale: multiplies c before a sinusoidal embedding (e.g. 1000 for t in [0, 1]).
    """

    def __init__(self, in_dim: int, out_dim: int | None = None, hidden: int = 128, num_blocks: int = 3,
                 emb_dim: int = 64, embedding: str = "fourier", fourier_scale: float = 1.0,
                 input_scale: float = 1.0) -> None:
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim or in_dim
        self.embed = nn.Sequential(make_embedding(embedding, emb_dim, fourier_scale, input_scale),
                                   nn.Linear(emb_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.inp = nn.Linear(in_dim, hidden)
        self.blocks = nn.ModuleList(_ResidualBlock(hidden, emb_dim) for _ in range(num_blocks))
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, self.out_dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor | float) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ShapeError(f"MLP expects x of shape (B, {self.in_dim}), got {tuple(x.shape)}")
        c = check_condition(c, x)  # (B,)
        emb = self.embed(c.to(x.dtype))  # (B, E)
        h = self.inp(x)  # (B, H)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(h)  # (B, out_dim)
