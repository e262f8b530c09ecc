"""The Langevin chain players: the frames are the sampler's recorded chain, drawn where they belong, and the
controls change the chain the way the math says they should.

Tolerances:
- a mode fraction of N independent chains has binomial standard error √(p(1−p)/N); we allow 5 of them plus the
  bias of the finite annealed sampler (−0.021 for the paper's settings, measured in tests/test_langevin.py).
- a sample variance of N independent Gaussian chains has standard error v √(2/(N−1)); we allow 5 of them.
- pixel positions: a dot is centred on the pixel that contains its point, so its centroid is within one pixel.
"""

import io
import math

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from PIL import Image

from dlcourse.data.toy2d import GaussianMixture, two_gaussians
from dlcourse.errors import ConfigError, ShapeError
from dlcourse.score import stationary_variance_gaussian
from dlcourse.viz.langevin import (ChainCanvas, ImageChain, LangevinPlayer, chain_ladder, image_chain,
                                   image_chain_player, image_grid, render_chain_pngs, render_image_chain_pngs,
                                   toy_chain)


def _mixture_score(x, s):
    return two_gaussians(dtype=x.dtype).score(x, sigma=s)


def _decode(png):
    return Image.open(io.BytesIO(png))


# ---------------------------------------------------------------------------------------------------------------
# simulation


def test_chain_ladder():
    assert chain_ladder(3.0, annealed=False) == [3.0]
    ladder = chain_ladder(20.0, annealed=True, sigma_min=1.0, num_levels=10)
    assert len(ladder) == 10 and ladder[0] == 20.0 and ladder[-1] == 1.0
    ratios = np.array(ladder[:-1]) / np.array(ladder[1:])
    assert np.allclose(ratios, 20.0 ** (1 / 9))  # geometric
    assert chain_ladder(0.5, annealed=True, sigma_min=1.0) == [1.0]  # nothing to anneal
    with pytest.raises(ConfigError, match="sigma"):
        chain_ladder(-1.0, annealed=False)
    with pytest.raises(ConfigError, match="num_levels"):
        chain_ladder(5.0, annealed=True, num_levels=1)


def test_plain_chain_is_the_langevin_recursion_written_out():
    """Second implementation: x_{t+1} = x_t + (ε/2) ∇log p_σ(x_t) + √ε z_t, with the same random numbers."""
    eps, n, sigma, seed = 0.1, 40, 0.7, 3
    chain = toy_chain(_mixture_score, step_size=eps, n_steps=n, sigma=sigma, n_chains=50, n_frames=10, seed=seed)
    g = torch.Generator().manual_seed(seed)
    x = -8.0 + 16.0 * torch.rand(50, 2, generator=g)
    mix = two_gaussians()
    expected = {0: x}
    for t in range(1, n + 1):
        z = torch.randn(50, 2, generator=g)
        x = x + 0.5 * eps * mix.score(x, sigma=sigma) + math.sqrt(eps) * z
        expected[t] = x
    assert chain.steps == list(range(0, 41, 4))
    assert chain.positions.shape == (11, 50, 2)
    for i, t in enumerate(chain.steps):
        assert torch.allclose(chain.positions[i], expected[t], atol=1e-5), t
    assert chain.sigmas == [sigma] * 11
    assert chain.labels()[-1] == "step 40 / 40  σ=0.70"


