"""A transformer for characters, shared by the diffusion models (bidirectional, conditioned on the noise level) and
the autoregressive baseline (causal, with a KV cache for decoding).

- Pre-norm blocks (LayerNorm -> attention -> residual, LayerNorm -> MLP -> residual), rotary position embeddings
  (Su et al. 2021, "RoFormer", eq. (34)), GELU MLP: the recipe of the SEDD / MDLM "DiT" backbones.
- Noise conditioning by adaptive LayerNorm with zero-initialised gates (adaLN-Zero; Peebles & Xie 2023, "Scalable
  Diffusion Models with Transformers", Section 3.2): each block gets shift, scale and gate vectors from an
  embedding of σ̄. With ``time_conditioning=False`` (MDLM's choice for masked diffusion) they are absent.
- Attention has two paths computing the same function: `attention_reference` (the written-out softmax of Vaswani
  et al. 2017, eq. (1)) and ``F.scaled_dot_product_attention`` (fused kernels); ``fused=False`` selects the former.
  Rotary embeddings too: `apply_rotary` (pairs rotated by cos / sin, as in the paper) and `apply_rotary_complex`
  (one complex multiply, what the network runs); a test holds them equal.
- Beyond plain causal or bidirectional attention, ``forward`` takes explicit ``positions`` and a boolean ``mask``
  (query x key, True = may attend), and a `KVCache` that a step may only read (``store=False``): what block
  diffusion (`dlcourse.discrete.bd3`) needs for its vectorised training and its block-by-block sampler.

    net = Transformer(vocab_in=28, vocab_out=27, dim=256, n_layers=4, n_heads=4, causal=False)
    logits = net(x_t, sigma_bar)          # (B, L) ids, (B,) noise -> (B, L, 27)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, ShapeError
from .embed import SinusoidalEmbedding, check_condition

__all__ = ["Transformer", "TransformerBlock", "KVCache", "attention_reference", "attention", "rotary_tables",
           "apply_rotary", "apply_rotary_complex"]


def attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
                        mask: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q kᵀ / √d) v, written out (Vaswani et al. 2017, eq. (1)). q (B, H, Tq, d), k / v (B, H, Tk, d).

    With ``causal``, query i (the i-th of the last Tq positions) sees keys j ≤ i + Tk - Tq, so a query block that
    continues a cached prefix is masked correctly. ``mask`` (Tq, Tk) bool, True where a query may attend, replaces
    the causal rule.
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, H, Tq, Tk)
    if mask is None and causal:
        tq, tk = q.shape[-2], k.shape[-2]
        mask = torch.ones(tq, tk, dtype=torch.bool, device=q.device).tril(diagonal=tk - tq)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v  # (B, H, Tq, d)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
              fused: bool = True, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The same function as `attention_reference`, through ``F.scaled_dot_product_attention`` when ``fused``."""
    if not fused:
        return attention_reference(q, k, v, causal, mask)
    if mask is not None:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    tq, tk = q.shape[-2], k.shape[-2]
    if not causal or tq == 1:  # one new query attends to the whole cache
        return F.scaled_dot_product_attention(q, k, v)
    if tq == tk:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    allowed = torch.ones(tq, tk, dtype=torch.bool, device=q.device).tril(diagonal=tk - tq)  # bottom-right aligned
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)


def rotary_tables(positions: torch.Tensor, head_dim: int, base: float = 10_000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (T, head_dim/2) of the angles p · base^(-2i/d) at integer positions p (RoFormer, eq. (34))."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim)
    angles = positions.float()[:, None] * inv_freq[None, :]  # (T, d/2)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (x_{2i}, x_{2i+1}) of x (B, H, T, d) by its position's angle (the readable path)."""
    dtype = torch.promote_types(x.dtype, torch.float32)  # rotate half-precision inputs in float32
    x1, x2 = x[..., 0::2].to(dtype), x[..., 1::2].to(dtype)
    out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)  # (B, H, T, d/2, 2)
    return out.flatten(-2).to(x.dtype)


