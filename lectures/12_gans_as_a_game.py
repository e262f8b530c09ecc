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
# # 12 · GANs as a game
#
# The score-based models of the first lectures learn a density's gradient with a regression loss. A generative
# adversarial network (Goodfellow et al. 2014) learns to sample without ever writing down a density or its
# score: a **generator** $G$ maps noise $z \sim \mathcal N(0, I)$ to points $G(z)$, and a **discriminator** $D$
# is trained to tell those points from data. The two play a zero-sum game over the value function
# (Goodfellow et al. 2014, eq. (1))
#
# $$ \min_G \max_D\; V(D, G) = \mathbb E_{x \sim p_{\text{data}}}[\log D(x)] + \mathbb E_{z}[\log(1 - D(G(z)))], $$
#
# where $D(x) \in (0, 1)$ is the probability that $x$ is real. We meet this game here, on points in the plane,
# because lecture 14 applies it to *behaviour*: GAIL (Ho & Ermon 2016) trains a discriminator between the
# state-action pairs of an expert and of a policy, and rewards the policy for fooling it.
#
# **The discriminator's best response.** For a fixed generator with density $p_g$, $V$ is maximised pointwise:
# $a \log D + b \log(1 - D)$ peaks at $D = a / (a + b)$, so (Prop. 1)
#
# $$ D^*(x) = \frac{p_{\text{data}}(x)}{p_{\text{data}}(x) + p_g(x)}, \qquad
#    \operatorname{logit} D^*(x) = \log p_{\text{data}}(x) - \log p_g(x). $$
#
# Plugging it back in (Thm. 1): $V(D^*, G) = -\log 4 + 2\,\mathrm{JSD}(p_{\text{data}} \,\|\, p_g)$, so the
# generator, facing the best discriminator, minimises the Jensen-Shannon divergence, which is zero exactly
# when $p_g = p_{\text{data}}$. There $D^* = 1/2$ everywhere and $V = -\log 4$.

# %% [markdown]
# ## The losses
#
# In code both players minimise. The discriminator minimises $-V$, a binary cross-entropy with label 1 for data
# and 0 for samples; the generator would minimise $\mathbb E_z[\log(1 - D(G(z)))]$, but early in training $D$
# rejects its samples with confidence and that loss is flat. Goodfellow et al. (Section 3) suggest the
# **non-saturating** loss $-\mathbb E_z[\log D(G(z))]$ instead: same fixed point, strong gradients where $D$
# wins. Both are written with logits $\ell$ ($D = \sigma(\ell)$) for numerical stability:
# $-\log \sigma(\ell) = \operatorname{softplus}(-\ell)$ and $-\log(1 - \sigma(\ell)) = \operatorname{softplus}(\ell)$.

# %%
import inspect
import math

import torch

from dlcourse.rl import gan2d

print(inspect.getsource(gan2d.discriminator_loss))
print(inspect.getsource(gan2d.generator_loss))

# %% [markdown]
# Two facts from above, checked: at $D = 1/2$ the discriminator's loss is $\log 4$, and where $D$ is confident
# that a sample is fake ($\ell = -6$) the minimax loss has almost no gradient while the non-saturating one does.

# %%
zero = torch.zeros(4)
print(f"discriminator loss at D = 1/2: {gan2d.discriminator_loss(zero, zero).item():.4f}  (log 4 = {math.log(4):.4f})")
logit = torch.tensor([-6.0], requires_grad=True)
for ns in (False, True):
    (grad,) = torch.autograd.grad(gan2d.generator_loss(logit, non_saturating=ns), logit)
    print(f"{'non-saturating' if ns else 'minimax':>14s} generator loss: d/dlogit at logit -6 = {grad.item():+.4f}")

# %% [markdown]
# ## The optimal discriminator, exactly
#
# Take the data to be eight Gaussians on a circle and, before any training, let the generator's output be a
# standard Gaussian. Both densities are known, so we can draw $D^*$ over the plane: it is near 1 on the data's
# modes, near 0 where only the generator puts mass, and $1/2$ where the two densities are equal.

# %%
import matplotlib.pyplot as plt

from dlcourse.data.toy2d import GaussianMixture, eight_gaussians
from dlcourse.viz.player import hall_style

hall_style()  # fonts a lecture hall can read: 12 pt ticks, 14 pt titles

p_data = eight_gaussians()
p_g = GaussianMixture([1.0], [[0.0, 0.0]], 1.0)
lim, n = 3.0, 61
pts = gan2d.grid(lim, n)  # (n*n, 2), y varies slowest
d_star = torch.sigmoid(p_data.log_prob(pts) - p_g.log_prob(pts)).reshape(n, n)  # (n, n)
print(f"D* at the origin {d_star[n // 2, n // 2]:.3f}, at the mode (2, 0) {d_star[n // 2, 50]:.3f}")

