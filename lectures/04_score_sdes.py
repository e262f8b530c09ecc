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
# # 04 · Score SDEs: noise as a continuous process, and running it backwards
#
# NCSN perturbs data with a ladder of noise levels $\sigma_1 > \dots > \sigma_L$ and DDPM with a chain of $N$
# small Gaussian steps. Song et al. (2021) noticed that both are discretisations of one object, a **stochastic
# differential equation** that turns data into noise over a time $t \in [0, T]$:
#
# $$ dx = f(x, t)\,dt + g(t)\,dw \qquad \text{(eq. 5)} $$
#
# with a drift $f$, a diffusion coefficient $g$ and Brownian motion $w$. Two choices recover the two models:
#
# | SDE | drift $f(x,t)$ | diffusion $g(t)$ | perturbation kernel $p_{0t}(x_t \mid x_0)$ |
# |---|---|---|---|
# | VE (NCSN) | $0$ | $\sqrt{d\sigma^2(t)/dt}$, $\ \sigma(t) = \sigma_{\min}(\sigma_{\max}/\sigma_{\min})^t$ | $\mathcal N(x_0,\ \sigma(t)^2 I)$ |
# | VP (DDPM) | $-\tfrac12 \beta(t)\, x$ | $\sqrt{\beta(t)}$, $\ \beta(t) = \beta_{\min} + t(\beta_{\max}-\beta_{\min})$ | $\mathcal N\big(e^{-\frac12\int_0^t\beta}\,x_0,\ (1 - e^{-\int_0^t \beta}) I\big)$ |
#
# VE keeps the data where it is and **explodes** its variance; VP shrinks the data towards 0 while adding noise
# so that the total variance is **preserved** (it stays 1 for data of variance 1). Because the kernels are
# Gaussian in closed form, training never simulates the SDE: pick $t$, draw $x_t$ in one shot, and regress the
# score of the kernel, exactly as in NCSN. `dlcourse.sde` has one method per object:

# %%
import math

import torch

from dlcourse.sde import VESDE, VPSDE, SubVPSDE

sdes = {"VE": VESDE(sigma_min=0.01, sigma_max=20.0), "VP": VPSDE(), "sub-VP": SubVPSDE()}
t = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])
print("t:            " + "".join(f"{v:>8.2f}" for v in t.tolist()))
for name, sde in sdes.items():
    alpha, std = sde.marginal_coeffs(t)
    print(f"{name:<7} mean  " + "".join(f"{v:>8.3f}" for v in alpha.tolist()))
    print(f"{'':<7} std   " + "".join(f"{v:>8.3f}" for v in std.tolist()))

# %% [markdown]
# The VE ladder here ends at $\sigma_{\max} = 20$, about the largest distance between two points of our data
# (NCSNv2's first rule, lecture 03), rather than the paper's 50 for CIFAR-10. The kernel is not a claim we have
# to take on trust: simulate the SDE with many small Euler–Maruyama steps and compare.

# %%
def simulate_forward(sde, x0, t_end, n_steps, generator):
    """Euler-Maruyama for dx = f dt + g dw from time 0 to t_end. x0: (N, D)."""
    x, dt = x0.clone(), t_end / n_steps
    for i in range(n_steps):
        t_i = torch.full((x.shape[0],), i * dt)
        x = x + sde.drift(x, t_i) * dt + sde.diffusion(t_i)[:, None] * math.sqrt(dt) * torch.randn(
            x.shape, generator=generator)
    return x


gen = torch.Generator().manual_seed(0)
x0 = torch.tensor([[3.0, -1.0]]).expand(20000, 2)
for name in ["VE", "VP"]:
    sde = sdes[name]
    xt = simulate_forward(sde, x0, 0.5, 500, gen)
    mean, std = sde.marginal_prob(x0[:1], torch.tensor([0.5]))
    print(f"{name}: simulated mean {xt.mean(0).numpy().round(2)}, std {xt.std(0).numpy().round(2)} | "
          f"kernel mean {mean[0].numpy().round(2)}, std {std.item():.2f}")

# %% [markdown]
# ## What the noise does to data
#
# Our data is the mixture of lecture 03, $0.8\,\mathcal N((5,5), I) + 0.2\,\mathcal N((-5,-5), I)$. Because the
# kernel is Gaussian, the marginal $p_t$ of a Gaussian mixture is again a Gaussian mixture (means $\alpha_t \mu_k$,
# covariances $\alpha_t^2 \Sigma_k + \sigma_t^2 I$), so we can draw $p_t$ exactly next to the particles:

# %% tags=["nbval-ignore-output"]
import matplotlib.pyplot as plt

from dlcourse.data.toy2d import two_gaussians

