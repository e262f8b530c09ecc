"""The frame player and its frame builders, headless: no browser, so the Python-side observer does the work."""

import io

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from PIL import Image

from dlcourse.viz import FramePlayer, render_png, scatter_frames, to_png
from dlcourse.viz.player import PNG_SIGNATURE


def _solid_frames(n):
    """n distinct 8x8 grey images, as arrays."""
    return [np.full((8, 8), 20 * i, dtype=np.uint8) for i in range(n)]


def _pixel(png):
    return Image.open(io.BytesIO(png)).convert("L").getpixel((0, 0))


def test_slider_swaps_image_and_label():
    frames = [to_png(a) for a in _solid_frames(4)]
    assert len(set(frames)) == 4
    labels = [f"step {i} / 3, sigma={1.0 / (i + 1):.2f}" for i in range(4)]
    player = FramePlayer(frames, labels=labels, interval_ms=50)
    assert player.image.value == frames[0]
    assert player.label.value == labels[0]
    player.slider.value = 2
    assert player.image.value == frames[2]
    assert player.label.value == "step 2 / 3, sigma=0.33"
    assert player.index == 2
    player.show(-1)
    assert player.image.value == frames[3]
    assert player.play.value == 3
    assert _pixel(player.image.value) == 60


def test_play_and_slider_ranges():
    player = FramePlayer(_solid_frames(5))
    assert len(player) == player.n_frames == 5
    assert player.play.min == player.slider.min == 0
    assert player.play.max == player.slider.max == 4
    assert player.play.interval == 150
    assert player.label.value == "frame 0 / 4"


def test_mimebundle_has_widget_and_static_fallback():
    player = FramePlayer(_solid_frames(3)).show(1)
    bundle = player._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "3 frames" in bundle["text/plain"]
    import base64

    assert base64.b64decode(bundle["image/png"]) == player.frames[1]


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="at least one frame"):
        FramePlayer([])
    with pytest.raises(ValueError, match="2 labels for 3 frames"):
        FramePlayer(_solid_frames(3), labels=["a", "b"])
    with pytest.raises(ValueError, match="PNG"):
        FramePlayer([b"not a png"])
    with pytest.raises(ValueError, match="channels-first"):
        FramePlayer([np.zeros((3, 8, 8))])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        FramePlayer([np.full((4, 4), 2.0)])
    with pytest.raises(IndexError):
        FramePlayer(_solid_frames(2)).show(2)


def test_frames_from_figures_arrays_and_tensors():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1, 1))
    fig.add_subplot().plot([0, 1], [0, 1])
    png = to_png(fig, dpi=40)
    assert png.startswith(PNG_SIGNATURE)
    assert Image.open(io.BytesIO(png)).size == (40, 40)
    rgb = to_png(np.zeros((5, 6, 3), dtype=np.float32))
    assert Image.open(io.BytesIO(rgb)).size == (6, 5)
    assert to_png(torch.ones(4, 4)) == to_png(np.full((4, 4), 255, dtype=np.uint8))


def test_render_png_is_deterministic_and_closes():
    import matplotlib.pyplot as plt

    def make():
        fig, ax = plt.subplots(figsize=(2, 2))
        ax.plot(np.sin(np.linspace(0, 6, 50)))
        return fig

    fig = make()
    first = render_png(fig)
    assert not plt.fignum_exists(fig.number)
    assert render_png(make()) == first
    assert Image.open(io.BytesIO(first)).size == (160, 160)  # 2 inches at the default 80 dpi


def _two_blobs_log_prob(x):  # (M, 2) -> (M,)
    means = torch.tensor([[2.0, 2.0], [-2.0, -2.0]])
    d2 = ((x[:, None, :] - means) ** 2).sum(-1)  # (M, 2)
    return torch.logsumexp(-0.5 * d2, dim=1)


def _two_blobs_score(x):  # (M, 2) -> (M, 2)
    means = torch.tensor([[2.0, 2.0], [-2.0, -2.0]])
    w = torch.softmax(-0.5 * ((x[:, None, :] - means) ** 2).sum(-1), dim=1)  # (M, 2)
    return (w[..., None] * (means - x[:, None, :])).sum(1)


def test_scatter_frames_one_distinct_png_per_step():
    g = torch.Generator().manual_seed(0)
    chains = torch.cumsum(0.3 * torch.randn(6, 20, 2, generator=g), dim=0)  # (T, N, 2)
    frames = scatter_frames(
        chains, density=_two_blobs_log_prob, score=_two_blobs_score, extent=(-4, 4, -4, 4),
        figsize=(2, 2), resolution=40, quiver_grid=7, trail=2, labels=[f"t={t}" for t in range(6)],
    )
    assert len(frames) == 6
    assert len(set(frames)) == 6
    assert all(f.startswith(PNG_SIGNATURE) for f in frames)
    assert Image.open(io.BytesIO(frames[0])).size == (160, 160)
    again = scatter_frames(
        chains, density=_two_blobs_log_prob, score=_two_blobs_score, extent=(-4, 4, -4, 4),
        figsize=(2, 2), resolution=40, quiver_grid=7, trail=2, labels=[f"t={t}" for t in range(6)],
    )
    assert again == frames  # deterministic, so committed notebooks do not change on re-execution

    sub = scatter_frames(chains.numpy(), steps=range(0, 6, 2), figsize=(2, 2), colors=None)
    assert len(sub) == 3 and len(set(sub)) == 3


def test_scatter_frames_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\(T, N, 2\)"):
        scatter_frames(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="labels"):
        scatter_frames(np.zeros((3, 4, 2)), labels=["a"])
    with pytest.raises(ValueError, match="steps"):
        scatter_frames(np.zeros((3, 4, 2)), steps=[0, 3])