def test_annealed_chain_is_algorithm_1_written_out():
    """Song & Ermon (2019), Algorithm 1: T steps at each σ_i with α_i = ε σ_i² / σ_L²."""
    eps, seed = 0.05, 1
    chain = toy_chain(_mixture_score, step_size=eps, n_steps=30, sigma=8.0, annealed=True, sigma_min=1.0,
                      num_levels=3, n_chains=20, n_frames=30, seed=seed)
    ladder = chain.settings["ladder"]
    assert ladder == pytest.approx([8.0, math.sqrt(8.0), 1.0])
    g = torch.Generator().manual_seed(seed)
    x = -8.0 + 16.0 * torch.rand(20, 2, generator=g)
    mix = two_gaussians()
    states, levels = [x], [8.0]
    for s in ladder:
        alpha = eps * s**2 / ladder[-1] ** 2
        for _ in range(10):
            z = torch.randn(20, 2, generator=g)
            x = x + 0.5 * alpha * mix.score(x, sigma=s) + math.sqrt(alpha) * z
            states.append(x)
            levels.append(s)
    assert chain.steps == list(range(31))
    assert torch.allclose(chain.positions, torch.stack(states), atol=1e-4)
    assert chain.sigmas == pytest.approx(levels)
    with pytest.raises(ConfigError, match="fewer than the 3 levels"):
        toy_chain(_mixture_score, step_size=eps, n_steps=2, sigma=8.0, annealed=True, num_levels=3)


def test_sigma_sets_the_target_density():
    """Plain Langevin on p_σ for data N(0, I): the chain's stationary law is N(0, v I) with v the discretised
    chain's variance for the target variance 1 + σ² (`stationary_variance_gaussian`); 3000 chains, 200 steps of
    α = 0.4 (1 + σ²) (contraction 0.8 per step: the start is forgotten)."""
    single = GaussianMixture([1.0], [[0.0, 0.0]], 1.0)
    score = lambda x, s: single.score(x, sigma=s)  # noqa: E731
    n = 3000
    for sigma in (0.0, 2.0):
        target = 1.0 + sigma**2
        eps = 0.4 * target
        chain = toy_chain(score, step_size=eps, n_steps=200, sigma=sigma, n_chains=n, n_frames=1, seed=0)
        x = chain.positions[-1].double()
        v = stationary_variance_gaussian(eps, target)
        se = v * math.sqrt(2 / (n - 1))
        for d in range(2):
            assert abs(x[:, d].var().item() - v) < 5 * se, (sigma, x[:, d].var().item(), v)


# ---------------------------------------------------------------------------------------------------------------
# drawing


def test_canvas_transform_puts_the_density_peak_under_its_mode():
    """Independent of `to_pixels`: the darkest pixels of a one-Gaussian heat map are at its mean."""
    mode = (3.0, -2.0)
    dist = GaussianMixture([1.0], [list(mode)], 1.0)
    canvas = ChainCanvas(dist.log_prob, None, (-6.0, 6.0, -6.0, 6.0), resolution=200)
    rgb = canvas.background_rgb.astype(np.int64)
    c0, c1 = canvas._cols
    r0, r1 = canvas._rows
    inner = rgb[r0 + 4: r1 - 4, c0 + 4: c1 - 4].sum(-1)  # away from the spines and ticks
    # the darkest 0.2% of pixels (~150): a single darkest pixel moves by a few pixels with the palette's rounding
    rows, cols = np.nonzero(inner <= np.quantile(inner, 0.002))
    centroid = np.array([cols.mean() + c0 + 4 + 0.5, rows.mean() + r0 + 4 + 0.5])
    assert np.linalg.norm(centroid - canvas.to_pixels([mode])[0]) < 2.0
    # the extent's corners are the axes' corners
    corners = canvas.to_pixels([[-6.0, 6.0], [6.0, -6.0]])
    assert np.allclose(corners[0], [c0, r0], atol=1.5) and np.allclose(corners[1], [c1, r1], atol=1.5)


