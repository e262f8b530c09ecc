"""Side-by-side 2-D particle panels over a time-dependent density, one PNG per frame, for `FramePlayer`.

Where `scatter_frames` draws one chain over a fixed density, the score SDE lectures need several processes at
once (VE next to VP, the reverse SDE next to the probability-flow ODE) over the marginal density p_t, which changes
from frame to frame. ``log_density(x, t)`` is evaluated on a grid at each frame's time.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .player import DEFAULT_DPI, TEXT_PT, TICK_PT, TITLE_PT

__all__ = ["panel_frames"]


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def panel_frames(chains: Mapping[str, Any], times: Sequence[float], *,
                 log_density: Mapping[str, Callable[[Any, float], Any]] | Callable[[Any, float], Any] | None = None,
                 extent: tuple[float, float, float, float] = (-9.0, 9.0, -9.0, 9.0), labels: Sequence[str] | None = None,
                 panel_size: float = 3.4, dpi: int = DEFAULT_DPI, resolution: int = 90, point_size: float = 4.0,
                 density_range: float = 10.0) -> list[bytes]:
    """One PNG per time index: a panel per entry of ``chains`` (name -> positions (F, N, 2)), titled with the name.

    ``times`` (F,) is the time of each frame, passed to ``log_density(points (M, 2) float64 tensor, t) -> (M,)``
    (one function for every panel, or one per panel name) to draw p_t as a heat map, clipped ``density_range``
    nats below its maximum. ``labels`` (F,) are written under the panels."""
    import torch
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(chains)
    if not names:
        raise ValueError("give at least one chain")
    arrays = {k: _np(v) for k, v in chains.items()}
    F = len(times)
    for k, a in arrays.items():
        if a.ndim != 3 or a.shape[-1] != 2 or a.shape[0] != F:
            raise ValueError(f"chain {k!r} must have shape ({F}, N, 2) to match the {F} times, got {a.shape}")
    if labels is not None and len(labels) != F:
        raise ValueError(f"got {len(labels)} labels for {F} frames")
    xmin, xmax, ymin, ymax = extent
    gx, gy = np.meshgrid(np.linspace(xmin, xmax, resolution), np.linspace(ymin, ymax, resolution))
    grid = torch.from_numpy(np.stack([gx.ravel(), gy.ravel()], -1))

    fig = Figure(figsize=(panel_size * len(names), panel_size + 0.5), dpi=dpi, layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    images, scatters = [], []
    for ax, name in zip(axes, names):
        im = ax.imshow(np.zeros((resolution, resolution)), extent=extent, origin="lower", cmap="Blues",
                       vmin=-density_range, vmax=0.0, interpolation="bilinear")
        images.append(im if log_density is not None else None)
        if log_density is None:
            im.set_visible(False)
        scatters.append(ax.scatter([], [], s=point_size, color="#d62728", linewidths=0))
        ax.set_xlim(xmin, xmax)
        ax.set_ylim(ymin, ymax)
        ax.set_aspect("equal")
        ax.set_title(name, fontsize=TITLE_PT)
        ax.tick_params(labelsize=TICK_PT)
    caption = fig.supxlabel("", fontsize=TEXT_PT)
    canvas = FigureCanvasAgg(fig)
    # Lay the figure out once, with a caption of the longest length, then freeze it: the constrained layout would
    # otherwise be recomputed at every frame and could shift the panels by a pixel between frames.
    caption.set_text(max((labels or [f"t = {float(t):.3f}" for t in times]), key=len))
    canvas.draw()
    fig.set_layout_engine("none")
    frames = []
    for f in range(F):
        for name, im, sc in zip(names, images, scatters):
            if im is not None:
                fn = log_density[name] if isinstance(log_density, Mapping) else log_density
                with torch.no_grad():
                    z = _np(fn(grid, float(times[f]))).reshape(resolution, resolution)
                im.set_data(z - z.max())
            sc.set_offsets(arrays[name][f])
        caption.set_text(labels[f] if labels is not None else f"t = {float(times[f]):.3f}")
        buf = io.BytesIO()
        canvas.print_png(buf)
        frames.append(buf.getvalue())
    return frames
