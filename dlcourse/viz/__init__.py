"""Widgets and pictures for the lectures: a frame player and the frames it plays."""

from .player import DEFAULT_DPI, FramePlayer, render_png, to_png
from .panels import panel_frames
from .plots import evaluate_on_grid, scatter_frames

__all__ = ["FramePlayer", "render_png", "to_png", "scatter_frames", "evaluate_on_grid", "panel_frames", "DEFAULT_DPI"]
