"""Text frames for the unmasking widget: PNGs whose pixels show masks grey and new characters red."""

import io

import numpy as np
import torch
from PIL import Image

from dlcourse.data.text import MASK_ID, encode
from dlcourse.viz.text import text_frame, text_frames


def _pixels(png: bytes) -> np.ndarray:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def _red(a: np.ndarray) -> int:
    return int(((a[..., 0] > 150) & (a[..., 1] < 90) & (a[..., 2] < 90)).sum())


def test_frames_mark_changes_in_red():
    x = encode("masked diffusion", return_tensor=True)[None]  # (1, 16)
    masked = torch.full_like(x, MASK_ID)
    half = torch.where(torch.arange(16) % 2 == 0, x, masked)
    frames = text_frames([masked, half, x], rows=1, titles=["t = 1", "t = 0.5", "t = 0"])
    assert len(frames) == 3
    first, second, third = (_pixels(f) for f in frames)
    assert first.shape == second.shape == third.shape
    assert _red(first) == 0 and _red(second) > 0 and _red(third) > 0
    assert _red(_pixels(text_frame(x, x))) == 0  # nothing changed: no red
    wrapped = _pixels(text_frame(x.expand(2, 16), width=8))
    assert wrapped.shape[0] > first.shape[0]  # 2 samples of 2 rows each are taller than one row


def test_every_keeps_the_last_state():
    states = [torch.full((1, 4), MASK_ID)] * 6 + [torch.zeros(1, 4, dtype=torch.long)]
    assert len(text_frames(states, every=4)) == 3  # states 0, 4 and the last (6)