def test_frames_show_the_recorded_particles_and_nothing_else():
    mix = two_gaussians()
    canvas = ChainCanvas(mix.log_prob, mix.score, radius=1)
    path = torch.tensor([[[-5.0, -5.0]], [[0.0, 2.5]], [[7.5, -3.0]], [[30.0, 0.0]]])  # (F=4, N=1, 2); last outside
    pngs = render_chain_pngs(path, canvas)
    assert len(pngs) == 4
    for frame, png in zip(path, pngs):
        img = _decode(png)
        assert img.mode == "P" and img.size == (canvas.width, canvas.height)
        idx = np.asarray(img)
        dot = idx == canvas.particle_index
        changed = idx != canvas.background
        if abs(frame[0, 0]) > 10:  # outside the extent: not drawn at all
            assert not changed.any()
            continue
        rows, cols = np.nonzero(dot)
        assert len(rows) > 0
        want = canvas.to_pixels(frame)[0]
        assert abs(cols.mean() + 0.5 - want[0]) <= 1.0 and abs(rows.mean() + 0.5 - want[1]) <= 1.0
        # only the dot and its rim differ from the background, within a few pixels of the point
        rr, cc = np.nonzero(changed)
        assert np.max(np.abs(cc + 0.5 - want[0])) <= 3 and np.max(np.abs(rr + 0.5 - want[1])) <= 3
        rgb = np.asarray(img.convert("RGB"))
        assert tuple(rgb[rows[0], cols[0]]) == (214, 39, 40)
    with pytest.raises(ShapeError):
        render_chain_pngs(torch.zeros(3, 2), canvas)


# ---------------------------------------------------------------------------------------------------------------
# the player


def test_player_frames_are_the_chains_and_controls_swap_them():
    player = LangevinPlayer(step_sizes=(0.1, 0.5), n_steps=(100,), sigmas=(0.0, 3.0), annealed=(False, True),
                            n_chains=40, n_frames=5)
    assert len(player.frames) == 8
    for key, chain in player.chains.items():
        canvas = player.canvases[chain.settings["ladder"][-1]]
        assert player.frames[key] == render_chain_pngs(chain, canvas)  # deterministic, frame for frame
        assert chain.settings["step_size"] == key[0] and chain.settings["annealed"] == key[3]
    assert player.key == (0.1, 100, 0.0, False)
    player.player.show(-1)
    player.controls["annealed"].value = True  # as a click in the browser would
    key = (0.1, 100, 0.0, True)
    assert player.key == key and player.chain is player.chains[key]
    assert player.player.frames is player.frames[key]
    assert player.player.image.value == player.frames[key][-1]  # same relative position: still the last frame
    assert player.player.slider.max == player.player.play.max == len(player.frames[key]) - 1
    player.select(step_size=0.5, sigma=3.0).player.show(0)
    assert player.controls["step_size"].value == 0.5 and player.controls["sigma"].value == 3.0
    assert player.player.label.value == player.chains[(0.5, 100, 3.0, True)].labels()[0]
    with pytest.raises(ConfigError, match="no precomputed chain"):
        player.select(step_size=0.3)
    assert "annealed" in repr(player)
    bundle = player._repr_mimebundle_()
    assert "image/png" in bundle and "application/vnd.jupyter.widget-view+json" in bundle


def test_player_reproduces_figure_3_of_song_and_ermon():
    """Plain Langevin on the exact score keeps the start's split between the basins (≈ 0.509, see
    tests/test_langevin.py); annealed Langevin (σ 20 → 1, 10 levels, ε = 0.1, T = 100) recovers the weight 0.8."""
    n = 1000
    player = LangevinPlayer(step_sizes=(0.1,), n_steps=(1000,), sigmas=(20.0,), annealed=(False, True),
                            n_chains=n, n_frames=4)
    mix = two_gaussians()

    def heavy(chain):
        return (mix.component_of(chain.positions[-1]) == 0).double().mean().item()

    se = math.sqrt(0.8 * 0.2 / n)
    plain, annealed = heavy(player.chains[(0.1, 1000, 20.0, False)]), heavy(player.chains[(0.1, 1000, 20.0, True)])
    assert abs(plain - 0.509) < 0.03 + 5 * math.sqrt(0.25 / n), plain
    assert abs(annealed - 0.8) < 0.021 + 5 * se, annealed


