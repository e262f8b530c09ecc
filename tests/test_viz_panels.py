"""panel_frames: one PNG per frame, one panel per process, the density redrawn at each frame's time."""

import io

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from PIL import Image

from dlcourse.viz import panel_frames


def size(png):
    return Image.open(io.BytesIO(png)).size


def test_one_frame_per_time_and_one_panel_per_chain():
    chains = {"a": torch.zeros(3, 5, 2), "b": torch.ones(3, 5, 2)}
    frames = panel_frames(chains, [1.0, 0.5, 0.0], dpi=40)
    one = panel_frames({"a": torch.zeros(3, 5, 2)}, [1.0, 0.5, 0.0], dpi=40)
    assert len(frames) == 3 and all(f[:4] == b"\x89PNG" for f in frames)
    assert size(frames[0])[0] > 1.8 * size(one[0])[0]  # two panels are about twice as wide
    assert size(frames[0])[1] == size(one[0])[1]


def test_points_and_density_move_with_the_frame():
    moving = torch.tensor([[[-5.0, -5.0]], [[5.0, 5.0]]])  # one particle jumping corners
    frames = panel_frames({"p": moving}, [0.0, 0.0], labels=["x", "x"], dpi=40)
    assert frames[0] != frames[1]
    still = torch.zeros(2, 1, 2)
    static = panel_frames({"p": still}, [0.0, 1.0], labels=["x", "x"], log_density=lambda x, t: -x.pow(2).sum(1), dpi=40)
    assert static[0] == static[1]  # density independent of t: identical pictures
    varying = panel_frames({"p": still}, [0.0, 1.0], labels=["x", "x"],
                           log_density=lambda x, t: -(x - 4 * t).pow(2).sum(1), dpi=40)
    assert varying[0] != varying[1]


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="must have shape"):
        panel_frames({"a": torch.zeros(4, 5, 2)}, [0.0, 1.0])
    with pytest.raises(ValueError, match="labels"):
        panel_frames({"a": torch.zeros(2, 5, 2)}, [0.0, 1.0], labels=["only one"])
