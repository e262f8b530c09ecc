"""Frames for the player: particles of a 2-D chain over a log-density heat map and a score field.

The background (heat map and arrows) is drawn once; each frame only moves the points, so a hundred frames of a
Langevin chain render in a second or two. Figures are built with ``matplotlib.figure.Figure``, never pyplot, so
they are not also shown by the notebook's inline backend.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .player import DEFAULT_DPI, TEXT_PT, TICK_PT, TITLE_PT

__all__ = ["scatter_frames", "evaluate_on_grid", "draw_background"]

Extent = tuple[float, float, float, float]


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _call_on_points(fn: Callable[[Any], Any], points: np.ndarray) -> np.ndarray:
    """Call ``fn`` on an (M, 2) float32 torch tensor (the package's convention); return a float64 array."""
    import torch

    with torch.no_grad():
        out = fn(torch.from_numpy(points.astype(np.float32)))
    return _as_numpy(out)


def evaluate_on_grid(fn: Callable[[Any], Any], extent: Extent, resolution: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Evaluate ``fn`` on a ``resolution`` x ``resolution`` grid covering ``extent = (xmin, xmax, ymin, ymax)``.

    Returns ``xs (R,)``, ``ys (R,)`` and the values with the grid's shape in front: ``(R, R)`` or ``(R, R, 2)``,
    indexed ``[row = y, column = x]`` as ``imshow`` expects.
    """
    xmin, xmax, ymin, ymax = extent
    xs = np.linspace(xmin, xmax, resolution)
    ys = np.linspace(ymin, ymax, resolution)
    gx, gy = np.meshgrid(xs, ys)  # (R, R) each, [y, x]
    points = np.stack([gx.ravel(), gy.ravel()], axis=-1)  # (R*R, 2)
    values = _call_on_points(fn, points)
    return xs, ys, values.reshape(resolution, resolution, *values.shape[1:])


def draw_background(ax: Any, extent: Extent, *, density: Callable[[Any], Any] | None = None,
                    score: Callable[[Any], Any] | None = None, title: str | None = None, cmap: str = "Blues",
                    density_range: float = 12.0, resolution: int = 160, quiver_grid: int = 17) -> None:
    """The still part of a 2-D chain picture on ``ax``: limits, the log-density as a heat map clipped
    ``density_range`` nats below its maximum, and the score's direction as equal-length arrows."""
    xmin, xmax, ymin, ymax = extent
    ax.set_xlim(xmin, xmax)
    ax.set_ylim(ymin, ymax)
    ax.set_aspect("equal")
    ax.tick_params(labelsize=TICK_PT, length=3)
    if title:
        ax.set_title(title, fontsize=TITLE_PT)
    if density is not None:
        _, _, logp = evaluate_on_grid(density, extent, resolution)  # (R, R)
        top = float(np.max(logp))
        ax.imshow(np.clip(logp, top - density_range, top), origin="lower", extent=extent, cmap=cmap,
                  interpolation="bilinear", aspect="equal", vmin=top - density_range, vmax=top)
    if score is not None:
        xs, ys, s = evaluate_on_grid(score, extent, quiver_grid)  # (Q, Q, 2)
        direction = s / np.maximum(np.linalg.norm(s, axis=-1, keepdims=True), 1e-12)
        cell = (xmax - xmin) / quiver_grid
        ax.quiver(xs, ys, direction[..., 0], direction[..., 1], color="0.25", alpha=0.6, angles="xy",
                  scale_units="xy", scale=1.0 / (0.6 * cell), width=0.004, headwidth=4)


def scatter_frames(
    chains: Any,
    density: Callable[[Any], Any] | None = None,
    score: Callable[[Any], Any] | None = None,
    extent: Extent = (-9.0, 9.0, -9.0, 9.0),
    *,
    labels: Sequence[str] | None = None,
    steps: Sequence[int] | None = None,
    trail: int = 0,
    figsize: tuple[float, float] = (4.6, 4.6),
    dpi: int = DEFAULT_DPI,
    point_size: float = 6.0,
    color: str = "#d62728",
    cmap: str = "Blues",
    density_range: float = 12.0,
    resolution: int = 160,
    quiver_grid: int = 17,
    title: str | None = None,
    colors: int | None = 96,
) -> list[bytes]:
    """Render a chain of 2-D particles, one PNG per time step, for `FramePlayer`.

    Parameters
    ----------
    chains:
        Positions, shape ``(T, N, 2)``: T time steps of N particles (numpy array or tensor).
    density:
        Optional ``log p``: maps an ``(M, 2)`` float32 tensor to ``(M,)``; drawn as a heat map, clipped
        ``density_range`` nats below its maximum so that the tails stay visible without swamping the modes.
    score:
        Optional ``grad log p``: maps ``(M, 2)`` to ``(M, 2)``; drawn as arrows of equal length on a
        ``quiver_grid`` x ``quiver_grid`` grid (the direction is what matters; the length would be dominated
        by the far corners, where the score of a Gaussian grows linearly).
    extent:
        ``(xmin, xmax, ymin, ymax)`` of every frame; points outside are not drawn.
    labels:
        Optional text written in the corner of each frame (one per rendered frame).
    steps:
        Which time steps to render (default: all T); e.g. ``range(0, T, 5)``.
    trail:
        Draw each particle's last ``trail`` positions as a faint line.
    colors:
        Reduce each frame to this many colours (one palette for all frames), which makes the PNGs several
        times smaller (they are committed with the notebooks); ``None`` keeps full colour.

    Returns one PNG (bytes) per rendered step.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

    x = _as_numpy(chains)
    if x.ndim != 3 or x.shape[-1] != 2:
        raise ValueError(f"chains must have shape (T, N, 2), got {tuple(x.shape)}")
    T = x.shape[0]
    if T == 0:
        raise ValueError("chains has no time steps")
    steps = list(range(T)) if steps is None else [int(s) for s in steps]
    if any(not 0 <= s < T for s in steps):
        raise ValueError(f"steps must lie in [0, {T - 1}]")
    if labels is not None and len(labels) != len(steps):
        raise ValueError(f"got {len(labels)} labels for {len(steps)} frames")
    xmin, xmax, ymin, ymax = extent
    if not (xmin < xmax and ymin < ymax):
        raise ValueError(f"extent must be (xmin, xmax, ymin, ymax) with min < max, got {extent}")

    fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    ax = fig.add_subplot()
    draw_background(ax, extent, density=density, score=score, title=title, cmap=cmap,
                    density_range=density_range, resolution=resolution, quiver_grid=quiver_grid)

    lines = None
    if trail > 0:
        lines = LineCollection([], colors=color, linewidths=0.6, alpha=0.35, animated=True)
        ax.add_collection(lines)
    points = ax.scatter(
        x[steps[0], :, 0], x[steps[0], :, 1], s=point_size, c=color, edgecolors="white", linewidths=0.3,
        zorder=3, animated=True,
    )
    text = None
    if labels is not None:
        text = ax.text(
            0.02, 0.98, "", transform=ax.transAxes, va="top", ha="left", fontsize=TEXT_PT, family="monospace",
            bbox=dict(boxstyle="round,pad=0.2", facecolor="white", alpha=0.8, linewidth=0), animated=True,
        )

    # Blitting: rasterise the static background once, then per frame paste it back and draw only the
    # moving artists (marked animated=True, so the full draw below leaves them out).
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    background = canvas.copy_from_bbox(fig.bbox)
    palette = None
    frames = []
    for k, t in enumerate(steps):
        canvas.restore_region(background)
        if lines is not None:
            segments = np.transpose(x[max(0, t - trail): t + 1], (1, 0, 2))  # (N, <=trail+1, 2)
            lines.set_segments(list(segments) if segments.shape[1] > 1 else [])
            ax.draw_artist(lines)
        points.set_offsets(x[t])
        ax.draw_artist(points)
        if text is not None:
            text.set_text(labels[k])
            ax.draw_artist(text)
        rgb = np.asarray(canvas.buffer_rgba())[..., :3]  # (H, W, 3); the figure is opaque
        png, palette = _encode_png(rgb, colors, palette)
        frames.append(png)
    return frames


def _encode_png(rgb: np.ndarray, colors: int | None, palette: Any) -> tuple[bytes, Any]:
    """PNG bytes of an (H, W, 3) uint8 image, optionally reduced to ``colors`` colours.

    The palette is computed from the first frame and reused, so the background keeps exactly the same colours
    from frame to frame (no flicker) and each frame compresses to a fraction of its full-colour size.
    """
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(rgb))
    if colors is not None:
        if palette is None:
            palette = image.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        image = image.quantize(palette=palette, dither=Image.Dither.NONE)
    buf = io.BytesIO()
    image.save(buf, format="png", optimize=False, compress_level=9)
    return buf.getvalue(), palette