def test_step_size_speeds_up_the_descent():
    """With the same start and noise seed, after 40 steps the chains with ε = 0.5 are much nearer a mode than with
    ε = 0.02 (the drift moves a chain (ε/2)·distance per step: 1 − 0.99⁴⁰ = 33% of the way vs 1 − 0.75⁴⁰ ≈ 100%)."""
    mix = two_gaussians()
    modes = mix.means

    def distance(eps):
        x = toy_chain(_mixture_score, step_size=eps, n_steps=40, n_chains=200, n_frames=1, seed=0).positions[-1]
        return torch.cdist(x, modes).min(dim=1).values.mean().item()

    slow, fast = distance(0.02), distance(0.5)
    assert fast < 2.0 < slow  # at equilibrium the mean distance to the mode is √(π/2) ≈ 1.25


# ---------------------------------------------------------------------------------------------------------------
# image chains


def _point_mass_score(template):
    """Exact score of a point mass at ``template`` blurred by N(0, σ² I): −(x − template)/σ²."""

    def score(x, sigma):
        return -(x - template) / sigma.reshape(-1, 1, 1, 1) ** 2

    return score


def test_image_chain_converges_to_the_template_and_records_every_frame():
    g = torch.Generator().manual_seed(0)
    template = torch.rand(1, 8, 8, generator=g)
    x0 = torch.rand(6, 1, 8, 8, generator=g)
    sigmas = torch.logspace(0, -2, 8)  # 1 -> 0.01
    eps = 0.5 * 0.01**2  # code convention: contraction 1 − ε/σ_L² = 0.5 per step at every level
    chain = image_chain(_point_mass_score(template), x0, sigmas, eps, 5, denoise=True, n_frames=8,
                        generator=torch.Generator().manual_seed(1))
    assert chain.steps == list(range(0, 41, 5)) + [40]
    assert chain.frames.shape == (10, 6, 1, 8, 8)
    assert torch.equal(chain.frames[0], x0)
    assert chain.sigmas[1] == pytest.approx(1.0) and chain.sigmas[-1] == pytest.approx(0.01)
    assert chain.labels()[-1].startswith("denoised")
    # before denoising: N(template, v) with v the code-convention chain's stationary variance at σ_L
    v = stationary_variance_gaussian(eps, 0.01**2, convention="code")
    resid = chain.frames[-2] - template
    se = v * math.sqrt(2 / (resid.numel() - 1))
    assert abs(resid.var().item() - v) < 5 * se
    # Tweedie's denoising step lands exactly on the template
    assert torch.allclose(chain.frames[-1], template.expand(6, 1, 8, 8), atol=1e-5)
    # 40 steps in frames of 6: one label per frame, the last step recorded before the denoised output
    chain = image_chain(_point_mass_score(template), x0, sigmas, eps, 5, denoise=True, n_frames=7,
                        generator=torch.Generator().manual_seed(1))
    assert chain.steps == list(range(0, 41, 6)) + [40, 40]
    assert len(chain.frames) == len(chain.labels()) == 9


def test_image_grid_layout_and_pngs():
    images = torch.arange(6, dtype=torch.float32).div(10).reshape(6, 1, 1, 1).expand(6, 1, 2, 3).contiguous()
    grid = image_grid(images, nrow=3, pad=1, scale=2)
    assert grid.shape == (2 * (2 * 3 + 1), 2 * (3 * 4 + 1))
    for i in range(6):
        r, q = divmod(i, 3)
        top, left = 2 * (1 + 3 * r), 2 * (1 + 4 * q)
        assert np.allclose(grid[top: top + 4, left: left + 6], i / 10)
    assert grid[0, 0] == 1.0  # padding is white
    frames = torch.stack([images, 1.0 - images, images * 5])  # (F=3, B=6, 1, 2, 3); the last is clamped
    pngs = render_image_chain_pngs(frames, nrow=3, scale=2)
    for f, png in zip(frames, pngs):
        decoded = np.asarray(_decode(png))
        assert np.array_equal(decoded, np.round(image_grid(f, nrow=3, scale=2) * 255).astype(np.uint8))
    rgb = image_grid(torch.rand(4, 3, 5, 5), scale=1)
    assert rgb.shape == (2 * 6 + 1, 2 * 6 + 1, 3)
    with pytest.raises(ShapeError):
        image_grid(torch.rand(4, 2, 5, 5))
    with pytest.raises(ShapeError):
        render_image_chain_pngs(torch.rand(4, 1, 5, 5))


