"""A frame player: precomputed pictures behind a Play button and a slider.

Every frame is rendered to PNG once, up front, so moving the slider in a lecture hall only swaps bytes in an
``ipywidgets.Image``; nothing is recomputed or re-plotted. The Play button drives the slider through a
browser-side link (``jslink``), and a Python-side observer on the slider swaps the picture, so setting
``player.slider.value`` from Python (a test, a later cell) updates the picture as well.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = ["FramePlayer", "LiveWidget", "render_png", "to_png", "PNG_SIGNATURE", "DEFAULT_DPI", "TICK_PT", "TITLE_PT",
           "TEXT_PT",
           "HALL_RC", "hall_style", "control_width"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DEFAULT_DPI = 80  # modest: a 4x4 inch figure is 320x320 pixels, a few tens of kB per frame
# Lecture-hall sizes (CONTRIBUTING: readable at 1280x720 and 150% zoom). At 80 dpi a 12 pt label is 13 CSS pixels,
# 20 on the projector at 150%: the smallest text one reads from the back of a room.
TICK_PT = 12
TITLE_PT = 14
TEXT_PT = 12
#: matplotlib settings for a lecture's own figures (`hall_style`)
HALL_RC = {"font.size": TEXT_PT, "axes.titlesize": TITLE_PT, "axes.labelsize": TEXT_PT, "xtick.labelsize": TICK_PT,
           "ytick.labelsize": TICK_PT, "legend.fontsize": TEXT_PT - 1, "figure.titlesize": TITLE_PT,
           "figure.dpi": DEFAULT_DPI}


def hall_style() -> None:
    """Set matplotlib's fonts (for every later figure of this process) to the lecture-hall sizes of `HALL_RC`."""
    import matplotlib

    matplotlib.rcParams.update(HALL_RC)


def control_width(labels: Sequence[str], char_px: float = 8.5, padding_px: int = 24) -> str:
    """A CSS width that fits the longest of ``labels`` on a button in JupyterLab's 13 px UI font (digits and lower
    case are at most ~8 px wide), so that no option is cut to "0.0…"."""
    longest = max((len(str(label)) for label in labels), default=1)
    return f"{int(round(longest * char_px)) + padding_px}px"


