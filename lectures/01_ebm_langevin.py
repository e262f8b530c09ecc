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
# # 01 · Energy-based models and Langevin dynamics
#
# *Prerequisites: [00 Welcome](00_welcome.ipynb); the chain rule and the normal distribution.*
#
# A generative model must give us samples, and we usually want it to say how likely a point is. The most flexible
# way to write down a density is to pick any function $E_\theta(x)$, an **energy**, and declare
#
# $$ p_\theta(x) = \frac{e^{-E_\theta(x)}}{Z_\theta}, \qquad Z_\theta = \int e^{-E_\theta(x)}\, dx . $$
#
# Low energy means high probability. Any neural network with a scalar output is an energy, which is the appeal
# of **energy-based models** (EBMs). The price is $Z_\theta$: an integral over the whole space, which we cannot
# compute in more than a few dimensions. Without it we cannot evaluate $p_\theta(x)$, and it is not obvious how
# to sample from $p_\theta$ either.
#
# This lecture shows that one quantity sidesteps $Z$ entirely, the **score**
#
# $$ s(x) = \nabla_x \log p_\theta(x) = -\nabla_x E_\theta(x) - \underbrace{\nabla_x \log Z_\theta}_{=\,0}, $$
#
# and that the score is all a sampler needs.

# %% [markdown]
# ## An energy on the plane
#
# Our example is a ring of radius 2 whose right side is more probable than its left:
#
# $$ E(x) = \frac{(r - 2)^2}{2 \cdot 0.3^2} - \cos\theta, \qquad x = (r\cos\theta,\ r\sin\theta). $$
#
# The energy is three lines of code, and its score is one call to autograd. Neither mentions $Z$.

# %%
import math

import torch


def energy(x):
    """E(x) for x (B, 2) -> (B,): a ring of radius 2 and width 0.3, tilted towards theta = 0."""
    r = x.norm(dim=-1)  # (B,)
    return (r - 2.0) ** 2 / (2 * 0.3**2) - x[:, 0] / r