def test_image_chain_player():
    frames = torch.rand(3, 4, 1, 8, 8)
    chain = ImageChain(frames, [0, 5, 10], [1.0, 0.5, 0.1])
    player = image_chain_player(chain, scale=2)
    assert player.n_frames == 3 and player.labels == chain.labels()
    player.show(-1)
    assert player.image.value == render_image_chain_pngs(frames, scale=2)[-1]
    assert player.label.value == "step 10 / 10  σ=0.100"


def test_shipped_digits_chain():
    """The shipped digits model: frames go from uniform noise to images near the training digits."""
    from dlcourse.checkpoint import read_manifest

    if "ncsn_digits" not in read_manifest():
        pytest.skip("ncsn_digits is not shipped yet")
    from dlcourse.data.images import load_images
    from dlcourse import load
    from dlcourse.score import model_image_chain

    from dlcourse.score import sample_ncsn

    chain = model_image_chain("ncsn_digits", n_images=16, seed=0, n_frames=10)
    assert chain.frames.shape[1:] == (16, 1, 8, 8)
    # the last frame is what `dlcourse sample ncsn --seed 0` draws on the CPU (the sampler's own path)
    model, cfg = load("ncsn_digits")
    assert torch.allclose(chain.frames[-1], sample_ncsn(model, cfg, 16, generator=torch.Generator().manual_seed(0),
                                                        device="cpu"), atol=1e-6)
    assert chain.labels()[-1].startswith("denoised") == cfg.sampler.denoise
    train, _ = load_images("digits", "train")
    flat = train.reshape(len(train), -1)

    def nearest(x):
        return torch.cdist(x.reshape(len(x), -1).clamp(0, 1), flat).min(dim=1).values.mean().item()

    # uniform noise is far from every digit; the samples are about as near as held-out digits are
    test, _ = load_images("digits", "test")
    assert nearest(chain.frames[-1]) < 0.5 * nearest(chain.frames[0])
    assert nearest(chain.frames[-1]) < 1.5 * nearest(test[:64])


def test_player_with_the_shipped_toy_score_net():
    """A trained score net drives the player too: annealed Langevin with the shipped ncsn_toy model (its own ladder
    20 -> 0.1 in 20 levels, ε = 0.001, T = 100) recovers the weight 0.8 (500 chains: 5 se = 0.09, plus 0.03 for
    the finite T and the learned score); a net at σ = 0 is refused."""
    from dlcourse.checkpoint import read_manifest

    if "ncsn_toy" not in read_manifest():
        pytest.skip("ncsn_toy is not shipped yet")
    from dlcourse import load

    model, cfg = load("ncsn_toy")
    n = 500
    player = LangevinPlayer(score_fn=model, step_sizes=(cfg.sampler.eps,), n_steps=(2000,), sigmas=(20.0,),
                            annealed=(True,), sigma_min=cfg.noise.sigma_min, num_levels=cfg.noise.num_levels,
                            n_chains=n, n_frames=4)
    chain = player.chain
    assert chain.settings["ladder"] == pytest.approx(cfg.noise.sigma_max * (cfg.noise.sigma_min / cfg.noise.sigma_max)
                                                     ** (torch.arange(20) / 19.0).numpy(), rel=1e-5)
    heavy = (two_gaussians().component_of(chain.positions[-1]) == 0).double().mean().item()
    assert abs(heavy - 0.8) < 0.03 + 5 * math.sqrt(0.16 / n), heavy
    with pytest.raises(ConfigError, match="sigma = 0"):
        LangevinPlayer(score_fn=model, sigmas=(0.0,), annealed=(False,))
