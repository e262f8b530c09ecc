# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python (dlcourse)
#     language: python
#     name: dlcourse
# ---

# %%
from dlcourse.utils import setup_notebook

device = setup_notebook(seed=0)

# %% [markdown]
# # 02 · Score matching: learning the score from data
#
# *Prerequisites: [01 Energy-based models and Langevin dynamics](01_ebm_langevin.ipynb).*
#
# Lecture 01 sampled from a density knowing only its score $\nabla_x \log p$. Now we have only **data**,
# $x_1, \dots, x_n \sim p$, and want a network $s_\theta(x) \approx \nabla_x \log p(x)$. The natural objective is the
# **Fisher divergence** between the model's score and the data's:
#
# $$ J_{\text{ESM}}(\theta) = \tfrac12\, \mathbb E_{p}\, \big\| s_\theta(x) - \nabla_x \log p(x) \big\|^2 . $$
#
# This *explicit* score matching needs $\nabla_x \log p$, which is what we do not know. This lecture shows three
# ways around it, each turning $J_{\text{ESM}}$ into something computable from samples alone:
#
# | objective | per-sample loss | cost | paper |
# |---|---|---|---|
# | implicit (ISM) | $\operatorname{tr}\nabla_x s_\theta(x) + \tfrac12 \lVert s_\theta(x)\rVert^2$ | $D$ backward passes | Hyvärinen 2005, eq. 4 |
# | sliced (SSM) | $v^\top \nabla_x s_\theta(x)\, v + \tfrac12 (v^\top s_\theta(x))^2$, $v \sim \mathcal N(0, I)$ | 1 backward pass | Song et al. 2019, eq. 7 |
# | denoising (DSM) | $\tfrac12 \lVert s_\theta(\tilde x) + (\tilde x - x)/\sigma^2 \rVert^2$, $\tilde x = x + \sigma z$ | none | Vincent 2011, eq. 11 |

# %% [markdown]
# ## Implicit score matching
#
# Expand the square: $J_{\text{ESM}} = \mathbb E\,[\tfrac12\lVert s_\theta\rVert^2 - s_\theta^\top \nabla\log p] + C$,
# where $C = \tfrac12 \mathbb E \lVert \nabla \log p\rVert^2$ does not depend on $\theta$. The cross term is the
# one that needs $p$, and integration by parts removes it (in one dimension, assuming $p\, s_\theta \to 0$ at
# infinity):
#
# $$ \mathbb E_p[s_\theta\, (\log p)'] = \int s_\theta\, p' \,dx = -\int s_\theta'\, p\, dx = -\mathbb E_p[s_\theta'] . $$
#
# So $J_{\text{ESM}}(\theta) = J_{\text{ISM}}(\theta) + C$ with $J_{\text{ISM}} = \mathbb E\,[\operatorname{tr}\nabla_x s_\theta + \tfrac12\lVert s_\theta\rVert^2]$
# (Hyvärinen 2005, Theorem 1). Same minimiser, no $p$.
#
# A check we can do by hand: data $\mathcal N(0, s^2 I)$ in $D$ dimensions and the linear model $s_a(x) = -a x$.
# Then $J_{\text{ESM}}(a) = \tfrac12 D s^2 (a - 1/s^2)^2$ and $J_{\text{ISM}}(a) = -aD + \tfrac12 a^2 D s^2$. Their
# difference is $\tfrac12 D / s^2$ whatever $a$ is, and both are smallest at the true $a = 1/s^2$:

# %%
D, s2 = 2, 4.0
for a in (0.0, 0.125, 0.25, 0.5, 1.0):
    esm = 0.5 * D * s2 * (a - 1 / s2) ** 2
    ism = -a * D + 0.5 * a**2 * D * s2
    print(f"a = {a:5.3f}: J_ESM = {esm:6.3f}, J_ISM = {ism:6.3f}, difference {esm - ism:5.3f}")

# %% [markdown]
# The package's `exact_sm_loss` computes $J_{\text{ISM}}$ for any network by autograd (one backward pass per
# dimension for the trace). On samples, for the same linear models, it agrees with the formula up to Monte Carlo
# error:

# %% tags=["nbval-ignore-output"]
import torch

