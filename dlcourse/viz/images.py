"""Images and point clouds as pictures: one grid of images, one scatter plot, written as PNG.

`image_grid` lays a batch out as one array (for ``imshow`` or a frame); `save_image_grid` and `save_scatter` are
what ``dlcourse sample`` writes (`dlcourse.registry.write_samples`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, ShapeError

__all__ = ["image_grid", "save_image_grid", "save_scatter"]


def image_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 1, scale: int = 4,
               pad_value: float = 1.0) -> np.ndarray:
    """Images (B, C, H, W) in [0, 1] (clamped) as one grid array in [0, 1]: (H', W') for C = 1, (H', W', 3) for C = 3;
    ``nrow`` images per row (default ⌈√B⌉), ``pad`` pixels between them, every pixel enlarged ``scale`` times."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ShapeError(f"images must have shape (B, C, H, W) with C = 1 or 3, got {tuple(images.shape)}")
    if scale < 1 or pad < 0:
        raise ConfigError(f"need scale >= 1 and pad >= 0, got scale={scale}, pad={pad}")
    x = images.detach().float().cpu().clamp(0.0, 1.0).numpy()
    b, c, h, w = x.shape
    nrow = nrow or math.ceil(math.sqrt(b))
    ncol = math.ceil(b / nrow)
    grid = np.full((c, ncol * (h + pad) + pad, nrow * (w + pad) + pad), pad_value, dtype=np.float32)
    for i in range(b):
        r, q = divmod(i, nrow)
        top, left = pad + r * (h + pad), pad + q * (w + pad)
        grid[:, top: top + h, left: left + w] = x[i]
    grid = grid.repeat(scale, axis=1).repeat(scale, axis=2)
    return grid[0] if c == 1 else grid.transpose(1, 2, 0)


def save_image_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None, scale: int = 1,
                    pad: int = 1) -> Path:
    """Write images (N, C, H, W) in [0, 1] (clamped) as one 8-bit PNG grid (`image_grid`)."""
    from PIL import Image

    arr = (image_grid(images, nrow=nrow, pad=pad, scale=scale) * 255).round().astype(np.uint8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def save_scatter(points: torch.Tensor, path: str | Path, title: str = "", lim: float = 10.0) -> Path:
    """Write 2-D points (N, 2) as a scatter-plot PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if points.dim() != 2 or points.shape[1] != 2:
        raise ShapeError(f"a scatter plot needs points of shape (N, 2), got {tuple(points.shape)}")
    p = points.detach().float().cpu().numpy()
    fig = Figure(figsize=(5, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.scatter(p[:, 0], p[:, 1], s=3, alpha=0.5)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=13)
    ax.tick_params(labelsize=12)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    return path
