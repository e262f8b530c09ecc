"""Widgets and pictures for the lectures: a frame player and the frames it plays.

- `player`: `FramePlayer` (precomputed PNG frames behind a slider and a Play button), `render_png`, `to_png`;
- `plots`: 2-D particles over a density (`scatter_frames`); `panels`: several processes side by side over p_t;
- `langevin`: `LangevinPlayer` (Langevin chains on a 2-D density) and image chains;
- `images`: `image_grid`, `save_image_grid`, `save_scatter`; `text`: frames of text being generated.

This package draws what it is given. It may call the maths it animates (``dlcourse.score.langevin``) but never a
family module: families and lectures import from here, not the other way round.
"""

from .images import image_grid, save_image_grid, save_scatter
from .panels import panel_frames
from .player import DEFAULT_DPI, FramePlayer, LiveWidget, render_png, to_png
from .plots import evaluate_on_grid, scatter_frames
from .text import text_frame, text_frames

__all__ = ["FramePlayer", "LiveWidget", "render_png", "to_png", "scatter_frames", "evaluate_on_grid", "panel_frames", "DEFAULT_DPI",
           "image_grid", "save_image_grid", "save_scatter", "text_frame", "text_frames"]
