"""A generic conditional U-Net ``UNet(...)(x (B, C, H, W), c (B,)) -> (B, C, H, W)``.

The architecture of DDPM (Ho et al. 2020, Appendix B), itself a PixelCNN++ / Wide-ResNet U-Net: residual blocks
with GroupNorm and SiLU, the embedding of the conditioning scalar c added inside every residual block,
self-attention at chosen resolutions, strided-conv downsampling and nearest-neighbour upsampling, and a skip
connection from every block of the way down to one block of the way up. NCSN feeds it c = log σ; the score-SDE
family feeds it c = t (or log σ(t)).

Any image size works: when a level's size is odd, the way up is resized to the size of its skip connection.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ShapeError
from ..utils import unsqueeze_as
from .embed import check_condition, make_embedding

__all__ = ["UNet", "ResBlock", "AttentionBlock", "attention_reference", "group_norm"]


def group_norm(channels: int, num_groups: int = 32) -> nn.GroupNorm:
    """GroupNorm (Wu & He 2018) with at most ``num_groups`` groups of at least 4 channels each (fewer for tiny C)."""
    groups = math.gcd(channels, max(1, min(num_groups, channels // 4)))
    return nn.GroupNorm(groups, channels, eps=1e-6)


def _zero(module: nn.Module) -> nn.Module:
    """Zero a layer's weights so its residual branch starts as the identity (DDPM's initialisation)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """x + conv(act(norm(conv(act(norm(x))) + W e))): a residual block that sees the embedding e of c."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float = 0.0, num_groups: int = 32) -> None:
        super().__init__()
        self.norm1 = group_norm(in_ch, num_groups)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_ch)
        self.norm2 = group_norm(out_ch, num_groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.act(self.norm1(x)))  # (B, C_out, H, W)
        h = h + unsqueeze_as(self.emb(self.act(emb)), h)  # (B, C_out) broadcast over H, W
        h = self.conv2(self.dropout(self.act(self.norm2(h))))
        return self.skip(x) + h


def attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q kᵀ / √d) v written out (Vaswani et al. 2017, eq. 1). q, k, v (B, heads, N, d) -> (B, heads, N, d).

    The readable path; `AttentionBlock` uses ``F.scaled_dot_product_attention`` (the fast path) unless told not to,
    and a test checks that the two agree.
    """
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)  # (B, heads, N, N)
    return weights @ v  # (B, heads, N, d)


class AttentionBlock(nn.Module):
    """x + proj(attention(q, k, v)) over the H·W positions of a feature map, with ``num_heads`` heads."""

    def __init__(self, channels: int, num_heads: int = 1, num_groups: int = 32) -> None:
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"channels ({channels}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.norm = group_norm(channels, num_groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv2d(channels, channels, 1))
        self.fast = True  #: use F.scaled_dot_product_attention; False: `attention_reference`

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.num_heads, c // self.num_heads, h * w)  # (B, 3, h, d, N)
        q, k, v = qkv.transpose(-2, -1).unbind(1)  # each (B, heads, N, d)
        out = F.scaled_dot_product_attention(q, k, v) if self.fast else attention_reference(q, k, v)
        out = out.transpose(-2, -1).reshape(b, c, h, w)  # (B, C, H, W)
        return x + self.proj(out)


class _Down(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)  # (B, C, ceil(H/2), ceil(W/2))


