"""Pictures of text being generated: one PNG per state of a sampler's trajectory, for `dlcourse.viz.FramePlayer`.

Masks are drawn as grey "_", characters that changed since the previous frame in red, the rest in black, in a
monospaced grid (one row per sample, wrapped at ``width`` characters).
"""

from __future__ import annotations

import functools
from typing import Sequence

import torch

from ..data.text import ALPHABET, MASK_ID

__all__ = ["text_frame", "text_frames"]


_COLORS = {"mask": (170, 170, 170), "same": (20, 20, 20), "new": (214, 39, 40)}


@functools.lru_cache(maxsize=4)
def _font(size: int):
    """DejaVu Sans Mono from matplotlib's bundled fonts (always installed with matplotlib)."""
    from pathlib import Path

    import matplotlib
    from PIL import ImageFont

    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSansMono.ttf"), size)


def text_frame(state: torch.Tensor, previous: torch.Tensor | None = None, width: int = 64, title: str = "",
               font_size: int = 14) -> bytes:
    """PNG bytes of token ids ``state`` (B, L) or (L,): each sample wrapped at ``width`` characters, a blank line
    between samples; masks grey, positions that differ from ``previous`` (same shape) red."""
    import io

    from PIL import Image, ImageDraw

    state = torch.as_tensor(state).cpu()
    state = state.reshape(-1, state.shape[-1])  # (B, L)
    prev = None if previous is None else torch.as_tensor(previous).cpu().reshape(state.shape)
    b, length = state.shape
    font = _font(font_size)
    cw, ch = int(round(font.getlength("m"))), int(font_size * 1.45)
    rows_per = -(-length // width)
    top = ch if title else 0
    img = Image.new("RGB", (cw * width + 16, top + ch * (b * (rows_per + 1) - 1) + 12), "white")
    draw = ImageDraw.Draw(img)
    if title:
        draw.text((8, 4), title, fill=_COLORS["same"], font=font)
    for i in range(b):
        for pos in range(length):
            tok = int(state[i, pos])
            if tok == MASK_ID:
                char, color = "_", _COLORS["mask"]
            else:
                changed = prev is not None and int(prev[i, pos]) != tok
                char, color = ALPHABET[tok], _COLORS["new" if changed else "same"]
            x = 8 + cw * (pos % width)
            y = 6 + top + ch * (i * (rows_per + 1) + pos // width)
            draw.text((x, y), char, fill=color, font=font)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def text_frames(trajectory: Sequence[torch.Tensor], rows: Sequence[int] | int = 1, every: int = 1,
                width: int = 64, titles: Sequence[str] | None = None, font_size: int = 14) -> list[bytes]:
    """Frames of a recorded trajectory (a list of (B, L) states, e.g. `Samples.trajectory`): the first ``rows``
    samples (or those listed), every ``every``-th state and always the last, with the changes since the previous
    shown frame in red. ``titles``: one per shown frame."""
    idx = list(range(0, len(trajectory), every))
    if idx[-1] != len(trajectory) - 1:
        idx.append(len(trajectory) - 1)
    sel = list(range(rows)) if isinstance(rows, int) else list(rows)
    frames, prev = [], None
    for k, i in enumerate(idx):
        state = trajectory[i][sel]
        frames.append(text_frame(state, prev, width, titles[k] if titles is not None else "", font_size))
        prev = state
    return frames