def score(x):
    """s(x) = -grad E(x), by autograd; (B, 2) -> (B, 2)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        return -torch.autograd.grad(energy(x).sum(), x)[0]


print(score(torch.tensor([[2.0, 0.0], [2.5, 0.0], [0.0, -1.5]])).round(decimals=3) + 0.0)  # + 0.0: no -0.0

# %% [markdown]
# At $(2, 0)$, on the ring, the score is zero; outside the ring it points back in; at $(0, -1.5)$, inside the
# ring, it points outwards and towards the right.
#
# In two dimensions we *can* compute $Z$ by brute force on a grid, and for this energy there is also a closed
# form: the radial and angular parts separate, $\int_0^{2\pi} e^{\cos\theta} d\theta = 2\pi I_0(1)$ (a Bessel
# function), and the radial integral is that of a Gaussian of width $0.3$ around $r = 2$ times $r$, which is
# $2 \cdot 0.3 \sqrt{2\pi}$ up to a tail below $10^{-10}$.

# %%
from scipy.special import i0

n_grid = 801
u = torch.linspace(-4.0, 4.0, n_grid, dtype=torch.float64)
gx, gy = torch.meshgrid(u, u, indexing="xy")
grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=-1)  # (G, 2)
cell = (u[1] - u[0]) ** 2
Z_grid = (torch.exp(-energy(grid)).sum() * cell).item()
Z_exact = 2 * math.pi * i0(1.0) * 2.0 * 0.3 * math.sqrt(2 * math.pi)
print(f"Z on a {n_grid}x{n_grid} grid: {Z_grid:.5f}")
print(f"Z in closed form:       {Z_exact:.5f}")
for dim in (2, 64, 784):
    print(f"a grid of 100 points per axis in {dim:3d} dimensions has 10^{2 * dim} points")

# %% [markdown]
# The grid needed $6.4 \times 10^5$ evaluations of $E$ in two dimensions. For an $8 \times 8$ image it would
# need $10^{128}$: the normalising constant is out of reach, and so is any method that needs it.

# %% [markdown]
# ## Langevin dynamics: sampling with the score
#
# The **Langevin diffusion** $dX_t = \nabla_x \log p(X_t)\, dt + \sqrt 2\, dW_t$ has $p$ as its stationary
# distribution: the drift pushes probability uphill, the noise spreads it out, and the two balance exactly when
# the law of $X_t$ is $p$ (its Fokker–Planck equation $\partial_t q = \nabla\cdot(q \nabla \log q - q\nabla\log p)$
# vanishes at $q = p$). Discretising it with time step $\varepsilon / 2$ gives the **unadjusted Langevin
# algorithm**:
#
# $$ x_{t+1} = x_t + \frac{\varepsilon}{2} \nabla_x \log p(x_t) + \sqrt{\varepsilon}\, z_t, \qquad z_t \sim \mathcal N(0, I). $$
#
# **The step convention.** This is how Song & Ermon (2019) write it (eq. 2 and Algorithm 1). Their released
# code, and the NCSNv2 paper, write $x + \alpha\, \nabla\log p + \sqrt{2\alpha}\, z$: the same chain with
# $\alpha = \varepsilon / 2$. A step size copied from one convention into the other is off by a factor of 2.
# `dlcourse` uses the paper's convention unless told `convention="code"`:

# %%
from dlcourse.score import langevin_step

x, s, z = torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0]]), torch.tensor([[0.5, 0.0]])
paper = langevin_step(x, s, 0.04, z)  # x + 0.02 s + 0.2 z
code = langevin_step(x, s, 0.02, z, convention="code")  # x + 0.02 s + 0.2 z: the same step, alpha = eps / 2
print(paper, code)

# %% [markdown]
# The whole sampler is a loop over that step. Here it is, written out, run on 2000 chains that start from a
# standard normal, far from the ring:

# %%
def langevin(score, x, eps, n_steps, generator=None):
    """Unadjusted Langevin algorithm (Song & Ermon 2019, eq. 2): x (N, D) -> x after n_steps."""
    for _ in range(n_steps):
        z = torch.randn(x.shape, generator=generator)  # (N, D)
        x = x + 0.5 * eps * score(x) + math.sqrt(eps) * z
    return x


gen = torch.Generator().manual_seed(0)
samples = langevin(score, torch.randn(2000, 2, generator=gen), eps=0.05, n_steps=2000, generator=gen)

# %% [markdown]
# Did it work? The angle $\theta$ of $x$ has the von Mises density $e^{\cos\theta} / (2\pi I_0(1))$, exactly,
# because the energy separates. On the left, the samples over $e^{-E}$; on the right, the histogram of their
# angles against that density.

# %% tags=["nbval-ignore-output"]
import matplotlib.pyplot as plt
import numpy as np

from dlcourse.viz.player import hall_style

hall_style()  # fonts a lecture hall can read: 12 pt ticks, 14 pt titles
theta = torch.atan2(samples[:, 1], samples[:, 0]).numpy()
fig, axes = plt.subplots(1, 2, figsize=(8.8, 4.0), layout="constrained")
density = torch.exp(-energy(grid)).reshape(n_grid, n_grid)[::4, ::4]  # (201, 201): enough for a picture
axes[0].contourf(u[::4], u[::4], density, levels=8, cmap="Blues")
axes[0].scatter(samples[:1000, 0], samples[:1000, 1], s=1, color="tab:red")
axes[0].set_aspect("equal")
axes[0].set_title("Langevin samples over $e^{-E(x)}$")
angles = np.linspace(-math.pi, math.pi, 200)
axes[1].hist(theta, bins=40, density=True, color="tab:red", alpha=0.6, label="Langevin, 2000 steps")
axes[1].plot(angles, np.exp(np.cos(angles)) / (2 * math.pi * i0(1.0)), color="k", label="exact")
axes[1].set_xlabel(r"angle $\theta$")
axes[1].legend()
plt.show()
right = (samples[:, 0] > 0).float().mean().item()
print(f"fraction of samples with x1 > 0: {right:.3f}")

# %% [markdown]
# The exact fraction of mass on the right half, $\int_{-\pi/2}^{\pi/2} e^{\cos\theta} d\theta / (2\pi I_0(1))$,
# takes one line of numerical integration:

# %%
phi = torch.linspace(-math.pi / 2, math.pi / 2, 20001, dtype=torch.float64)
print(f"exact fraction with x1 > 0: {torch.trapezoid(torch.exp(torch.cos(phi)), phi).item() / (2 * math.pi * i0(1.0)):.3f}")

# %% [markdown]
# ## The price of a finite step
#
# The discrete chain is not the diffusion: it samples a slightly wrong distribution, more wrong as $\varepsilon$
# grows, and for too large a step it diverges. For a Gaussian target $\mathcal N(0, s^2)$ everything is explicit:
# the step is $x_{t+1} = (1 - \tfrac{\varepsilon}{2 s^2})\, x_t + \sqrt\varepsilon\, z_t$, a linear recursion with
# stationary variance
#
# $$ v(\varepsilon) = \frac{\varepsilon}{1 - (1 - \varepsilon / 2s^2)^2} = \frac{s^2}{1 - \varepsilon / 4s^2}, $$
#
# finite only for $\varepsilon < 4 s^2$. (A Metropolis–Hastings accept/reject step, MALA, removes the bias at
# the cost of rejected moves; score-based models do without it and keep steps small.)

# %%
from dlcourse.score import stationary_variance_gaussian

for eps in (0.01, 0.1, 0.5, 1.0, 2.0, 3.9):
    print(f"eps = {eps:4.2f}: stationary variance {stationary_variance_gaussian(eps, 1.0):7.3f} (target 1)")

# %% [markdown]
# and a simulation of 20 000 chains agrees (to within its standard error, $v\sqrt{2/N} \approx 0.01 v$):

# %% tags=["nbval-ignore-output"]
from dlcourse.score import langevin_dynamics

for eps in (0.1, 1.0, 3.9):
    x = langevin_dynamics(lambda y: -y, torch.zeros(20_000, 1), eps, 400, generator=gen)
    print(f"eps = {eps:3.1f}: simulated variance {x.var().item():6.3f}, formula {stationary_variance_gaussian(eps, 1.0):6.3f}")

# %% [markdown]
# Our ring is $0.3$ wide, so radially it behaves like a Gaussian with $s^2 = 0.09$: steps above $4 s^2 = 0.36$
# blow up, and steps much smaller than that crawl.

# %% [markdown]
# ## Play with it
#
# The player below runs 300 chains on the ring for each combination of the controls and shows every fourth
# step or so (everything is computed when the cell runs, so the buttons respond at once). Try:
#
# - step $\varepsilon = 0.002$: after 100 steps the chains are still inside the ring; after 400 they have reached
#   it, but are spread evenly around it: the right side is not yet denser than the left.
# - $\varepsilon = 0.05$: the ring fills within about a hundred steps, and after 400 the right side holds most of
#   the chains, as it should (78% of the mass).
# - $\varepsilon = 0.4$, just above $4s^2 = 0.36$: every step overshoots the ring by more than it corrects, the
#   chains scatter over the whole picture (some leave it) and never settle.
#
# (The noise and annealing controls matter for the next lectures; this energy has only $\sigma = 0$.)

# %% tags=["nbval-ignore-output"]
from dlcourse.viz.langevin import LangevinPlayer

ring = LangevinPlayer(score_fn=lambda x, sigma: score(x), log_prob=lambda x, sigma: -energy(x),
                      step_sizes=(0.002, 0.05, 0.4), n_steps=(100, 400), sigmas=(0.0,), annealed=(False,),
                      init=(-1.0, 1.0), extent=(-4.0, 4.0, -4.0, 4.0), n_chains=300, n_frames=25)
ring.select(step_size=0.05).player.show(-1)
ring

# %% [markdown]
# ## Where Langevin struggles
#
# Langevin dynamics only ever uses *local* information: the score at the current point. Between two modes
# separated by a region of very low density, the score points back towards whichever mode a chain is in, and
# crossing takes exponentially long in the height of the barrier. Lecture 00 showed the consequence on the mixture
# $0.8\,\mathcal N((5,5), I) + 0.2\,\mathcal N((-5,-5), I)$: the chains found both modes but kept the 50/50 split
# they started with. We return to this in [lecture 03](03_ncsn.ipynb), where noise fixes it.
#
# ## A question to think about
#
# We sampled an EBM knowing only $\nabla_x E$. To *train* an EBM by maximum likelihood we would need
# $\nabla_\theta \log Z_\theta = -\mathbb E_{p_\theta}[\nabla_\theta E_\theta(x)]$, an expectation under the
# model itself: one Langevin run per gradient step. Why is that expensive and fragile (think of the step size and
# the mixing time you saw above)? [Lecture 02](02_score_matching.ipynb) avoids it by fitting the score directly.
