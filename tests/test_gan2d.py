"""The 2-D GAN: its losses against closed forms (Goodfellow et al. 2014, eq. (1), Prop. 1, Thm. 1), the optimal
discriminator reached by training, and reproducibility from a seed."""

from __future__ import annotations

import math

import pytest
import torch

from dlcourse.data.toy2d import GaussianMixture
from dlcourse.errors import ConfigError
from dlcourse.rl.gan2d import (GAN2D, Discriminator2D, GANConfig, discriminator_loss, generator_loss, grid,
                               train_with_snapshots)



def test_discriminator_loss_is_bce_and_log4_at_chance():
    g = torch.Generator().manual_seed(0)
    lr, lf = torch.randn(9, generator=g), torch.randn(5, generator=g)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    torch.testing.assert_close(discriminator_loss(lr, lf), bce(lr, torch.ones(9)) + bce(lf, torch.zeros(5)))
    # D = 1/2 everywhere: -V = -(log 1/2 + log 1/2) = log 4
    assert discriminator_loss(torch.zeros(4), torch.zeros(4)).item() == pytest.approx(math.log(4))


def test_generator_losses_and_their_gradients():
    """Minimax: log(1 - D); non-saturating: -log D. d/dl of each is -σ(l) and -(1 - σ(l)): where D rejects the
    samples (l very negative) the minimax gradient vanishes and the non-saturating one does not (Section 3)."""
    logits = torch.tensor([-8.0, -1.0, 0.0, 2.0], requires_grad=True)
    d = torch.sigmoid(logits.detach())
    ns = generator_loss(logits, non_saturating=True)
    torch.testing.assert_close(ns, -torch.log(d).mean())
    (g_ns,) = torch.autograd.grad(ns, logits)
    mm = generator_loss(logits, non_saturating=False)
    torch.testing.assert_close(mm, torch.log1p(-d).mean())
    (g_mm,) = torch.autograd.grad(mm, logits)
    torch.testing.assert_close(g_ns, -(1 - d) / 4)
    torch.testing.assert_close(g_mm, -d / 4)
    assert abs(g_mm[0]) < 1e-3 < abs(g_ns[0])


def _two_gaussians():
    p_data = GaussianMixture([1.0], [[1.0, 0.0]], 0.5)
    p_gen = GaussianMixture([1.0], [[-0.5, 0.5]], 1.0)
    return p_data, p_gen


def test_value_at_optimal_discriminator_is_log4_minus_2jsd():
    """Thm. 1: with D* = p_data / (p_data + p_g) (Prop. 1), i.e. logit l* = log p_data - log p_g, the loss equals
    log 4 - 2 JSD(p_data ‖ p_g). Left: Monte Carlo over samples; right: JSD by quadrature on a grid."""
    p_data, p_gen = _two_gaussians()
    g = torch.Generator().manual_seed(0)
    xr, xf = p_data.sample(200_000, generator=g).double(), p_gen.sample(200_000, generator=g).double()
    p_data, p_gen = p_data.to(dtype=torch.float64), p_gen.to(dtype=torch.float64)
    logit = lambda x: p_data.log_prob(x) - p_gen.log_prob(x)  # noqa: E731
    mc = discriminator_loss(logit(xr), logit(xf)).item()
    n, lim = 801, 8.0
    pts = grid(lim, n).double()
    cell = (2 * lim / (n - 1)) ** 2
    p, q = p_data.log_prob(pts).exp(), p_gen.log_prob(pts).exp()
    m = 0.5 * (p + q)
    kl = lambda a, b: (a * (a.clamp_min(1e-300).log() - b.clamp_min(1e-300).log())).sum() * cell  # noqa: E731
    jsd = 0.5 * kl(p, m) + 0.5 * kl(q, m)
    assert 0.1 < jsd.item() < math.log(2)  # a non-trivial pair
    # Monte Carlo standard error of the mean of two log-sigmoid terms over 2e5 samples is ~2e-3
    assert mc == pytest.approx(math.log(4) - 2 * jsd.item(), abs=1e-2)
    # and no other discriminator does better: a shifted logit has a higher loss
    assert discriminator_loss(logit(xr) + 0.5, logit(xf) + 0.5).item() > mc


def test_trained_discriminator_approaches_the_optimal_logit():
    """Training D alone on fixed data vs fixed generator samples reaches l*(x) = log p_data(x) - log p_g(x)
    (Prop. 1) where both have mass; tolerance 0.3 nats in the logit after 800 Adam steps."""
    torch.manual_seed(0)
    p_data, p_gen = _two_gaussians()
    g = torch.Generator().manual_seed(1)
    D = Discriminator2D(hidden=32, depth=2)
    opt = torch.optim.Adam(D.parameters(), lr=3e-3)
    for _ in range(800):
        loss = discriminator_loss(D(p_data.sample(256, generator=g)), D(p_gen.sample(256, generator=g)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.5, 0.3], [-0.5, 0.5], [0.2, -0.4]])
    want = p_data.log_prob(x) - p_gen.log_prob(x)
    with torch.no_grad():
        got = D(x)
    torch.testing.assert_close(got, want, atol=0.3, rtol=0)


def test_gan2d_reproducible_with_seed():
    """Same seed: same losses and weights after a few steps; another seed: other samples."""
    cfg = GANConfig(toy="two_gaussians", hidden=32, depth=2, seed=0)
    a, b = GAN2D(cfg), GAN2D(cfg)
    for _ in range(5):
        sa, sb = a.step(), b.step()
    assert sa == sb
    assert all(torch.equal(v, b.G.state_dict()[k]) for k, v in a.G.state_dict().items())
    c = GAN2D(GANConfig(toy="two_gaussians", hidden=32, depth=2, seed=1))
    assert not torch.equal(c.samples(8), a.samples(8))


def test_snapshots_for_the_widget():
    frames = train_with_snapshots(GANConfig(hidden=16, depth=1, batch_size=64), steps=20, every=10, n_grid=12,
                                  n_samples=32)
    assert [f["step"] for f in frames] == [0, 10, 20]
    assert frames[1]["heatmap"].shape == (12, 12) and frames[1]["samples"].shape == (32, 2)
    h = frames[-1]["heatmap"]
    assert ((h > 0) & (h < 1)).all() and math.isfinite(frames[-1]["d_loss"])


def test_grid_layout_and_config_errors():
    pts = grid(1.0, 3)
    assert pts.shape == (9, 2)
    torch.testing.assert_close(pts[1], torch.tensor([0.0, -1.0]))  # x varies fastest
    torch.testing.assert_close(pts[3], torch.tensor([-1.0, 0.0]))
    with pytest.raises(ConfigError):
        GANConfig(d_steps=0)
    with pytest.raises(ConfigError):
        GAN2D(GANConfig(hidden=8, depth=1)).samples(5000)
