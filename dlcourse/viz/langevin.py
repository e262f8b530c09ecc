"""Langevin chains to watch: particles on a 2-D density, and digits emerging from noise.

Two players, both built on `dlcourse.viz.player.FramePlayer` (every frame is a PNG made once, up front):

- `LangevinPlayer`: chains of particles over a 2-D density (heat map of log p_σ) and its score field (arrows),
  with controls for the step size ε, the number of steps, the noise level σ and annealing. Every combination of
  the controls' values is simulated and rendered when the player is built, so a control swaps precomputed
  frames and never waits for a sampler or for matplotlib.
- `image_chain_player`: an annealed Langevin chain of images (e.g. of the shipped ``ncsn_fashion`` model, recorded
  by `dlcourse.score.family.model_image_chain`) as a grid, one frame per recorded step.

The non-widget halves, used by the tests and by anyone who wants the pictures without a kernel:
`toy_chain` (simulate), `ChainCanvas` / `render_chain_pngs` (draw 2-D chains), `image_chain` / `image_grid` /
`render_image_chain_pngs` (images).

What the controls mean (Song & Ermon 2019, eq. 2 and Algorithm 1; the paper's step convention
x ← x + (α/2) s(x) + √α z, see `dlcourse.score.langevin`):

- plain Langevin follows the score of p_σ, the data blurred by N(0, σ² I) (σ = 0: the data density itself),
  with step α = ε for ``n_steps`` steps;
- annealed Langevin runs ``num_levels`` levels of a geometric ladder from σ₁ = σ down to σ_L = ``sigma_min``,
  ``n_steps // num_levels`` steps each, with α_i = ε σ_i² / σ_L² (ε is the step at the last level). When σ is not
  above σ_L there is nothing to anneal: the chain runs all its steps at σ_L.

2-D frames are drawn without matplotlib after the first: the background (heat map, arrows, axes) is rendered once
per target density, reduced to a palette, and each frame stamps the particles into a copy of its pixel indices at
the positions given by the axes' own data-to-pixel transform. A frame costs about a millisecond, and the particle
at data point x is exactly at ``canvas.to_pixels(x)`` (the tests check this).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, ShapeError
from .images import image_grid
from .player import DEFAULT_DPI, FramePlayer, control_width

__all__ = [
    "ToyChain",
    "chain_ladder",
    "toy_chain",
    "ChainCanvas",
    "render_chain_pngs",
    "LangevinPlayer",
    "ImageChain",
    "image_chain",
    "image_grid",
    "render_image_chain_pngs",
    "image_chain_player",
    "palette_png",
]

Extent = tuple[float, float, float, float]
ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

PARTICLE_RGB = (214, 39, 40)  # matplotlib's tab:red
OUTLINE_RGB = (255, 255, 255)


# ---------------------------------------------------------------------------------------------------------------
# 2-D chains
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class ToyChain:
    """A recorded chain of N particles in 2-D.

    positions: (F, N, 2) float32, the particles at the recorded steps; steps: (F,) the global step of each frame
    (0 = the start); sigmas: (F,) the noise level in effect at that step (the level the step was taken at; the
    start shows the first level). settings: the arguments of `toy_chain` that made it.
    """

    positions: torch.Tensor
    steps: list[int]
    sigmas: list[float]
    settings: dict[str, Any] = field(default_factory=dict)

    def labels(self) -> list[str]:
        """One caption per frame: ``"step  40 / 200  σ=1.00"``."""
        total = self.steps[-1]
        width = len(str(total))
        return [f"step {t:{width}d} / {total}  σ={s:.2f}" for t, s in zip(self.steps, self.sigmas)]


def chain_ladder(sigma: float, annealed: bool, sigma_min: float = 1.0, num_levels: int = 10) -> list[float]:
    """The noise levels a chain visits: ``[σ]`` for plain Langevin; for annealed Langevin the geometric ladder
    σ₁ = σ > ... > σ_L = ``sigma_min`` with ``num_levels`` levels (Song & Ermon 2019, Section 4.1), or just
    ``[sigma_min]`` when σ ≤ σ_L (nothing to anneal)."""
    if sigma < 0 or not math.isfinite(sigma):
        raise ConfigError(f"the noise level sigma must be finite and >= 0, got {sigma}")
    if not annealed:
        return [float(sigma)]
    if sigma_min <= 0:
        raise ConfigError(f"annealed Langevin needs sigma_min > 0, got {sigma_min}")
    if num_levels < 2:
        raise ConfigError(f"annealed Langevin needs num_levels >= 2, got {num_levels}")
    if sigma <= sigma_min:
        return [float(sigma_min)]
    ratio = (sigma_min / sigma) ** (1.0 / (num_levels - 1))
    return [float(sigma * ratio**i) for i in range(num_levels - 1)] + [float(sigma_min)]


def toy_chain(score_fn: ScoreFn, *, step_size: float, n_steps: int, sigma: float = 0.0, annealed: bool = False,
              sigma_min: float = 1.0, num_levels: int = 10, n_chains: int = 300, n_frames: int = 25, seed: int = 0,
              init: tuple[float, float] = (-8.0, 8.0), x0: torch.Tensor | None = None) -> ToyChain:
    """Simulate (annealed) Langevin chains in 2-D and record about ``n_frames`` + 1 frames.

    Args:
        score_fn: ``score_fn(x (B, 2), sigma (B,)) -> (B, 2)``, the score of p_σ: e.g.
            ``lambda x, s: mix.score(x, sigma=s)`` for a `GaussianMixture`, or a trained `NCSN`.
        step_size: ε; plain: α = ε, annealed: α_i = ε σ_i² / σ_L² (Song & Ermon 2019, Algorithm 1).
        n_steps: total number of steps (annealed: ``n_steps // L`` per level, L the ladder's length).
        sigma, annealed, sigma_min, num_levels: the ladder, see `chain_ladder`.
        n_chains: N, particles started uniform on ``init``² (or at ``x0`` (N, 2) if given).
        n_frames: frames to record besides the start (every ``ceil(n_steps / n_frames)`` steps, and the end).
        seed: seeds the start and the chain's noise (a CPU generator), so a chain is reproducible.

    The samplers are `dlcourse.score.langevin_dynamics` and `dlcourse.score.annealed_langevin_dynamics`
    (paper convention) with ``record_every``.
    """
    from ..score.langevin import annealed_langevin_dynamics, langevin_dynamics

    if not (step_size > 0 and math.isfinite(step_size)):
        raise ConfigError(f"step_size must be positive, got {step_size}")
    if n_frames < 1:
        raise ConfigError(f"n_frames must be at least 1, got {n_frames}")
    ladder = chain_ladder(sigma, annealed, sigma_min, num_levels)
    steps_each = n_steps // len(ladder)
    if steps_each < 1:
        raise ConfigError(f"n_steps={n_steps} is fewer than the {len(ladder)} levels of the ladder: "
                          "give at least one step per level")
    total = steps_each * len(ladder)
    generator = torch.Generator().manual_seed(int(seed))
    if x0 is None:
        low, high = init
        x0 = low + (high - low) * torch.rand(n_chains, 2, generator=generator)  # (N, 2)
    elif x0.dim() != 2 or x0.shape[1] != 2:
        raise ShapeError(f"x0 must have shape (N, 2), got {tuple(x0.shape)}")
    every = max(1, math.ceil(total / n_frames))
    if len(ladder) == 1:
        level = torch.full((x0.shape[0],), ladder[0], dtype=x0.dtype)  # (N,)
        _, frames = langevin_dynamics(lambda x: score_fn(x, level), x0, step_size, total,
                                      generator=generator, record_every=every)
    else:
        _, frames = annealed_langevin_dynamics(score_fn, x0, torch.tensor(ladder, dtype=torch.float64), step_size,
                                               steps_each, generator=generator, record_every=every)
    steps = list(range(0, total + 1, every))
    if steps[-1] != total:
        steps.append(total)
    sigmas = [ladder[min(max(t - 1, 0) // steps_each, len(ladder) - 1)] for t in steps]
    settings = dict(step_size=step_size, n_steps=n_steps, sigma=sigma, annealed=annealed, sigma_min=sigma_min,
                    num_levels=num_levels, n_chains=int(x0.shape[0]), seed=seed, ladder=ladder,
                    steps_each=steps_each)
    return ToyChain(frames.float(), steps, sigmas, settings)


def _mixture_score(dist: Any) -> ScoreFn:
    """The exact score of p_σ for a toy: ``dist.score(x, sigma=σ)`` for a `GaussianMixture` (any σ), else σ = 0 only."""
    from ..data.toy2d import GaussianMixture

    if isinstance(dist, GaussianMixture):
        return lambda x, s: dist.score(x, sigma=s)
    if not getattr(dist, "has_density", False):
        raise ConfigError(f"{getattr(dist, 'name', dist)!r} has no exact score; pass score_fn= (e.g. a trained NCSN)")

    def score(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        if bool((s != 0).any()):
            raise ConfigError(f"{dist.name} has an exact score only at sigma = 0 (no noise); use a GaussianMixture "
                              "toy or a trained score net for sigma > 0")
        return dist.score(x)

    return score


class ChainCanvas:
    """A 2-D panel drawn once (heat map of ``log_prob``, unit arrows along ``score``, axes), then stamped with
    particles for each frame.

    Args:
        log_prob: ``(M, 2) -> (M,)`` or None; shown clipped ``density_range`` nats below its maximum.
        score: ``(M, 2) -> (M, 2)`` or None; arrows of equal length on a ``quiver_grid``² grid.
        extent: ``(xmin, xmax, ymin, ymax)``.
        title: optional title above the panel.

    ``to_pixels(points (N, 2))`` gives (col, row) pixel coordinates from the axes' transform; ``render(points)``
    returns PNG bytes with a dot of ``radius`` pixels (and a one-pixel white rim) at each point inside the axes.
    """

    def __init__(self, log_prob: Callable | None = None, score: Callable | None = None,
                 extent: Extent = (-10.0, 10.0, -10.0, 10.0), *, title: str | None = None,
                 figsize: tuple[float, float] = (3.6, 3.6), dpi: int = DEFAULT_DPI, cmap: str = "Blues",
                 density_range: float = 12.0, resolution: int = 120, quiver_grid: int = 15, radius: int = 1,
                 colors: int = 120) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from PIL import Image

        from .plots import draw_background

        xmin, xmax, ymin, ymax = extent
        if not (xmin < xmax and ymin < ymax):
            raise ConfigError(f"extent must be (xmin, xmax, ymin, ymax) with min < max, got {extent}")
        if not 1 <= colors <= 250:
            raise ConfigError(f"colors must be between 1 and 250 (two palette entries are kept for particles), got {colors}")
        self.extent = tuple(float(v) for v in extent)
        fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
        ax = fig.add_subplot()
        draw_background(ax, self.extent, density=log_prob, score=score, title=title, cmap=cmap,
                        density_range=density_range, resolution=resolution, quiver_grid=quiver_grid)
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        rgb = np.asarray(canvas.buffer_rgba())[..., :3].copy()  # (H, W, 3)
        self.height, self.width = rgb.shape[:2]
        self._transform = ax.transData.frozen()
        bbox = ax.get_window_extent()  # display coordinates, origin bottom-left
        self._cols = (int(math.ceil(bbox.x0)), int(math.floor(bbox.x1)))
        self._rows = (int(math.ceil(self.height - bbox.y1)), int(math.floor(self.height - bbox.y0)))
        # One palette for every frame of this canvas: the background's colours, then the particle and its rim.
        quantized = Image.fromarray(rgb).quantize(colors=colors, method=Image.Quantize.MEDIANCUT,
                                                  dither=Image.Dither.NONE)
        n_bg = colors
        palette = (quantized.getpalette() or [])[: 3 * n_bg]
        palette += [0] * (3 * n_bg - len(palette))
        self.particle_index, self.outline_index = n_bg, n_bg + 1
        self._palette = palette + list(PARTICLE_RGB) + list(OUTLINE_RGB)
        self.background = np.asarray(quantized, dtype=np.uint8).copy()  # (H, W) palette indices
        self.background_rgb = rgb
        r = int(radius)
        if r < 0:
            raise ConfigError(f"radius must be >= 0, got {radius}")
        dy, dx = np.mgrid[-r - 1: r + 2, -r - 1: r + 2]
        d2 = dx**2 + dy**2
        self._rim = np.stack([dy[d2 <= (r + 1) ** 2], dx[d2 <= (r + 1) ** 2]], axis=-1)  # (K1, 2)
        self._dot = np.stack([dy[d2 <= r * r + r], dx[d2 <= r * r + r]], axis=-1)  # (K2, 2)

    def to_pixels(self, points: Any) -> np.ndarray:
        """(N, 2) data coordinates -> (N, 2) float pixel coordinates (col, row) in the rendered image."""
        p = np.asarray(points.detach().cpu() if hasattr(points, "detach") else points, dtype=np.float64)
        disp = self._transform.transform(p.reshape(-1, 2))  # (N, 2) display (x right, y up), pixels
        return np.stack([disp[:, 0], self.height - disp[:, 1]], axis=-1)

    def frame_indices(self, points: Any) -> np.ndarray:
        """The palette-index image (H, W) of one frame: the background with a dot at each point in the axes."""
        img = self.background.copy()
        if len(points) == 0:
            return img
        pix = self.to_pixels(points)  # (N, 2) col, row
        far = ~(np.abs(pix) < 1e6).all(axis=1)  # NaN, inf or far outside: a chain that diverged is not drawn
        pix = np.floor(pix[~far]).astype(np.int64)
        for offsets, index in ((self._rim, self.outline_index), (self._dot, self.particle_index)):
            rows = pix[:, 1:2] + offsets[None, :, 0]  # (N, K)
            cols = pix[:, 0:1] + offsets[None, :, 1]
            inside = ((rows >= self._rows[0]) & (rows < self._rows[1]) & (cols >= self._cols[0])
                      & (cols < self._cols[1]))
            img[rows[inside], cols[inside]] = index
        return img

    def render(self, points: Any) -> bytes:
        """PNG bytes of one frame with the particles ``points`` (N, 2)."""
        from PIL import Image

        image = Image.fromarray(self.frame_indices(points), mode="P")
        image.putpalette(self._palette)
        buf = io.BytesIO()
        image.save(buf, format="png", compress_level=1)  # 1 ms a frame; level 9 saves 15% at 20x the time
        return buf.getvalue()


def render_chain_pngs(chain: ToyChain | torch.Tensor, canvas: ChainCanvas) -> list[bytes]:
    """One PNG per recorded frame of ``chain`` (a `ToyChain` or positions (F, N, 2)) drawn on ``canvas``."""
    positions = chain.positions if isinstance(chain, ToyChain) else chain
    if positions.dim() != 3 or positions.shape[-1] != 2:
        raise ShapeError(f"chain positions must have shape (F, N, 2), got {tuple(positions.shape)}")
    return [canvas.render(frame) for frame in positions]


def _choices(name: str, values: Sequence[Any]) -> tuple:
    values = tuple(values)
    if not values:
        raise ConfigError(f"{name} needs at least one value")
    if len(set(values)) != len(values):
        raise ConfigError(f"{name} has repeated values: {values}")
    return values


class LangevinPlayer:
    """(Annealed) Langevin chains over a 2-D density, with controls that respond at once.

    Args:
        dist: a toy from `dlcourse.data.toy2d` with an exact score (default: `two_gaussians`, the mixture of
            Song & Ermon 2019, Figure 3); for σ > 0 it must be a `GaussianMixture` (its perturbed score is exact).
        score_fn: instead of the exact score, ``score_fn(x, sigma)``, e.g. a trained `NCSN`; then ``log_prob``
            (``(x, sigma) -> log p_σ(x)``, optional) draws the heat map.
        step_sizes, n_steps, sigmas, annealed: the values each control offers (the first is shown first).
        sigma_min, num_levels: the annealed ladder's last level and length (`chain_ladder`).
        n_chains, n_frames, seed, init: see `toy_chain`; every combination uses the same start and noise seed.

    Every combination is simulated and rendered here (``len(step_sizes) · len(n_steps) · len(sigmas) ·
    len(annealed)`` chains of ``n_frames + 1`` frames). ``player.chains[key]`` and ``player.frames[key]`` hold
    them, key = ``(step_size, n_steps, sigma, annealed)``; ``player.key`` is the one shown. Display ``player``.
    """

    def __init__(self, dist: Any = None, *, score_fn: ScoreFn | None = None, log_prob: Callable | None = None,
                 step_sizes: Sequence[float] = (0.02, 0.1, 0.5), n_steps: Sequence[int] = (100, 500),
                 sigmas: Sequence[float] = (0.0, 3.0, 20.0), annealed: Sequence[bool] = (False, True),
                 sigma_min: float = 1.0, num_levels: int = 10, n_chains: int = 300, n_frames: int = 25,
                 seed: int = 0, init: tuple[float, float] = (-8.0, 8.0),
                 extent: Extent = (-10.0, 10.0, -10.0, 10.0), figsize: tuple[float, float] = (4.2, 4.2),
                 dpi: int = DEFAULT_DPI, interval_ms: int = 120) -> None:
        import ipywidgets as widgets

        from ..data.toy2d import two_gaussians

        if score_fn is None:
            dist = two_gaussians() if dist is None else dist
            score_fn = _mixture_score(dist)
            if log_prob is None and getattr(dist, "has_density", False):
                from ..data.toy2d import GaussianMixture

                if isinstance(dist, GaussianMixture):
                    log_prob = lambda x, s: dist.log_prob(x, sigma=s)  # noqa: E731
                else:
                    log_prob = lambda x, s: dist.log_prob(x)  # noqa: E731
        elif isinstance(score_fn, torch.nn.Module) and any(float(v) == 0.0 for v in sigmas) and False in annealed:
            raise ConfigError("a score network s(x, sigma) is not defined at sigma = 0 (it divides by sigma): give "
                              "plain Langevin a noise level > 0, e.g. the network's smallest sigma")
        self.score_fn, self.log_prob = score_fn, log_prob
        self.options = {
            "step_size": _choices("step_sizes", [float(v) for v in step_sizes]),
            "n_steps": _choices("n_steps", [int(v) for v in n_steps]),
            "sigma": _choices("sigmas", [float(v) for v in sigmas]),
            "annealed": _choices("annealed", [bool(v) for v in annealed]),
        }
        self.sigma_min, self.num_levels = float(sigma_min), int(num_levels)
        self.chains: dict[tuple, ToyChain] = {}
        self.frames: dict[tuple, list[bytes]] = {}
        self.canvases: dict[float, ChainCanvas] = {}
        for key in self.keys():
            eps, n, sigma, ann = key
            chain = toy_chain(score_fn, step_size=eps, n_steps=n, sigma=sigma, annealed=ann, sigma_min=sigma_min,
                              num_levels=num_levels, n_chains=n_chains, n_frames=n_frames, seed=seed, init=init)
            self.chains[key] = chain
            self.frames[key] = render_chain_pngs(chain, self._canvas(chain.settings["ladder"][-1], extent, figsize, dpi))

        first = self.keys()[0]
        self.player = FramePlayer(self.frames[first], labels=self._labels(first), interval_ms=interval_ms, dpi=dpi)
        names = {
            "step_size": ("step ε", [(f"{v:g}", v) for v in self.options["step_size"]]),
            "n_steps": ("steps", [(str(v), v) for v in self.options["n_steps"]]),
            "sigma": ("σ", [(f"{v:g}", v) for v in self.options["sigma"]]),
            "annealed": ("", [("annealed" if v else "plain", v) for v in self.options["annealed"]]),
        }
        # Each control is one row segment, its name beside it (not above it) and its buttons as wide as their
        # labels; together with Play, the slider and the caption they wrap onto at most two lines of a 1280x720
        # projector at 150% zoom, above the picture. A control with one option is still shown: it says what
        # the picture is.
        self.controls = {
            name: widgets.ToggleButtons(options=options, tooltips=[],
                                        style={"button_width": control_width([o[0] for o in options])},
                                        layout=widgets.Layout(width="max-content"))
            for name, (description, options) in names.items()
        }
        for control in self.controls.values():
            control.observe(self._on_control, names="value")
        self.key = first
        p = self.player
        # A control's name is a label beside its buttons, the two kept together when the row wraps (ToggleButtons'
        # own description would stand above the buttons and double the height of the controls).
        groups = [widgets.HBox([widgets.Label(names[name][0]), control] if names[name][0] else [control],
                               layout=widgets.Layout(flex="0 0 auto", align_items="center", margin="0 10px 0 0"))
                  for name, control in self.controls.items()]
        row = widgets.HBox([*groups, p.play, p.slider, p.label],
                           layout=widgets.Layout(flex_flow="row wrap", align_items="center"))
        self.widget = widgets.VBox([row, p.image])

    def keys(self) -> list[tuple]:
        """Every (step_size, n_steps, sigma, annealed) combination, in the order of the options."""
        o = self.options
        return [(e, n, s, a) for a in o["annealed"] for s in o["sigma"] for n in o["n_steps"] for e in o["step_size"]]

    def _canvas(self, sigma: float, extent: Extent, figsize, dpi) -> ChainCanvas:
        """One canvas per target density p_σ (the level the chain ends at), drawn once and shared."""
        if sigma not in self.canvases:
            def at(fn):
                return None if fn is None else (lambda x: fn(x, torch.full((x.shape[0],), sigma, dtype=x.dtype)))

            title = "data density p" if sigma == 0 else rf"blurred density $q_\sigma$, $\sigma$ = {sigma:g}"
            self.canvases[sigma] = ChainCanvas(at(self.log_prob), at(self.score_fn), extent, title=title,
                                               figsize=figsize, dpi=dpi)
        return self.canvases[sigma]

    def _labels(self, key: tuple) -> list[str]:
        return self.chains[key].labels()

    def _on_control(self, change: dict) -> None:
        self.select(**{name: c.value for name, c in self.controls.items()})

    def select(self, step_size: float | None = None, n_steps: int | None = None, sigma: float | None = None,
               annealed: bool | None = None) -> "LangevinPlayer":
        """Show the chain for these control values (None keeps the current one), at the same relative position;
        also moves the controls. Returns the player."""
        current = dict(zip(("step_size", "n_steps", "sigma", "annealed"), self.key))
        new = {k: (current[k] if v is None else v) for k, v in
               dict(step_size=step_size, n_steps=n_steps, sigma=sigma, annealed=annealed).items()}
        key = (float(new["step_size"]), int(new["n_steps"]), float(new["sigma"]), bool(new["annealed"]))
        if key not in self.frames:
            raise ConfigError(f"no precomputed chain for step_size={key[0]}, n_steps={key[1]}, sigma={key[2]}, "
                              f"annealed={key[3]}; the options are {self.options}")
        for name, value in zip(("step_size", "n_steps", "sigma", "annealed"), key):
            if self.controls[name].value != value:
                self.controls[name].unobserve(self._on_control, names="value")
                self.controls[name].value = value
                self.controls[name].observe(self._on_control, names="value")
        old_n, old_i = self.player.n_frames, self.player.index
        frames, labels = self.frames[key], self._labels(key)
        self.key = key
        p = self.player
        p.frames, p.labels = frames, labels
        i = round(old_i * (len(frames) - 1) / max(old_n - 1, 1))
        p.play.max = p.slider.max = len(frames) - 1
        p.show(i)
        return self

    @property
    def chain(self) -> ToyChain:
        """The chain shown now."""
        return self.chains[self.key]

    def __repr__(self) -> str:
        e, n, s, a = self.key
        return (f"LangevinPlayer({len(self.frames)} chains; showing step_size={e:g}, n_steps={n}, sigma={s:g}, "
                f"{'annealed' if a else 'plain'}, frame {self.player.index}: {self.player.labels[self.player.index]!r})")

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict:
        """The widget, and the current frame as a PNG for static viewers (see `FramePlayer`)."""
        bundle = dict(self.widget._repr_mimebundle_(include=include, exclude=exclude))
        player_bundle = self.player._repr_mimebundle_(include=include, exclude=exclude)
        bundle["text/plain"] = repr(self)
        bundle["image/png"] = player_bundle["image/png"]
        return bundle


def palette_png(fig: Any, colors: int = 64, dpi: int = DEFAULT_DPI) -> bytes:
    """A matplotlib figure as a palette PNG of at most ``colors`` colours (closes the figure): several times smaller
    than full colour for arrows-and-heat-map frames, which matters for frames stored in committed notebooks."""
    from PIL import Image

    from .player import render_png

    image = Image.open(io.BytesIO(render_png(fig, dpi=dpi))).convert("RGB")
    image = image.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    buf = io.BytesIO()
    image.save(buf, format="png", compress_level=9)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------------------------
# image chains
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class ImageChain:
    """A recorded annealed Langevin chain of B images: frames (F, B, C, H, W) as the model sees them,
    steps (F,) the global step of each frame, sigmas (F,) the level in effect (the last frame may be the
    denoised output, labelled ``denoised``)."""

    frames: torch.Tensor
    steps: list[int]
    sigmas: list[float]
    denoised: bool = False

    def labels(self) -> list[str]:
        total = self.steps[-1]
        width = len(str(total))
        out = [f"step {t:{width}d} / {total}  σ={s:.3f}" for t, s in zip(self.steps, self.sigmas)]
        if self.denoised:
            out[-1] = f"denoised: x + σ_L² s(x, σ_L), σ_L={self.sigmas[-1]:.3f}"
        return out


def image_chain(score_fn: ScoreFn, x0: torch.Tensor, sigmas: Sequence[float] | torch.Tensor, eps: float,
                n_steps_each: int, *, convention: str = "code", denoise: bool = True, n_frames: int = 40,
                generator: torch.Generator | None = None) -> ImageChain:
    """Run `dlcourse.score.annealed_langevin_dynamics` from ``x0`` (B, C, H, W) and record about ``n_frames``
    frames (every ``ceil(L T / n_frames)`` steps, the end, and the denoised output if ``denoise``)."""
    from ..score.langevin import annealed_langevin_dynamics

    if x0.dim() != 4:
        raise ShapeError(f"x0 must be a batch of images (B, C, H, W), got shape {tuple(x0.shape)}")
    ladder = [float(s) for s in (sigmas.tolist() if isinstance(sigmas, torch.Tensor) else sigmas)]
    total = len(ladder) * int(n_steps_each)
    every = max(1, math.ceil(total / max(1, n_frames)))
    _, frames = annealed_langevin_dynamics(score_fn, x0, torch.tensor(ladder, dtype=torch.float64), eps,
                                           n_steps_each, convention=convention, denoise=denoise,
                                           generator=generator, record_every=every)
    steps = list(range(0, total + 1, every))
    if steps[-1] != total:
        steps.append(total)
    if denoise:
        steps.append(total)
    sigmas_f = [ladder[min(max(t - 1, 0) // n_steps_each, len(ladder) - 1)] for t in steps]
    return ImageChain(frames, steps, sigmas_f, denoised=denoise)


def render_image_chain_pngs(chain: ImageChain | torch.Tensor, nrow: int | None = None, scale: int = 4,
                            pad: int = 1) -> list[bytes]:
    """One PNG per frame of an image chain (an `ImageChain` or frames (F, B, C, H, W)), each a grid of the B
    images (`image_grid`) in 8-bit grey or RGB."""
    from .player import to_png

    frames = chain.frames if isinstance(chain, ImageChain) else chain
    if frames.dim() != 5:
        raise ShapeError(f"image chain frames must have shape (F, B, C, H, W), got {tuple(frames.shape)}")
    return [to_png(image_grid(f, nrow=nrow, pad=pad, scale=scale)) for f in frames]


def image_chain_player(chain: ImageChain, nrow: int | None = None, scale: int = 4,
                       interval_ms: int = 120) -> FramePlayer:
    """A `FramePlayer` over the frames of an image chain, captioned with the step and σ of each frame."""
    return FramePlayer(render_image_chain_pngs(chain, nrow=nrow, scale=scale), labels=chain.labels(),
                       interval_ms=interval_ms)