def apply_rotary_complex(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """`apply_rotary` as one complex multiply: the pair (x_{2i}, x_{2i+1}) is the complex number x_{2i} + i x_{2i+1}
    and the rotation is a product with cos + i sin (RoFormer, eq. (34) in complex form). x (B, H, T, d)."""
    dtype = torch.promote_types(x.dtype, torch.float32)
    if dtype == torch.float64:
        rot = torch.complex(cos.double(), sin.double())
    else:
        rot, dtype = torch.complex(cos.float(), sin.float()), torch.float32
    pairs = x.to(dtype).unflatten(-1, (-1, 2))  # (B, H, T, d/2, 2), a view of the qkv projection's output
    if pairs.storage_offset() % 2 or any(s % 2 for s in pairs.stride()[:-1]):  # not viewable as complex numbers
        pairs = pairs.contiguous()
    return torch.view_as_real(torch.view_as_complex(pairs) * rot).flatten(-2).to(x.dtype)  # no copy before the multiply


class KVCache:
    """Keys and values of the positions decoded so far, one (k, v) pair (B, H, T, d) per layer."""

    def __init__(self, n_layers: int) -> None:
        self.layers: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * n_layers

    @property
    def length(self) -> int:
        return 0 if self.layers[0] is None else self.layers[0][0].shape[-2]

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor, store: bool = True
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """The cached keys and values of ``layer`` followed by ``k``, ``v``; kept for later calls if ``store``
        (``store=False``: a block that attends to the cache without entering it)."""
        old = self.layers[layer]
        if old is not None:
            k, v = torch.cat([old[0], k], dim=-2), torch.cat([old[1], v], dim=-2)
        if store:
            self.layers[layer] = (k, v)
        return k, v


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x (1 + scale) + shift, with (B, D) modulation broadcast over the positions of x (B, L, D)."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class TransformerBlock(nn.Module):
    """Pre-norm attention + MLP block with optional adaLN-Zero modulation from a conditioning vector."""

    def __init__(self, dim: int, n_heads: int, mlp_ratio: int = 4, dropout: float = 0.0, cond_dim: int = 0,
                 causal: bool = False, exact_gelu: bool = False) -> None:
        super().__init__()
        if dim % n_heads:
            raise ConfigError(f"transformer dim {dim} is not divisible by n_heads {n_heads}")
        self.n_heads, self.causal = n_heads, causal
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=cond_dim == 0)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=cond_dim == 0)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(approximate="none" if exact_gelu else "tanh"),
                                 nn.Linear(mlp_ratio * dim, dim))
        self.dropout = nn.Dropout(dropout)
        self.ada = None
        if cond_dim:
            self.ada = nn.Linear(cond_dim, 6 * dim)
            nn.init.zeros_(self.ada.weight)
            nn.init.zeros_(self.ada.bias)

    def forward(self, h: torch.Tensor, cond: torch.Tensor | None, rope: tuple[torch.Tensor, torch.Tensor],
                fused: bool = True, cache: KVCache | None = None, layer: int = 0, mask: torch.Tensor | None = None,
                store: bool = True) -> torch.Tensor:
        b, length, dim = h.shape
        a = self.norm1(h)
        if self.ada is not None:  # without conditioning there is nothing to modulate (no x (1 + 0) + 0)
            shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(cond).chunk(6, dim=-1)  # each (B, D)
            a = _modulate(a, shift1, scale1)
        q, k, v = self.qkv(a).view(b, length, 3, self.n_heads, dim // self.n_heads).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary_complex(q, *rope), apply_rotary_complex(k, *rope)  # (B, H, L, d)
        if cache is not None:
            k, v = cache.append(layer, k, v, store=store)
        a = attention(q, k, v, causal=self.causal, fused=fused, mask=mask)  # (B, H, L, d)
        a = self.dropout(self.proj(a.transpose(1, 2).reshape(b, length, dim)))
        h = h + (gate1.unsqueeze(1) * a if self.ada is not None else a)

        m = self.norm2(h)
        if self.ada is not None:
            m = _modulate(m, shift2, scale2)
        m = self.dropout(self.mlp(m))
        return h + (gate2.unsqueeze(1) * m if self.ada is not None else m)


class Transformer(nn.Module):
    """Token ids (B, L) [and noise σ̄ (B,)] -> one output per position (B, L, vocab_out).

    Args:
        vocab_in: input ids (27 characters + the mask, which the AR model uses as its start symbol).
        vocab_out: outputs per position (the 27 characters).
        dim, n_layers, n_heads, mlp_ratio, dropout: the usual sizes.
        causal: causal attention (the autoregressive baseline); otherwise bidirectional.
        time_conditioning: embed σ̄ and modulate every block with it (adaLN-Zero).
        cond_dim: width of the σ̄ embedding.
        fused: use scaled_dot_product_attention (True) or the written-out softmax (False).
        exact_gelu: the MLP's GELU exactly (erf) instead of its tanh approximation (several times cheaper on a CPU;
            the two differ by up to 5e-4, so a model trained with one is evaluated with the same).
    """

    def __init__(self, vocab_in: int, vocab_out: int, dim: int = 256, n_layers: int = 4, n_heads: int = 4,
                 mlp_ratio: int = 4, dropout: float = 0.0, causal: bool = False, time_conditioning: bool = True,
                 cond_dim: int = 128, fused: bool = True, exact_gelu: bool = False) -> None:
        super().__init__()
        if dim % n_heads or (dim // n_heads) % 2:
            raise ConfigError(f"transformer dim {dim} must split into {n_heads} heads of even width (rotary pairs)")
        self.causal, self.time_conditioning, self.fused = causal, time_conditioning, fused
        self.n_layers, self.head_dim = n_layers, dim // n_heads
        c = cond_dim if time_conditioning else 0
        self.embed = nn.Embedding(vocab_in, dim)
        if time_conditioning:
            # σ̄ spans ~1e-4 .. 20; a scale of 100 puts that range across the embedding's periods 1 .. 10⁴
            self.sigma_embed = nn.Sequential(SinusoidalEmbedding(cond_dim, input_scale=100.0),
                                             nn.Linear(cond_dim, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim),
                                             nn.SiLU())
        self.blocks = nn.ModuleList(TransformerBlock(dim, n_heads, mlp_ratio, dropout, c, causal, exact_gelu)
                                    for _ in range(n_layers))
        self.norm = nn.LayerNorm(dim, elementwise_affine=not time_conditioning)
        self.final_ada = nn.Linear(c, 2 * dim) if time_conditioning else None
        self.head = nn.Linear(dim, vocab_out)
        nn.init.normal_(self.embed.weight, std=0.02)
        for module in (self.head, self.final_ada):  # start as the uniform prediction / zero score
            if module is not None:
                nn.init.zeros_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor, sigma_bar: torch.Tensor | None = None, cache: KVCache | None = None,
                fused: bool | None = None, positions: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                store: bool = True) -> torch.Tensor:
        """Outputs (B, L, vocab_out). ``positions`` (L,): the rotary positions (default: after the cache);
        ``mask`` (L, cache + L) bool: who attends to whom (default: causal or bidirectional); ``store``: whether
        the cache keeps this call's keys and values."""
        fused = self.fused if fused is None else fused
        if x.dim() != 2 or x.is_floating_point():
            raise ShapeError(f"the transformer takes integer token ids of shape (B, L), got {x.dtype} {tuple(x.shape)}")
        b, length = x.shape
        if positions is None:
            start = cache.length if cache is not None else 0
            positions = torch.arange(start, start + length, device=x.device)
        rope = rotary_tables(positions, self.head_dim)
        h = self.embed(x)  # (B, L, D)
        cond = None
        if self.time_conditioning:
            if sigma_bar is None:
                raise ShapeError("this transformer is conditioned on the noise level: pass sigma_bar of shape (B,)")
            cond = self.sigma_embed(check_condition(sigma_bar, x).to(self.embed.weight.dtype))  # (B, C)
        for i, block in enumerate(self.blocks):
            h = block(h, cond, rope, fused=fused, cache=cache, layer=i, mask=mask, store=store)
        h = self.norm(h)
        if self.final_ada is not None:
            shift, scale = self.final_ada(cond).chunk(2, dim=-1)
            h = _modulate(h, shift, scale)
        return self.head(h)  # (B, L, vocab_out)