class _Up(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        return self.conv(F.interpolate(x, size=tuple(size), mode="nearest"))  # (B, C, *size)


class UNet(nn.Module):
    """U-Net on images conditioned on a per-sample scalar: ``UNet(1, image_size=8)(x (B,1,8,8), c (B,))``.

    Args:
        in_channels: image channels C (also the output channels unless ``out_channels`` is given).
        channels: base width; level i has ``channels * channel_mults[i]`` channels.
        channel_mults: one multiplier per resolution level; the image is halved between levels.
        num_res_blocks: residual blocks per level on the way down (one more on the way up).
        attn_resolutions: spatial sizes (e.g. ``(16,)``) at which a self-attention block follows each res block.
        dropout: dropout inside the residual blocks.
        image_size: the input's height (used only to decide where ``attn_resolutions`` apply).
        out_channels: output channels (default ``in_channels``).
        emb_dim: size of the embedding of c (default ``4 * channels``).
        embedding: ``"fourier"`` (random Fourier features of c; NCSN++ uses it on log σ) or ``"sinusoidal"``.
        fourier_scale: std of the Fourier frequencies.
        input_scale: multiplies c before a sinusoidal embedding (1000 for t in [0, 1]).
        num_heads: attention heads.
        num_groups: GroupNorm groups (at most; tiny layers use fewer).
    """

    def __init__(self, in_channels: int, channels: int = 64, channel_mults: Sequence[int] = (1, 2, 2),
                 num_res_blocks: int = 2, attn_resolutions: Sequence[int] = (16,), dropout: float = 0.0, *,
                 image_size: int = 32, out_channels: int | None = None, emb_dim: int | None = None,
                 embedding: str = "fourier", fourier_scale: float = 16.0, input_scale: float = 1.0,
                 num_heads: int = 1, num_groups: int = 32) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels or in_channels
        emb_dim = emb_dim or 4 * channels
        self.embed = nn.Sequential(make_embedding(embedding, channels, fourier_scale, input_scale),
                                   nn.Linear(channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.conv_in = nn.Conv2d(in_channels, channels, 3, padding=1)

        def res(i: int, o: int) -> ResBlock:
            return ResBlock(i, o, emb_dim, dropout, num_groups)

        # Way down: record the channels of every skip connection.
        self.down = nn.ModuleList()
        skips, ch, size = [channels], channels, image_size
        for level, mult in enumerate(channel_mults):
            for _ in range(num_res_blocks):
                blocks = nn.ModuleList([res(ch, channels * mult)])
                ch = channels * mult
                if size in attn_resolutions:
                    blocks.append(AttentionBlock(ch, num_heads, num_groups))
                self.down.append(blocks)
                skips.append(ch)
            if level != len(channel_mults) - 1:
                self.down.append(nn.ModuleList([_Down(ch)]))
                skips.append(ch)
                size = (size + 1) // 2

        self.mid = nn.ModuleList([res(ch, ch), AttentionBlock(ch, num_heads, num_groups), res(ch, ch)])

        # Way up: num_res_blocks + 1 blocks per level, each eating one skip connection.
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mults))):
            for _ in range(num_res_blocks + 1):
                blocks = nn.ModuleList([res(ch + skips.pop(), channels * mult)])
                ch = channels * mult
                if size in attn_resolutions:
                    blocks.append(AttentionBlock(ch, num_heads, num_groups))
                self.up.append(blocks)
            if level != 0:
                self.up.append(nn.ModuleList([_Up(ch)]))
                size = size * 2
        assert not skips
        self.norm_out = group_norm(ch, num_groups)
        self.conv_out = _zero(nn.Conv2d(ch, self.out_channels, 3, padding=1))

    def set_fast_attention(self, fast: bool) -> "UNet":
        """Switch every attention block between the SDPA kernel (True) and `attention_reference` (False)."""
        for m in self.modules():
            if isinstance(m, AttentionBlock):
                m.fast = fast
        return self

    def forward(self, x: torch.Tensor, c: torch.Tensor | float) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ShapeError(f"UNet expects x of shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        c = check_condition(c, x)  # (B,)
        emb = self.embed(c.to(x.dtype))  # (B, E)
        h = self.conv_in(x)  # (B, ch, H, W)
        hs = [h]
        for blocks in self.down:
            for block in blocks:
                h = block(h, emb) if isinstance(block, ResBlock) else block(h)
            hs.append(h)
        for block in self.mid:
            h = block(h, emb) if isinstance(block, ResBlock) else block(h)
        for blocks in self.up:
            if isinstance(blocks[0], _Up):
                h = blocks[0](h, hs[-1].shape[-2:])  # back to the size of the next skip connection
                continue
            h = torch.cat([h, hs.pop()], dim=1)  # (B, ch + skip_ch, H, W)
            for block in blocks:
                h = block(h, emb) if isinstance(block, ResBlock) else block(h)
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, C_out, H, W)
