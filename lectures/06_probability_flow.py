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
# # 06 · The probability-flow ODE: exact likelihoods and a deterministic encoder
#
# The probability-flow ODE of lecture 04,
#
# $$ \frac{dx}{dt} = \tilde f(x, t) = f(x,t) - \tfrac12 g(t)^2\, \nabla_x \log p_t(x) \qquad \text{(Song et al. 2021, eq. 13)}, $$
#
# is a **continuous normalising flow**: an invertible map from data $x(0)$ to a latent $x(T)$ whose density we
# know. The instantaneous change of variables (Chen et al. 2018) tracks how the log-density changes along a path:
# $\frac{d}{dt} \log p_t(x(t)) = -\nabla\cdot \tilde f(x(t), t)$, so integrating from $0$ to $T$,
#
# $$ \log p_0(x(0)) = \log p_T(x(T)) + \int_0^T \nabla \cdot \tilde f(x(t), t)\, dt \qquad \text{(eq. 39)}. $$
#
# One ODE solve of the pair $\big(x(t), \int \nabla\cdot\tilde f\big)$ gives an **exact** log-likelihood, exact
# up to the solver's tolerance and the score model's error. No variational bound, unlike DDPM's.

# %%
import math

import torch

from dlcourse.sde import VPSDE, log_likelihood

vp = VPSDE()


# %% [markdown]
# ## Check it where we know the answer
#
# For Gaussian data $\mathcal N(\mu, s^2 I)$ every marginal of the VP SDE is Gaussian,
# $p_t = \mathcal N(\alpha_t \mu, (\alpha_t^2 s^2 + \sigma_t^2) I)$, so the score is known in closed form.
# With $\mu = 0$ and $s = 1$ the prior is exactly $p_T$ and the ODE must return $\log \mathcal N(x; 0, I)$:

# %%
def gaussian_score(x, t):
    """Score of p_t for data N(0, I) under the VP SDE: -x / (alpha^2 + std^2) = -x."""
    alpha, std = vp.marginal_coeffs(t)
    return -x / (alpha ** 2 + std ** 2)[:, None]


x = torch.tensor([[0.3, -1.2], [2.0, 0.5], [-0.7, 0.1]], dtype=torch.float64)
res = log_likelihood(vp, gaussian_score, x, rtol=1e-7, atol=1e-7)
exact = -x.pow(2).sum(1) / 2 - math.log(2 * math.pi)
for xi, a, b in zip(x.tolist(), res.logp.tolist(), exact.tolist()):
    print(f"x = ({xi[0]:+.1f}, {xi[1]:+.1f}):  ODE log p = {a:.5f}   exact = {b:.5f}")
print(f"NFE: {res.nfe}")

# %% [markdown]
# Now a harder target, the mixture $0.8\,\mathcal N((5,5), I) + 0.2\,\mathcal N((-5,-5), I)$, with its exact
# perturbed score. The likelihood is computed for points in both modes and in the gap between them:

# %%
from dlcourse.data.toy2d import two_gaussians

p = two_gaussians(dtype=torch.float64)


def mixture_score(x, t):
    alpha, std = vp.marginal_coeffs(t)
    return p.score(x, alpha, std)


pts = torch.tensor([[5.0, 5.0], [-5.0, -5.0], [0.0, 0.0], [4.0, 6.5]], dtype=torch.float64)
res = log_likelihood(vp, mixture_score, pts, rtol=1e-6, atol=1e-6)
for xi, a, b in zip(pts.tolist(), res.logp.tolist(), p.log_prob(pts).tolist()):
    print(f"x = ({xi[0]:+.1f}, {xi[1]:+.1f}):  ODE log p = {a:8.3f}   exact = {b:8.3f}")

# %% [markdown]
# (The small differences come from the prior: the VP SDE's $p_T$ is not *exactly* $\mathcal N(0, I)$ for data
# away from the origin, since $\alpha_T \approx 0.007$.)
#
# ## Divergence: exact or Hutchinson
#
# The exact divergence costs one backward pass per dimension: fine in 2-D, hopeless for a $3\times32\times32$
# image. Hutchinson's estimator replaces the trace by $v^\top (\partial \tilde f/\partial x)\, v$ with a random
# $v$ with $\mathbb E[v v^\top] = I$ (Rademacher $\pm1$ entries here), one backward pass whatever the dimension,
# and unbiased. Holding one $v$ fixed along the path (as FFJORD does) gives an unbiased estimate of the whole
# log-likelihood. Its spread, for one point and 300 different probes $v$ (300 copies in one batch):