from dlcourse.score import exact_sm_loss

gen = torch.Generator().manual_seed(0)
x = 2.0 * torch.randn(100_000, D, generator=gen, dtype=torch.float64)  # N(0, 4 I)
for a in (0.125, 0.25, 0.5):
    print(f"a = {a:5.3f}: exact_sm_loss = {exact_sm_loss(lambda y: -a * y, x).item():6.3f}, "
          f"formula {-a * D + 0.5 * a**2 * D * s2:6.3f}")

# %% [markdown]
# ## Sliced score matching
#
# The trace $\operatorname{tr}\nabla_x s_\theta$ costs $D$ backward passes: 3072 for a CIFAR-10 image. Sliced score
# matching projects onto random directions: for any $v$ with $\mathbb E[v v^\top] = I$,
# $\mathbb E_v[v^\top A v] = \operatorname{tr}(A)$, and $v^\top \nabla_x s_\theta\, v = v^\top \nabla_x (v^\top s_\theta)$ is one
# backward pass. (Song, Garg, Shi & Ermon 2019.)
#
# ## Denoising score matching
#
# Vincent (2011) takes another route: add noise, $\tilde x = x + \sigma z$, and regress onto the score of the
# *noising kernel*, which we know in closed form, $\nabla_{\tilde x}\log q(\tilde x\mid x) = -(\tilde x - x)/\sigma^2 = -z/\sigma$:
#
# $$ J_{\text{DSM}}(\theta) = \tfrac12\, \mathbb E_{x, z}\, \big\| s_\theta(\tilde x) + z/\sigma \big\|^2 . $$
#
# It equals $\tfrac12 \mathbb E \lVert s_\theta(\tilde x) - \nabla \log q_\sigma(\tilde x)\rVert^2$ plus a constant, where
# $q_\sigma = p * \mathcal N(0, \sigma^2 I)$ is the *blurred* data density. So DSM learns the score of $q_\sigma$, not
# of $p$; small $\sigma$ makes them close, and lecture 03 turns the blur into a feature. DSM needs no derivative of
# the network at all, which is why every diffusion model uses it.
#
# For Gaussian data $\mathcal N(0, s^2 I)$ the blurred density is $\mathcal N(0, (s^2+\sigma^2) I)$, and the smallest
# value of the σ²-weighted DSM loss (the NCSN weighting, $\sigma^2 J_{\text{DSM}}$) is
# $\tfrac12 D s^2 / (s^2 + \sigma^2)$: not zero, because a noisy $\tilde x$ does not determine the noise $z$.
# (`dsm_optimal_loss_gaussian` derives it in its docstring.)

# %%
from dlcourse.score import dsm_optimal_loss_gaussian

for sigma in (0.1, 1.0, 2.0, 10.0):
    print(f"sigma = {sigma:4.1f}: minimum of sigma^2 J_DSM = {dsm_optimal_loss_gaussian(2.0, sigma, D).item():.4f}")

# %% [markdown]
# and the loss of the exact blurred score, estimated on samples, lands on those values:

# %% tags=["nbval-ignore-output"]
from dlcourse.score import dsm_loss

for sigma in (0.1, 1.0, 2.0, 10.0):
    optimal = lambda y, sig: -y / (s2 + sig.reshape(-1, 1) ** 2)  # noqa: E731  score of N(0, (s^2 + sigma^2) I)
    estimate = dsm_loss(optimal, x, sigma, noise=torch.randn(x.shape, generator=gen, dtype=x.dtype))
    print(f"sigma = {sigma:4.1f}: Monte Carlo {estimate.item():.4f}")

# %% [markdown]
# ## Training a score network three ways
#
# Our data is the mixture $p = 0.8\,\mathcal N((5,5), I) + 0.2\,\mathcal N((-5,-5), I)$ from lecture 00, whose score
# `dlcourse.data.toy2d` knows exactly, also for the blurred $q_\sigma$. The network is the smallest that works: two
# hidden layers of 64 units. We train it for 500 Adam steps with each objective and keep, as a common yardstick,
# the Fisher divergence to the truth on held-out data: $\tfrac12\mathbb E_p\lVert s_\theta - \nabla\log p\rVert^2$
# for ISM and SSM, and the same against $\nabla \log q_\sigma$ for DSM ($\sigma = 0.5$).