fig, ax = plt.subplots(figsize=(5.4, 4.4), layout="constrained")
im = ax.imshow(d_star, origin="lower", extent=(-lim, lim, -lim, lim), cmap="RdBu", vmin=0, vmax=1)
ax.contour(d_star, levels=[0.5], extent=(-lim, lim, -lim, lim), colors="k", linewidths=0.8)
fig.colorbar(im, ax=ax, shrink=0.9, label="D*(x) = P[real]")
ax.set_title("optimal D against N(0, I)")
plt.show()

# %% [markdown]
# ## Playing the game
#
# Now both players learn. `GAN2D` holds a small generator and discriminator (two hidden layers of 64 units),
# their Adam optimisers and a stream of data; each `step` is one discriminator update followed by one generator
# update (Algorithm 1 with $k = 1$). `train_with_snapshots` keeps, every 100 steps, the discriminator's heat map
# and the generator's samples from a fixed set of latent codes, so successive frames are comparable.

# %% tags=["nbval-ignore-output"]
cfg = gan2d.GANConfig(toy="eight_gaussians", hidden=64, depth=2, lr=1e-3, batch_size=256, seed=0)
frames = gan2d.train_with_snapshots(cfg, steps=1500, every=100, lim=lim, n_grid=64, n_samples=512)
for f in frames[1::2]:
    print(f"step {f['step']:4d}: D loss {f['d_loss']:.3f}  G loss {f['g_loss']:.3f}")
print(f"log 4 = {math.log(4):.3f}: the discriminator's loss when it can no longer tell")

# %% [markdown]
# Step through training. The colour is $D(x)$, the probability the discriminator gives to "real"; grey dots are
# data, red dots the generator's samples. Watch the discriminator paint the data's modes blue and the
# generator's mass red, and the generator's samples flow toward the blue.

# %% tags=["nbval-ignore-output"]
from dlcourse.viz import FramePlayer

real = p_data.sample(512, generator=torch.Generator().manual_seed(1))  # (512, 2)


def gan_frame(f):
    fig, ax = plt.subplots(figsize=(5.4, 4.4), layout="constrained")
    im = ax.imshow(f["heatmap"], origin="lower", extent=(-lim, lim, -lim, lim), cmap="RdBu", vmin=0, vmax=1)
    ax.scatter(real[:, 0], real[:, 1], s=3, color="0.4", label="data")
    ax.scatter(f["samples"][:, 0], f["samples"][:, 1], s=3, color="tab:red", label="generator")
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_title(f"step {f['step']}")
    ax.legend(loc="lower left", markerscale=3, framealpha=0.9)
    fig.colorbar(im, ax=ax, shrink=0.9, label="D(x) = P[real]")
    plt.close(fig)
    return fig


labels = [f"step {f['step']:4d}  D loss {f['d_loss']:.2f}  G loss {f['g_loss']:.2f}" for f in frames]
FramePlayer([gan_frame(f) for f in frames], labels=labels, interval_ms=250).show(-1)

# %% [markdown]
# At the end the heat map is close to a flat $1/2$ (white) where the data live: the discriminator has lost the
# ability to tell, and its loss hovers near $\log 4$. Did the generator find every mode? Count its samples near
# each of the eight centres:

# %% tags=["nbval-ignore-output"]
x = frames[-1]["samples"]  # (512, 2)
dist, mode = torch.cdist(x, p_data.means).min(dim=1)
counts = torch.bincount(mode[dist < 0.6], minlength=8)
print(f"samples within 0.6 of each mode: {counts.tolist()} ({(dist < 0.6).float().mean():.0%} of all)")

# %% [markdown]
# ## From points to behaviour
#
# GAIL keeps the game and changes what is generated. The "generator" is a policy $\pi$ acting in an
# environment, its "samples" are the state-action pairs $(s, a)$ it visits, and the data are an expert's pairs.
# The discriminator is trained exactly as here, and the policy, which cannot backpropagate through the
# environment, is trained by reinforcement learning with the reward $-\log D(s, a)$ (with $D$ the probability
# of "policy"). `dlcourse.rl.gail` derives that reward's sign; `dlcourse train gail` runs it on CartPole.
#
# ## A question to think about
#
# Rerun the training with `non_saturating=False` in `GANConfig`, and then with `d_steps=5`. What changes in the
# first few hundred steps, and why? Look at the gradients printed above: what does the minimax generator learn
# when the discriminator wins early? What would the same problem look like for a policy whose reward is
# computed from a discriminator that has become too good?