p = two_gaussians()  # 0.8 N((5,5), I) + 0.2 N((-5,-5), I)
x_data = p.sample(1000, generator=gen)
times = [0.0, 0.2, 0.4, 0.6, 1.0]
fig, axes = plt.subplots(2, len(times), figsize=(10, 4.3), dpi=72, layout="constrained")
for row, name in enumerate(["VE", "VP"]):
    sde = sdes[name]
    for col, tv in enumerate(times):
        tt = torch.full((1000,), tv)
        xt, _, _ = sde.perturb(x_data, tt, torch.randn(x_data.shape, generator=gen))
        ax = axes[row, col]
        ax.scatter(xt[:, 0], xt[:, 1], s=2, color="tab:red")
        lim = 9 if name == "VP" else max(9, 3 * sde.marginal_coeffs(tt[:1])[1].item())
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_title(f"{name}, t = {tv}", fontsize=9)
        ax.tick_params(labelsize=6)
plt.show()

# %% [markdown]
# Watch the axes: VE's cloud grows to the scale of $\sigma_{\max}$ and the modes' relative weights survive as
# far-apart blobs until the noise swamps them; VP squeezes everything into a standard normal, whatever the data.
# Both end at a prior that we can sample without knowing the data: $\mathcal N(0, \sigma_{\max}^2 I)$ or
# $\mathcal N(0, I)$.
#
# ## Running time backwards
#
# Anderson (1982) showed that the time reversal of the SDE is again an SDE, and its only unknown is the score of
# the marginals:
#
# $$ dx = \big[f(x,t) - g(t)^2\, \nabla_x \log p_t(x)\big]\,dt + g(t)\,d\bar w, \qquad t: T \to 0 \qquad \text{(eq. 6)} $$
#
# Learn $s_\theta(x, t) \approx \nabla_x \log p_t(x)$ with denoising score matching at every $t$ (continuous-time
# DSM, eq. 7: `dlcourse.sde.sde_score_loss`), plug it in, and simulate from the prior down to $t \approx 0$.
# Song et al. also found a deterministic process with **the same marginals** $p_t$, the probability-flow ODE:
#
# $$ \frac{dx}{dt} = f(x,t) - \tfrac12\, g(t)^2\, \nabla_x \log p_t(x) \qquad \text{(eq. 13)} $$
#
# Half the score push, no noise. Here is the reverse SDE written out with Euler–Maruyama, using the exact score of
# our mixture's VP marginals so that what we see is the sampler, not a network's error:

# %%
vp = sdes["VP"]


def exact_score(x, t):
    """∇ log p_t for the VP-perturbed mixture: the mixture with means α μ_k and covariances α² Σ_k + std² I."""
    alpha, std = vp.marginal_coeffs(t)
    return p.score(x, alpha, std)


def reverse_sde_euler(sde, score, x, n_steps, generator):
    """Euler-Maruyama on the reverse SDE (eq. 6) from t = T to t = eps. x: (N, 2) prior samples."""
    times = torch.linspace(sde.T, sde.eps, n_steps)
    dt = -(sde.T - sde.eps) / n_steps  # negative: time runs backwards
    for t_i in times:
        t_b = t_i.expand(x.shape[0])
        g = sde.diffusion(t_b)[:, None]
        drift = sde.drift(x, t_b) - g ** 2 * score(x, t_b)
        z = torch.randn(x.shape, generator=generator)
        x = x + drift * dt + g * math.sqrt(-dt) * z
    return x


# %% [markdown]
# The package's batched sampler `pc_sample` runs the same update (with the predictor set to Euler–Maruyama and no
# corrector); with the same random draws it must give the same samples:

# %%
from dlcourse.sde import pc_sample

n = 2000
gen_a, gen_b = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
ours = reverse_sde_euler(vp, exact_score, vp.prior_sample((n, 2), generator=gen_a), 300, gen_a)
pkg = pc_sample(vp, exact_score, (n, 2), predictor="euler_maruyama", corrector="none", n_steps=300,
                denoise=False, generator=gen_b)  # draws the prior, then one noise per step: the same order
print(f"max |ours - package| = {(ours - pkg.x).abs().max():.1e}; NFE {pkg.nfe}; big-mode weight "
      f"{(ours.sum(1) > 0).float().mean():.3f} (the data has 0.8)")

# %% [markdown]
# The course's test suite holds every predictor and corrector of the package to a written-out loop in the same
# way, sample by sample and step by step.
#
# ## SDE versus ODE, side by side
#
# Start both processes from the **same** 400 prior samples and record them on the way down. The background is
# the exact marginal $p_t$ at each frame's time.

# %% tags=["nbval-ignore-output"]
from dlcourse.sde import ode_sample
from dlcourse.viz import FramePlayer, panel_frames

x_T = vp.prior_sample((400, 2), generator=torch.Generator().manual_seed(3))
sde_run = pc_sample(vp, exact_score, (400, 2), predictor="euler_maruyama", corrector="none", n_steps=200,
                    x_init=x_T, denoise=False, generator=torch.Generator().manual_seed(4), record_every=5)
ode_run = ode_sample(vp, exact_score, x_T=x_T, denoise=False, record_times=sde_run.times[1:].clamp(min=vp.eps))