# %% tags=["nbval-ignore-output"]
import matplotlib.pyplot as plt

one = pts[3:4].expand(300, 2)
est = log_likelihood(vp, mixture_score, one, divergence="hutchinson", rtol=1e-5, atol=1e-5,
                     generator=torch.Generator().manual_seed(0)).logp
exact_one = float(p.log_prob(pts[3:4]))
fig, ax = plt.subplots(figsize=(5, 2.8), dpi=80, layout="constrained")
ax.hist(est.numpy(), bins=30, color="tab:blue", alpha=0.8)
ax.axvline(exact_one, color="tab:red", label=f"exact log p = {exact_one:.3f}")
ax.axvline(float(est.mean()), color="k", ls="--", label=f"mean of estimates = {float(est.mean()):.3f}")
ax.set_xlabel("Hutchinson estimate of log p(x)")
ax.legend(fontsize=8)
plt.show()
print(f"std of one estimate {float(est.std()):.3f} nats; std of the mean of 300: {float(est.std()) / math.sqrt(300):.3f}")

# %% [markdown]
# In practice we average over a test set of thousands of images, so the estimator's noise averages out too;
# `dlcourse eval sde --bpd` uses it for images and reports bits per dimension with uniform dequantisation.
#
# ## Tolerance versus cost
#
# The adaptive Dormand–Prince solver (`dlcourse.sde.odeint_dopri5`, the pair behind scipy's RK45) picks its own
# step sizes to meet a tolerance. Looser tolerance, fewer score evaluations, a less accurate likelihood:

# %%
for tol in (1e-2, 1e-3, 1e-4, 1e-6):
    r = log_likelihood(vp, mixture_score, pts, rtol=tol, atol=tol)
    err = (r.logp - p.log_prob(pts)).abs().max()
    print(f"rtol = atol = {tol:.0e}:  NFE {r.nfe:4d}   max |error| {err:.4f} nats")

# %% [markdown]
# ## Bits per dimension of images
#
# For images the same ODE gives the standard figure of the papers. Pixels are discrete, $k \in \{0, \dots,
# 255\}$, so we evaluate the density at $y = (k + u)/256$ with uniform $u$ (dequantisation, Theis et al. 2016):
# then $-\log_2 P(k) \le -\log_2 p(y) + D \log_2 256$, and dividing by the $D$ pixels gives **bits per
# dimension** (8 for a model that knows nothing, 0 for one that predicts every pixel). `image_bits_per_dim` does
# this with the Hutchinson divergence, starting the ODE at a small time $\varepsilon$ rather than at 0, where the
# score of the data's density does not exist. Song et al. (2021) start at $\varepsilon = 10^{-5}$ in their likelihood
# code, and the choice is not innocent: here is one shipped model, the 8x8-digits VP model (its 17 grey levels are
# its bins), on ten test digits, from two start times.

# %%
from dlcourse import load
from dlcourse.data.images import load_images
from dlcourse.sde import image_bits_per_dim

digit_model, _ = load("sde_digits")
test_digits = load_images("digits", "test")[0][:10]  # (10, 1, 8, 8) in [0, 1]
for eps in (1e-3, 1e-5):
    bpd, nfe = image_bits_per_dim(digit_model.sde, digit_model, test_digits, n_bins=17, eps=eps,
                                  divergence="hutchinson", generator=torch.Generator().manual_seed(0))
    print(f"eps = {eps:.0e}: {bpd.mean():.3f} bits/dim on these 10 digits ({nfe} NFE)")

# %% [markdown]
# The recorded test figures of the shipped image models, each measured by the command beside it over the test
# split, with the standard error of the mean over images:

# %%
from dlcourse.checkpoint import read_manifest

manifest = read_manifest()
for name in ("sde_digits", "sde_fashion_vp", "sde_fashion_subvp", "sde_fashion_ve"):
    rec = manifest[name]["evals"]["bpd"]
    print(f"{name:<18} {rec['test_bpd']:.3f} ± {rec['test_bpd_se']:.3f} bits/dim over {rec['n']:.0f} test images "
          f"(eps {rec['eps']:g})\n    {rec['command']}")
