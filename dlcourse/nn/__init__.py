"""Small reusable networks, all conditioned on a per-sample scalar c of shape (B,) (a noise level or a time).

- `MLP` (x (B, D), c (B,)) -> (B, D): residual MLP for the 2-D toys.
- `UNet` (x (B, C, H, W), c (B,)) -> (B, C, H, W): DDPM-style U-Net with GroupNorm and self-attention.
- `GaussianFourierFeatures`, `SinusoidalEmbedding`: embeddings of c.
"""

from .embed import GaussianFourierFeatures, SinusoidalEmbedding, check_condition, make_embedding
from .mlp import MLP
from .unet import AttentionBlock, ResBlock, UNet, attention_reference

__all__ = ["MLP", "UNet", "ResBlock", "AttentionBlock", "attention_reference", "GaussianFourierFeatures",
           "SinusoidalEmbedding", "check_condition", "make_embedding"]