def log_pt(x, t):
    alpha, std = vp.marginal_coeffs(torch.full((x.shape[0],), t, dtype=x.dtype))
    return p.log_prob(x.float(), alpha.float(), std.float())


labels = [f"t = {tv:.3f}" for tv in sde_run.times.tolist()]
frames = panel_frames({"reverse SDE (Euler-Maruyama)": sde_run.frames, "probability-flow ODE (RK45)": ode_run.frames},
                      sde_run.times.tolist(), log_density=log_pt, labels=labels)
FramePlayer(frames, labels=labels, interval_ms=100)

# %% [markdown]
# Press ▶. Both clouds have the same distribution at every frame (the heat map), yet the particles move very
# differently: the SDE's particles jitter and can cross between regions; the ODE's glide along smooth paths,
# and each one ends at a point determined by where it started. That determinism is what lecture 06 uses for
# exact likelihoods and for encoding data into the prior.
#
# The final weights of the heavy mode, and the cost in score evaluations (NFE). Recording 40 frames forced the ODE
# solver to stop at each of them; left alone, it chooses its own steps:

# %%
ode_free = ode_sample(vp, exact_score, x_T=x_T, denoise=False)
for name, run in [("reverse SDE", sde_run), ("ODE, 40 recorded stops", ode_run), ("ODE, adaptive steps", ode_free)]:
    print(f"{name:<24} NFE {run.nfe:4d}   big-mode weight {(run.x.sum(1) > 0).float().mean():.2f}")

# %% [markdown]
# ## Images: clothes out of noise
#
# Nothing above was specific to 2-D. The shipped `sde_fashion_vp` model is a 1M-parameter U-Net trained with the
# continuous-time DSM loss (eq. 7) on Fashion-MNIST (28x28) under the same VP SDE, with
# $s_\theta(x, t) = \text{net}(x, t) / \sigma_t$ (6000 steps of 64 images on one CPU thread, about 105 minutes: the
# command is in its manifest entry). We run the
# predictor-corrector sampler of lecture 05 with 100 steps, record the batch every 5 steps, and finish with the
# denoising step of lecture 05 (the last frame, $t = 0$). Drag the slider: the garments appear late, in the last
# fifth of the time, because until then the noise is larger than the garment.

# %% tags=["nbval-ignore-output"]
from dlcourse import load
from dlcourse.viz import image_grid
from dlcourse.viz.langevin import render_image_chain_pngs

model, cfg = load("sde_fashion_vp")
run = pc_sample(model.sde, model, (16, 1, 28, 28), predictor="reverse_diffusion", corrector="langevin", snr=cfg.snr,
                n_steps=100, generator=torch.Generator().manual_seed(0), record_every=5)
images = ((run.frames + 1) / 2).clamp(0, 1)  # (F, 16, 1, 28, 28): the model works on [-1, 1]
labels = [f"t = {tv:.3f}" for tv in run.times[:-1].tolist()] + ["t = 0: the denoised output"]
FramePlayer(render_image_chain_pngs(images, nrow=8, scale=3), labels=labels, interval_ms=150)

# %% [markdown]
# The same trajectories as a strip, one row per sample, time running from left ($t = T$) to right. The last two
# columns are the sampler's final state at $t = \varepsilon$ and its denoised output. Under VP the last noise level
# is small ($\sigma(\varepsilon) \approx 0.01$ on the model's $[-1, 1]$ scale), so the step changes little that
# the eye can see here; lecture 05 measures what it does to the quality figure.

# %% tags=["nbval-ignore-output"]
cols = [0, 10, 14, 16, 18, 19, 20, 21]  # frame indices; 20 is the last step, 21 the denoised output
strip = images[cols][:, :6].transpose(0, 1).reshape(-1, 1, 28, 28)  # (6 samples x 8 times, 1, 28, 28)
fig, ax = plt.subplots(figsize=(6.4, 5.0), dpi=80, layout="constrained")
ax.imshow(image_grid(strip, nrow=len(cols), scale=1), cmap="gray", interpolation="nearest")
ax.set_xticks([14.5 + 29 * i for i in range(len(cols))],
              [f"{run.times[c]:.2f}" if c < 21 else "denoised" for c in cols], fontsize=11)
ax.set_yticks([])
ax.set_xlabel("t", fontsize=12)
plt.show()

# %% [markdown]
# ## Questions
#
# 1. The VE SDE has no drift. Where, in the reverse SDE, does the pull back towards the data come from?
# 2. In the table at the top, sub-VP's std is never above VP's. What does that do to the $g(t)^2$ term of the
#    reverse drift near $t = 0$, and why might it help likelihoods (Song et al. 2021, Section 3.2)?
# 3. Left to choose its own steps, the ODE solver needed far fewer score evaluations than the SDE for a similar
#    result. Why is an adaptive, high-order solver possible for the ODE but not (directly) for the SDE?