# %%
import math

from torch import nn

from dlcourse.data.toy2d import two_gaussians
from dlcourse.score import sliced_sm_loss

mix = two_gaussians()
held_out = mix.sample(2000, generator=torch.Generator().manual_seed(1))  # (2000, 2)
SIGMA = 0.5


def make_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 64), nn.SiLU(), nn.Linear(64, 64), nn.SiLU(), nn.Linear(64, 2))


def objective(name, net, x, generator):
    """The training loss of one batch x (B, 2)."""
    if name == "implicit (ISM)":
        return exact_sm_loss(net, x)
    if name == "sliced (SSM)":
        return sliced_sm_loss(net, x, generator=generator)
    return dsm_loss(lambda y, sigma: net(y), x, SIGMA, weighted=False)  # DSM: learns the score of q_0.5


def fisher_divergence(name, net):
    target = mix.score(held_out, sigma=SIGMA if name.startswith("denoising") else 0.0)
    with torch.no_grad():
        return 0.5 * (net(held_out) - target).square().sum(-1).mean().item()


def train(name, n_steps=500, snapshot_every=None):
    net, g = make_net(), torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    history, snapshots = [], []
    for step in range(n_steps + 1):
        if snapshot_every and step % snapshot_every == 0:
            snapshots.append((step, {k: v.clone() for k, v in net.state_dict().items()}))
        if step % 25 == 0:
            history.append((step, fisher_divergence(name, net)))
        if step == n_steps:
            break
        loss = objective(name, net, mix.sample(256, generator=g), g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net, history, snapshots


runs = {}
for name in ("implicit (ISM)", "sliced (SSM)", "denoising (DSM)"):
    runs[name] = train(name, snapshot_every=20 if name.startswith("denoising") else None)

# %% tags=["nbval-ignore-output"]
import matplotlib.pyplot as plt

from dlcourse.viz.player import TICK_PT, TITLE_PT, hall_style

hall_style()  # fonts a lecture hall can read: 12 pt ticks, 14 pt titles
fig, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
for name, (_, history, _) in runs.items():
    steps, fd = zip(*history)
    ax.semilogy(steps, fd, label=name)
ax.set_xlabel("training step")
ax.set_ylabel("Fisher divergence to the truth")
ax.legend()
plt.show()
for name, (net, history, _) in runs.items():
    print(f"{name:16s}: Fisher divergence {history[0][1]:.3f} at step 0, {history[-1][1]:.3f} at step 500")

# %% [markdown]
# All three drive the divergence down by more than an order of magnitude, without ever seeing the true score.
# The sliced loss is the noisiest (one random direction per sample), the implicit one the most accurate per
# step but the most expensive in high dimension, and DSM is the cheapest per step.

# %% [markdown]
# ## Where the learned score is wrong
#
# The yardstick above averages over the *data*. Off the data, nothing in the loss constrains the network. Below,
# the DSM network's field (left) against the exact score of $q_{0.5}$ (middle), and the size of the error
# $\lVert s_\theta - \nabla\log q_\sigma\rVert$ (right, log scale; the dashed circles enclose 99% of each mode's mass).

# %% tags=["nbval-ignore-output"]
import numpy as np

from dlcourse.viz import evaluate_on_grid

dsm_net = runs["denoising (DSM)"][0]
extent = (-10.0, 10.0, -10.0, 10.0)
exact = lambda y: mix.score(y, sigma=SIGMA)  # noqa: E731


def arrows(ax, fn, color, n=17):
    """Unit arrows along the field fn on an n x n grid (the direction is what matters)."""
    xs, ys, field = evaluate_on_grid(fn, extent, n)  # (n, n, 2)
    unit = field / np.linalg.norm(field, axis=-1, keepdims=True).clip(min=1e-12)
    ax.quiver(xs, ys, unit[..., 0], unit[..., 1], color=color, angles="xy", scale_units="xy",
              scale=1.0 / (0.6 * 20.0 / n), width=0.005)


gx, gy, learned = evaluate_on_grid(dsm_net, extent, 120)  # (120, 120, 2)
_, _, truth = evaluate_on_grid(exact, extent, 120)
error = np.linalg.norm(learned - truth, axis=-1)  # (120, 120)
radius = math.sqrt(9.21 * (1 + SIGMA**2))  # the 99% radius of N(mu, (1 + sigma^2) I) in 2-D (chi2_2 quantile 9.21)
near_data = np.minimum(np.hypot(gx[None, :] - 5, gy[:, None] - 5), np.hypot(gx[None, :] + 5, gy[:, None] + 5)) < radius

fig, axes = plt.subplots(1, 3, figsize=(11.0, 4.0), layout="constrained")
arrows(axes[0], dsm_net, "tab:red")
axes[0].set_title("learned (DSM, 500 steps)")
arrows(axes[1], exact, "0.2")
axes[1].set_title(r"exact score of $q_{0.5}$")
im = axes[2].contourf(gx, gy, np.log10(error.clip(min=1e-2, max=10.0)), levels=np.linspace(-2, 1, 13), cmap="magma")
for centre in ((5, 5), (-5, -5)):
    axes[2].add_patch(plt.Circle(centre, radius, fill=False, color="white", linestyle="--", linewidth=0.8))
axes[2].set_title(r"$\log_{10}$ of the error")
fig.colorbar(im, ax=axes[2], shrink=0.8)
for ax in axes:
    ax.set_xlim(-10, 10)
    ax.set_ylim(-10, 10)
    ax.set_aspect("equal")
plt.show()
print(f"mean error inside the circles: {error[near_data].mean():.2f}; outside: {error[~near_data].mean():.2f}")

# %% [markdown]
# Where the data lives the learned field is right; across the empty diagonal band and in the corners it is
# whatever the network happened to extrapolate. A Langevin chain started at random spends its first steps
# exactly there.

# %% [markdown]
# ## Watch the field being learned
#
# Each frame is the DSM network's field after another 20 training steps (arrows, unit length: the direction is what
# matters), over the blurred density $q_{0.5}$; the caption gives the step and the Fisher divergence on held-out
# data.

# %% tags=["nbval-ignore-output"]
from matplotlib.figure import Figure

from dlcourse.viz import FramePlayer
from dlcourse.viz.langevin import palette_png

_, _, logq = evaluate_on_grid(lambda y: mix.log_prob(y, sigma=SIGMA), extent, 120)  # (120, 120)


def field_frame(state, step):
    net = make_net()
    net.load_state_dict(state)
    fig = Figure(figsize=(4.6, 4.6), dpi=80, layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(logq.clip(min=logq.max() - 12), origin="lower", extent=extent, cmap="Blues")
    arrows(ax, net, "tab:red")
    ax.set_xlim(-10, 10)
    ax.set_ylim(-10, 10)
    ax.set_title(f"DSM network after {step} steps", fontsize=TITLE_PT)
    ax.tick_params(labelsize=TICK_PT)
    return fig, fisher_divergence("denoising (DSM)", net)


frames, labels = [], []
for step, state in runs["denoising (DSM)"][2]:
    fig, fd = field_frame(state, step)
    frames.append(palette_png(fig, colors=64))  # a 64-colour PNG: a few times smaller than full colour
    labels.append(f"step {step:3d}  Fisher divergence {fd:.3f}")
field_player = FramePlayer(frames, labels=labels, interval_ms=200)
field_player.show(-1)

# %% [markdown]
# Press ▶. Within a hundred steps the arrows near both modes point inwards; the band between the modes and the
# corners settle last, and some never do.
#
# ## A question to think about
#
# DSM learns the score of $q_\sigma$, not of $p$. Small $\sigma$: $q_\sigma \approx p$, but the loss is the difference
# of two large quantities (the target $z/\sigma$ grows like $1/\sigma$) and very noisy. Large $\sigma$: a smooth,
# easy target, far from $p$, but *defined everywhere*, also between the modes. What if we learned the scores of
# many $q_\sigma$ at once, with a network told which $\sigma$ it is looking at, and sampled by walking from large
# $\sigma$ to small? That is [lecture 03](03_ncsn.ipynb).