def _savefig_png(fig: Any, dpi: int) -> bytes:
    """PNG bytes of a matplotlib figure; no 'Software' metadata, so the bytes do not depend on the version string."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def render_png(fig: Any, dpi: int = DEFAULT_DPI) -> bytes:
    """Render a matplotlib figure to PNG bytes at a fixed ``dpi`` and close it.

    Same figure, same dpi, same matplotlib: same bytes. Closing keeps the figure from also being shown by the
    inline backend at the end of the cell and from piling up in pyplot's figure manager.
    """
    import matplotlib.pyplot as plt

    data = _savefig_png(fig, dpi)
    plt.close(fig)
    return data


def _array_to_png(array: np.ndarray) -> bytes:
    """PNG bytes of an image array: (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA; uint8, or floats in [0, 1]."""
    from PIL import Image

    a = np.asarray(array)
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)):
        raise ValueError(
            f"an image frame must have shape (H, W), (H, W, 3) or (H, W, 4), got {a.shape}"
            + ("; channels-first (C, H, W)? transpose it to (H, W, C)" if a.ndim == 3 and a.shape[0] in (1, 3, 4) else "")
        )
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif np.issubdtype(a.dtype, np.floating):
        if not np.all(np.isfinite(a)):
            raise ValueError("an image frame contains NaN or inf")
        lo, hi = float(a.min(initial=0.0)), float(a.max(initial=0.0))
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"a float image frame must lie in [0, 1], got values in [{lo:.3g}, {hi:.3g}]")
        a = np.round(a * 255.0).astype(np.uint8)
    elif a.dtype != np.uint8:
        if a.min(initial=0) < 0 or a.max(initial=0) > 255:
            raise ValueError(f"an integer image frame must lie in [0, 255], got dtype {a.dtype} outside that range")
        a = a.astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(a)).save(buf, format="png")
    return buf.getvalue()


def to_png(frame: Any, dpi: int = DEFAULT_DPI) -> bytes:
    """One frame as PNG bytes: PNG bytes pass through; a matplotlib figure is rendered (and closed);
    an image array (numpy, or anything ``np.asarray`` accepts such as a CPU tensor) is encoded."""
    if isinstance(frame, (bytes, bytearray, memoryview)):
        data = bytes(frame)
        if not data.startswith(PNG_SIGNATURE):
            raise ValueError("a bytes frame must be a PNG image (it does not start with the PNG signature)")
        return data
    if hasattr(frame, "savefig"):
        return render_png(frame, dpi=dpi)
    if hasattr(frame, "detach"):  # a torch tensor
        frame = frame.detach().cpu().numpy()
    if isinstance(frame, np.ndarray):
        return _array_to_png(frame)
    raise TypeError(f"cannot make a PNG frame from {type(frame).__name__}: give PNG bytes, a matplotlib figure or an image array")


class FramePlayer:
    """Show precomputed frames with a Play button, a slider and a caption.

    Parameters
    ----------
    frames:
        PNG bytes, matplotlib figures or image arrays (converted to PNG once, here).
    labels:
        One caption per frame, e.g. ``"step 40 / 200, sigma=0.31"``; default ``"frame i / n-1"``.
    interval_ms:
        Time between frames while playing.
    repeat:
        Whether Play starts over after the last frame.
    dpi:
        Resolution used for frames given as matplotlib figures.

    Display ``player`` (or ``player.widget``) as the last expression of a cell. ``player.show(i)`` jumps to
    frame ``i`` (negative indices count from the end).
    """

    def __init__(
        self,
        frames: Iterable[Any],
        labels: Sequence[str] | None = None,
        interval_ms: int = 150,
        repeat: bool = False,
        dpi: int = DEFAULT_DPI,
    ) -> None:
        import ipywidgets as widgets

        self.frames: list[bytes] = [to_png(f, dpi=dpi) for f in frames]
        n = len(self.frames)
        if n == 0:
            raise ValueError("FramePlayer needs at least one frame, got none")
        if labels is None:
            labels = [f"frame {i} / {n - 1}" for i in range(n)]
        else:
            labels = [str(label) for label in labels]
            if len(labels) != n:
                raise ValueError(f"got {len(labels)} labels for {n} frames: give one label per frame")
        self.labels: list[str] = labels
        if interval_ms <= 0:
            raise ValueError(f"interval_ms must be positive, got {interval_ms}")

        self.image = widgets.Image(value=self.frames[0], format="png")
        if self.frames[0][:8] == b"\x89PNG\r\n\x1a\n":
            # Show frames at their own pixel size: a VBox stretches its children, which blurs a small PNG.
            self.image.layout.width = f"{int.from_bytes(self.frames[0][16:20], 'big')}px"
            self.image.layout.max_width = "100%"
        self.play = widgets.Play(
            value=0, min=0, max=n - 1, step=1, interval=int(interval_ms), repeat=repeat, show_repeat=False
        )
        self.slider = widgets.IntSlider(
            value=0, min=0, max=n - 1, step=1, readout=False, continuous_update=True,
            layout=widgets.Layout(width="240px"),
        )
        # The caption keeps its full width (it never shrinks to "step 0 / 2…"); on a narrow screen it wraps under
        # the slider instead, so the controls take at most two lines.
        self.label = widgets.Label(value=self.labels[0], style={"font_family": "monospace"},
                                   layout=widgets.Layout(flex="0 0 auto", width="auto", max_width="none"))
        # The browser moves the slider while playing, with no round trip to the kernel ...
        self._link = widgets.jslink((self.play, "value"), (self.slider, "value"))
        # ... and the kernel swaps the picture whenever the slider's value changes, from either side.
        self.slider.observe(self._on_index, names="value")
        self.controls = widgets.HBox([self.play, self.slider, self.label],
                                     layout=widgets.Layout(flex_flow="row wrap", align_items="center"))
        self.widget = widgets.VBox([self.controls, self.image])

    def _on_index(self, change: dict) -> None:
        i = int(change["new"])
        self.image.value = self.frames[i]
        self.label.value = self.labels[i]

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def n_frames(self) -> int:
        return len(self.frames)

    @property
    def index(self) -> int:
        """The frame shown now."""
        return int(self.slider.value)

    def show(self, i: int) -> "FramePlayer":
        """Show frame ``i`` (``-1`` is the last); returns the player so ``player.show(-1)`` displays it."""
        n = len(self.frames)
        if not -n <= i < n:
            raise IndexError(f"frame {i} out of range for a player with {n} frames")
        i = i % n
        if i == self.slider.value:
            self._on_index({"new": i})
        else:
            self.slider.value = i
        self.play.value = i  # keeps the Play button in step when there is no browser (and so no jslink)
        return self

    def __repr__(self) -> str:
        return f"FramePlayer({len(self.frames)} frames, showing {self.index}: {self.labels[self.index]!r})"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict:
        """The widget for front ends with a live kernel, and the current frame as a plain PNG for static
        viewers (GitHub, nbviewer, a notebook opened before its kernel runs)."""
        bundle = dict(self.widget._repr_mimebundle_(include=include, exclude=exclude))
        bundle["text/plain"] = repr(self)
        bundle["image/png"] = base64.b64encode(self.frames[self.index]).decode("ascii")
        return bundle


class LiveWidget:
    """A widget that computes when a control moves, with what a lecture hall needs around it: `busy` shows
    "computing..." under it and marks it ``dlcourse-busy`` (what the browser tests wait for) while it works, and a
    still text stands in for it where there is no kernel (a static viewer, a notebook reopened before it runs)."""

    BUSY_CLASS = "dlcourse-busy"

    def __init__(self, widget: Any, still: str) -> None:
        import ipywidgets as widgets

        self.widget, self.still = widget, still
        self.status = widgets.Label("", style={"font_size": f"{TEXT_PT + 2}px"})
        self.view = widgets.VBox([widget, self.status])

    def busy(self):
        """``with live.busy(): ...``: the busy state for the duration of the block."""
        import contextlib

        @contextlib.contextmanager
        def state():
            self.view.add_class(self.BUSY_CLASS)
            self.status.value = "computing..."
            try:
                yield
            finally:
                self.status.value = ""
                self.view.remove_class(self.BUSY_CLASS)

        return state()

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict:
        bundle = dict(self.view._repr_mimebundle_(include=include, exclude=exclude))
        bundle["text/plain"] = self.still
        return bundle