for name, label in (("sde_fashion_subvp", "sub-VP"), ("sde_fashion_ve", "VE")):
    paired = manifest[name]["evals"]["bpd minus sde_fashion_vp (paired)"]
    print(f"{label} minus VP on the same {paired['n']:.0f} images, noise and probes: {paired['difference']:+.3f} ± "
          f"{paired['difference_se']:.3f} bits/dim\n    {paired['command']}")

# %% [markdown]
# Song et al. (2021, Table 2) found sub-VP's bits/dim below VP's at the same network and budget (3.05 against 3.21 on
# CIFAR-10). Our two 28x28 models are trained alike (6000 steps each, far short of the paper's 1.3M) and show the
# same order. Each model's own error bar (how much the figure would move on other test images) is larger than the
# gap, but both were measured on the same images with the same dequantisation noise and probes, so the difference
# has its own, much smaller, error bar (the standard error of the per-image differences): the gap is about seven of
# them. The VE model, trained alike and measured the same way, comes out lower still, by about sixteen of its
# paired error bars. The paper's Table 2 has no VE rows to compare with, and a likelihood is not a picture: at 201
# NFE the same VE model drew far worse samples than VP (lecture 05). Bits/dim and sample quality measure different
# things (Theis, van den Oord & Bethge 2016), so report both.

# %% [markdown]
# ## A deterministic encoder
#
# Because the map $x(0) \mapsto x(T)$ is a deterministic bijection, we can **encode** data into the prior and
# decode it back, the property DDIM (Song, Meng & Ermon 2021) found for DDPM. Encode samples from both modes,
# interpolate between two latents along a great circle (the prior's mass lives on a shell), and decode:

# %%
from dlcourse.sde import ode_sample

data = torch.tensor([[5.5, 4.0], [-4.5, -5.5]], dtype=torch.float64)
z = log_likelihood(vp, mixture_score, data, rtol=1e-6, atol=1e-6).z  # encode: x(0) -> x(T)
back = ode_sample(vp, mixture_score, x_T=z, rtol=1e-6, atol=1e-6).x  # decode: x(T) -> x(0)
print("latents:", z.numpy().round(3).tolist())
print(f"reconstruction error: {(back - data).abs().max():.1e}")

# %% tags=["nbval-ignore-output"]
lam = torch.linspace(0, 1, 41, dtype=torch.float64)[:, None]
omega = torch.arccos((z[0] @ z[1]) / (z[0].norm() * z[1].norm()))
path_z = (torch.sin((1 - lam) * omega) * z[0] + torch.sin(lam * omega) * z[1]) / torch.sin(omega)  # slerp (41, 2)
path_x = ode_sample(vp, mixture_score, x_T=path_z, rtol=1e-5, atol=1e-5).x
fig, axes = plt.subplots(1, 2, figsize=(7, 3.3), dpi=80, layout="constrained")
axes[0].plot(path_z[:, 0], path_z[:, 1], "o-", ms=3)
axes[0].set_title("latent path (prior space)", fontsize=9)
axes[1].scatter(p.sample(500, generator=torch.Generator().manual_seed(1))[:, 0],
                p.sample(500, generator=torch.Generator().manual_seed(1))[:, 1], s=2, color="lightgrey")
axes[1].plot(path_x[:, 0], path_x[:, 1], "o-", ms=3, color="tab:red")
axes[1].set_title("decoded path (data space)", fontsize=9)
for ax in axes:
    ax.set_aspect("equal")
plt.show()

# %% [markdown]
# The decoded path does not wander through the empty gap evenly: most of the latent path maps into one mode or
# the other, and the switch happens in a few steps. The flow has stretched the prior so that the low-density
# region between the modes occupies almost no latent volume.
#
# ## Questions
#
# 1. Why does the exact likelihood need the score at *every* $t$, not just near the data?
# 2. Hutchinson with Gaussian $v$ is also unbiased. Why does Rademacher $v$ give a smaller variance
#    (hint: $\operatorname{Var}(v^\top A v)$ for each)?
# 3. Bits per dimension of an image model add $\log_2 256 = 8$ bits minus the density's contribution. Why must the
#    pixels be dequantised (uniform noise added) before their density is evaluated?
