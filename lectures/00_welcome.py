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
# # 00 · Welcome: learn the score, then spend compute at sampling time
#
# This course is about one idea and four families of models built on it. The idea, which runs through the work
# of Stefano Ermon's group, is to model the **score** of the data, the gradient of its log-density,
#
# $$ s(x) = \nabla_x \log p(x), $$
#
# instead of the density itself. A density must integrate to one, which ties the hands of any network that
# represents it; a score need not, because the normalising constant $Z$ of $p = \tilde p / Z$ disappears when
# you differentiate $\log p = \log \tilde p - \log Z$. The score can be learned with a cheap loss (denoise a
# noisy copy of the data), and then you can spend as much compute as you like at sampling time, following the
# score from noise to data.
#
# | family | what you will build | papers |
# |---|---|---|
# | score matching, Langevin, NCSN | denoising score matching; (annealed) Langevin sampling with a noise-conditional score network | Hyvärinen 2005; Vincent 2011; Song & Ermon 2019, 2020 |
# | score SDEs | noise as a stochastic differential equation; reverse-time SDE, predictor-corrector, probability-flow ODE, exact likelihoods | Song et al. 2021 |
# | discrete diffusion for text | masking and uniform noise on tokens, the score entropy loss, samplers that refine every token in parallel, and an autoregressive baseline to race against | Austin et al. 2021; Lou, Meng & Ermon 2024; Sahoo et al. 2024 |
# | adversarial imitation | a GAN on 2-D toys, behavioural cloning, and GAIL: learn a policy by fooling a discriminator of expert behaviour | Goodfellow et al. 2014; Ho & Ermon 2016 |
#
# For text, the score becomes a ratio of probabilities $p(y)/p(x)$ between sequences that differ in one token,
# and the course ends with a question the field is still asking: is a diffusion language model, an *editor*
# that refines all tokens at once, faster than an autoregressive one, a *typewriter*, at the same quality?
# You will measure it. The [course map](../course/README.md) lists the lectures and assignments in order.

# %% [markdown]
# ## How to use these notebooks
#
# - **Run top to bottom** (*Run → Run All Cells*, or Shift-Enter cell by cell) with the kernel
#   **Python (dlcourse)**. Every notebook runs on a laptop CPU in a few minutes; anything heavier is trained
#   offline with `dlcourse train ...` and ships as a small checkpoint.
# - The outputs saved in each notebook are the reference: after running it yourself you should see the same
#   numbers. Widgets (sliders, players) need a running kernel; until then you see a still picture.
# - The first cell fixes the random seed and the number of threads so that printed results are reproducible,
#   and prints the device. The small demos run on the CPU whatever the device.
# - **Assignments** live in `assignments/`. You fill in the functions marked for you, run the notebook, and
#   before handing it in check your work from a terminal in the course folder:
#
#   ```
#   .venv/bin/dlcourse grade assignments/a0_sampling.ipynb
#   ```
#
#   (`.venv/bin/dlcourse` is the course environment's command; [grading.md](../course/grading.md) says more.)
#   The grader runs the public tests and tells you *what* is wrong: a shape, a sign, a factor of two.
#   Instructors grade with further hidden tests (`--hidden`).
# - Code you do not need to read lives in the `dlcourse` package and is imported; code you should read is
#   written out in the notebook, like the sampler below.

# %% [markdown]
# ## A first taste: Langevin dynamics with an exact score
#
# Suppose someone hands you the score of a distribution but not the distribution. **Langevin dynamics** turns
# the score into samples: start anywhere, and repeat
#
# $$ x \leftarrow x + \frac{\varepsilon}{2}\, \nabla_x \log p(x) + \sqrt{\varepsilon}\, z, \qquad z \sim \mathcal N(0, I). $$
#
# The drift climbs the log-density; the noise keeps the chain from collapsing onto the modes. As the step
# $\varepsilon \to 0$ and the number of steps $\to \infty$, the chain's distribution tends to $p$ (under mild
# conditions on $p$). This is the
# step of Song & Ermon (2019), Section 2.2; some texts write $\varepsilon\, \nabla_x \log p + \sqrt{2\varepsilon}\, z$,
# the same chain with the step renamed.
#
# Our target is the mixture of that paper's Figure 3, $p = 0.8\, \mathcal N((5,5), I) + 0.2\, \mathcal N((-5,-5), I)$,
# whose score `dlcourse.data.toy2d` computes exactly. At the origin, halfway between the modes, the score points
# to the heavier one:

# %%
import math

import torch

from dlcourse.data.toy2d import two_gaussians

p = two_gaussians()
points = torch.tensor([[0.0, 0.0], [5.0, 5.0], [-5.0, -5.0]])
for x, s in zip(points.tolist(), p.score(points).tolist()):
    s = [round(v, 3) + 0.0 for v in s]  # + 0.0 turns -0.0 into 0.0
    print(f"score at ({x[0]:+.0f}, {x[1]:+.0f}) = ({s[0]:+.3f}, {s[1]:+.3f})")


# %% [markdown]
# The sampler, written out. It takes the score as a function, so the same loop will later run on a learned score.

# %%
def langevin(score, x, eps, n_steps, generator=None):
    """Unadjusted Langevin dynamics, x <- x + (eps/2) score(x) + sqrt(eps) z (Song & Ermon 2019, Section 2.2).

    x: (N, 2) starting points. Returns the whole chain, (n_steps + 1, N, 2).
    """
    chain = [x]
    for _ in range(n_steps):
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)  # (N, 2)
        x = x + 0.5 * eps * score(x) + math.sqrt(eps) * z
        chain.append(x)
    return torch.stack(chain)


# %% [markdown]
# Start 500 chains uniformly on the square $[-8, 8]^2$ and run 200 steps of size $\varepsilon = 0.1$. Each frame
# below shows the particles over the log-density (blue) and the direction of the score (arrows); the caption
# counts the fraction of particles on the side of the heavier mode, which holds 80% of the mass.

# %% tags=["nbval-ignore-output"]
gen = torch.Generator().manual_seed(0)
n_chains, n_steps, eps = 500, 200, 0.1
x0 = 16.0 * torch.rand(n_chains, 2, generator=gen) - 8.0  # (N, 2), uniform on [-8, 8]^2
chain = langevin(p.score, x0, eps, n_steps, generator=gen)  # (T + 1, N, 2)
heavy = (chain.sum(-1) > 0).float().mean(-1)  # (T + 1,) fraction with x1 + x2 > 0
print(f"chain {tuple(chain.shape)}; fraction on the heavy side: start {heavy[0]:.2f}, end {heavy[-1]:.2f}")

# %% tags=["nbval-ignore-output"]
from dlcourse.viz import FramePlayer, scatter_frames
from dlcourse.viz.player import hall_style

hall_style()  # fonts a lecture hall can read: 12 pt ticks, 14 pt titles (for every figure from here on)
steps = range(0, n_steps + 1, 2)
labels = [f"step {t:3d} / {n_steps}, heavy side {heavy[t]:.2f}" for t in steps]
frames = scatter_frames(chain, density=p.log_prob, score=p.score, extent=(-9, 9, -9, 9), steps=steps, trail=4)
FramePlayer(frames, labels=labels, interval_ms=80)

# %% [markdown]
# Press ▶ (or drag the slider). The particles follow the arrows into the nearer mode within a few dozen steps,
# then jitter around it. Compare the end state with true samples from $p$:

# %% tags=["nbval-ignore-output"]
import matplotlib.pyplot as plt

exact = p.sample(n_chains, generator=gen)  # (N, 2)
fig, axes = plt.subplots(1, 2, figsize=(8.4, 4.4), sharex=True, sharey=True, layout="constrained")
for ax, xs, title in [(axes[0], exact, "samples from p"), (axes[1], chain[-1], f"Langevin, {n_steps} steps")]:
    share = (xs.sum(-1) > 0).float().mean()
    ax.scatter(xs[:, 0], xs[:, 1], s=4, color="tab:blue" if ax is axes[0] else "tab:red")
    ax.set_title(f"{title}:\n{share:.0%} upper right")
    ax.set_xlim(-9, 9)
    ax.set_ylim(-9, 9)
    ax.set_aspect("equal")
plt.show()

# %% [markdown]
# The chains found both modes but not their weights: about as many particles sit in the light mode as in the
# heavy one. Where did the information about the weights go? It is in the score, but only *between* the modes.
# Integrating the score along the diagonal from one mode to the other recovers the log-ratio of the densities
# there, $\log p(5,5) - \log p(-5,-5) = \log(0.8 / 0.2) = \log 4$:

# %%
a, b = torch.tensor([-5.0, -5.0]), torch.tensor([5.0, 5.0])
u = torch.linspace(0.0, 1.0, 2001).unsqueeze(-1)  # (M, 1)
path = a + u * (b - a)  # (M, 2), the segment from a to b
line_integral = torch.trapezoid((p.score(path) * (b - a)).sum(-1), dx=1.0 / 2000)
print(f"integral of the score from (-5,-5) to (5,5): {line_integral:.4f}")
print(f"log p(5,5) - log p(-5,-5):                  {(p.log_prob(b[None]) - p.log_prob(a[None])).item():.4f}")
print(f"log 4:                                      {math.log(4):.4f}")

# %% [markdown]
# ## A question to think about
#
# The score is exact here, so the chains have everything they need in principle. Why do they still end up with
# roughly the split they *started* with instead of 80/20? Think about how much probability lies on the path
# between the modes, how long a chain would have to wait to cross it, and what that means for a *learned*
# score, which is trained on data that never visits that region. What would you change: the starting points,
# the step size, the number of steps, or the distribution you follow?
#
# The score-matching lectures answer with noise: perturb the data at several scales, learn the score of each
# perturbed distribution, and anneal from large noise to small (Song & Ermon 2019).
