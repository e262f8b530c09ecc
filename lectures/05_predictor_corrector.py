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
# # 05 · Predictor-corrector sampling: spending score evaluations wisely
#
# Lecture 04 solved the reverse SDE with Euler–Maruyama. Every step costs one evaluation of the score network
# (one **NFE**), and at CIFAR-10 scale a network evaluation is the whole cost of sampling. Song et al. (2021,
# Section 4.2) combine two kinds of steps:
#
# - a **predictor** moves from $t$ to $t - \Delta t$ along the reverse SDE: Euler–Maruyama, or the
#   *reverse-diffusion* step that mirrors the forward discretisation ($x \leftarrow x - f_i + G_i^2 s + G_i z$,
#   eq. 47; for VP it is DDPM's ancestral step);
# - a **corrector** stays at time $t$ and runs a few steps of Langevin MCMC with the score of $p_t$ (lecture 01),
#   pulling the samples back towards $p_t$ after the predictor's discretisation error.
#
# The corrector's step size follows a signal-to-noise rule (Algorithms 4 and 5): with $r$ the target ratio,
#
# $$ \epsilon = 2\alpha \left(\frac{r\,\lVert z \rVert}{\lVert s_\theta(x, t) \rVert}\right)^2, \qquad x \leftarrow x + \epsilon\, s_\theta(x,t) + \sqrt{2\epsilon}\, z, $$
#
# so that the noise is $r$ times the size of the drift whatever the scale of the score at that $t$.
# Predictor-only is DDPM's sampler; corrector-only is NCSN's annealed Langevin dynamics (lecture 03).
#
# As in lecture 04 we use the exact score of the VP-perturbed mixture $0.8\,\mathcal N((5,5), I) + 0.2\,\mathcal
# N((-5,-5), I)$, so the only errors are the samplers'.

# %%
import torch

from dlcourse.data.toy2d import two_gaussians
from dlcourse.sde import VPSDE, langevin_corrector_step, pc_sample, reverse_diffusion_step

p, vp = two_gaussians(), VPSDE()


def exact_score(x, t):
    alpha, std = vp.marginal_coeffs(t)
    return p.score(x, alpha, std)


# %% [markdown]
# One step of each, as the package writes them (`dlcourse/sde/samplers.py`), is a pure function of the state:

# %%
import inspect

print(inspect.getsource(langevin_corrector_step))

# %% [markdown]
# ## Quality against NFE
#
# We measure quality two ways: the weight of the big mode (truth 0.8), and the **energy distance** between the
# samples and fresh samples of the data, $2\mathbb E\lVert X - Y\rVert - \mathbb E\lVert X - X'\rVert -
# \mathbb E\lVert Y - Y'\rVert$, which is zero only when the two distributions agree (Székely & Rizzo 2013). With
# 1000 samples its noise floor is about 0.01.

# %%
def energy_distance(x, y):
    return float(2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean() - torch.cdist(y, y).mean())


truth = p.sample(1000, generator=torch.Generator().manual_seed(1))
rows = []
print(f"{'sampler':<22}{'steps':>6}{'NFE':>6}{'weight':>8}{'energy dist':>13}")
for name, pred, corr in [("predictor only", "reverse_diffusion", "none"), ("corrector only", "none", "langevin"),
                         ("predictor-corrector", "reverse_diffusion", "langevin")]:
    for steps in (10, 30, 100, 300):
        res = pc_sample(vp, exact_score, (1000, 2), predictor=pred, corrector=corr, n_steps=steps, snr=0.16,
                        generator=torch.Generator().manual_seed(2))
        w, ed = float((res.x.sum(1) > 0).float().mean()), energy_distance(res.x, truth)
        rows.append((name, res.nfe, ed))
        print(f"{name:<22}{steps:>6}{res.nfe:>6}{w:>8.3f}{ed:>13.3f}")

# %% tags=["nbval-ignore-output"]
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(5, 3.2), dpi=80, layout="constrained")
for name in ["predictor only", "corrector only", "predictor-corrector"]:
    pts = [(nfe, ed) for n_, nfe, ed in rows if n_ == name]
    ax.plot([a for a, _ in pts], [max(b, 1e-3) for _, b in pts], "o-", label=name)
ax.axhline(0.01, color="grey", ls=":", label="noise floor")
ax.set_xscale("log")
ax.set_yscale("log")
ax.set_xlabel("NFE (score evaluations per sample)")
ax.set_ylabel("energy distance to the data")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# At equal NFE the predictor does most of the work: corrector-only (annealed Langevin) needs hundreds of steps
# before it gets the mode weights right, because Langevin dynamics at a fixed $t$ mixes slowly between modes
# (lecture 03's lesson). Adding a corrector to the predictor costs one extra NFE per step; on this easy target it
# buys little, while on images the paper found PC to beat doubling the predictor's steps (Table 1).

# %% [markdown]
# ## On images: the paper's Table 1 pattern
#
# A 2-D target cannot say whether the corrector is worth its NFE on images. The shipped `sde_fashion_ve` model (the
# VE SDE on Fashion-MNIST) can. We score samples with this course's image-quality figure, judged by a small
# Fashion-MNIST classifier (`fashion_classifier`): the **Fréchet distance** between the penultimate features of the
# samples and of the real test images (FID computed the standard way, on features that fit the data; lower is
# better) and the **classifier score** $\exp \mathbb E_x \mathrm{KL}(p(y\mid x) \,\|\, p(y))$ (the Inception score
# with our classifier: high when each sample is clearly one garment and all ten kinds appear). A figure means
# something only next to its floor and ceiling, so the table starts with real training images and with noise,
# scored the same way. Each model line pools four independent sets of 250 samples (1000 in all, the n of the
# floors; FID depends on n) and gives, after ±, the standard error of the four per-set figures; the same chains are
# scored once more without the final denoising step (lecture 04's last frame). The command that measured them is in
# the manifest.

# %%
from dlcourse.checkpoint import read_manifest

manifest = read_manifest()
floors = manifest["fashion_classifier"]["evals"]["accuracy"]
print(f"{'':<52}{'NFE':>5}{'n':>6}{'FID':>16}{'classifier score':>20}")
print(f"{'real training images':<52}{'':>5}{'':>6}{floors['real_vs_real_fid']:>16.2f}"
      f"{floors['real_classifier_score']:>20.2f}")
print(f"{'uniform noise':<52}{'':>5}{'':>6}{floors['noise_fid']:>16.1f}{floors['noise_classifier_score']:>20.2f}")
names = {"pc": "predictor-corrector (N/2 steps)", "predictor": "predictor only (N steps)"}
quality = {what: rec for what, rec in manifest["sde_fashion_ve"]["evals"].items() if what.startswith("quality (")}
for what, rec in sorted(quality.items(), key=lambda kv: (int(kv[1]["sampler"].rsplit(" ", 1)[1]) // 2, kv[0])):
    sampler, nfe = rec["sampler"].split(", NFE ")  # sorted by budget: 200 and 201 NFE (the same chains) together
    label = names[sampler.split(",")[0]] + (", no denoising" if "no final" in sampler else "")
    se = "sets" in rec  # pooled sets carry the standard error of the per-set figures
    fid = f"{rec['fid']:>9.2f} ± {rec['fid_per_set_se']:<4.2f}" if se else f"{rec['fid']:>16.2f}"
    score = f"{rec['classifier_score']:>13.2f} ± {rec['classifier_score_per_set_se']:.2f}" if se else \
        f"{rec['classifier_score']:>13.2f}"
    print(f"{label:<52}{nfe:>5}{rec['n']:>6.0f}{fid}{score}")

# %% [markdown]
# At the same 201 NFE, spending half of them on a Langevin corrector beats spending them all on predictor steps by
# far more than the error bars: the paper's Table 1 pattern, on a model of our own. The final denoising step helps
# every line a little (the same chains, about one point of FID): it removes the last noise level,
# $\sigma_{\min} = 0.01$. Neither 201-NFE sampler is close to real images: from $\sigma_{\max} = 50$ down to $0.01$
# in 100 or 200 steps, each step must shrink the noise by a large factor. With 200 PC steps (401 NFE, the last
# lines) the same model's samples look like clean garments: the FID falls to about a third of the 201-NFE PC
# figure, and the classifier score clears this course's bar (85% of real training images', the check of the VP and
# sub-VP models below). NFE is what VE sampling costs.
#
# What the numbers look like: eight samples of each 201-NFE sampler and of PC at 401 NFE, from the same starting
# noise.

# %% tags=["nbval-ignore-output"]
from dlcourse import load
from dlcourse.viz import image_grid

ve_model, ve_cfg = load("sde_fashion_ve")
pictures = []
for corr, steps in (("none", 200), ("langevin", 100), ("langevin", 200)):
    res = pc_sample(ve_model.sde, ve_model, (8, 1, 28, 28), predictor="reverse_diffusion", corrector=corr,
                    snr=ve_cfg.snr, n_steps=steps, generator=torch.Generator().manual_seed(0))
    pictures.append(((res.x + 1) / 2).clamp(0, 1))
fig, ax = plt.subplots(figsize=(9.0, 3.9), dpi=100, layout="constrained")
ax.imshow(image_grid(torch.cat(pictures), nrow=8, scale=1, pad_value=1.0), cmap="gray", vmin=0, vmax=1)
ax.set_title("top to bottom: predictor only, 200 steps (201 NFE);\n"
             "predictor-corrector, 100 steps (201 NFE); predictor-corrector, 200 steps (401 NFE)", fontsize=12)
ax.axis("off")
plt.show()

# %% [markdown]
# The VP and sub-VP models (6000 training steps each, as the VE model) tell the other half of the story. Their
# recorded figures: at 101 NFE one set of 500 samples per sampler (compare these lines with one another), and for the
# best sampler of each at 201 NFE four sets of 250 pooled, with the per-set standard error, as the VE lines above and
# the floors are (n = 1000), against the bar of this course's check: 85% of real training images' classifier score.

# %%
bar = 0.85 * floors["real_classifier_score"]
print(f"{'':<19}{'sampler':<40}{'n':>6}{'FID':>16}{'classifier score':>20}")
for name in ("sde_fashion_vp", "sde_fashion_subvp"):
    records = [rec for what, rec in manifest[name]["evals"].items() if what.startswith("quality (")]
    for rec in sorted(records, key=lambda r: (r["n"], r["sampler"])):
        se = "sets" in rec
        fid = f"{rec['fid']:>9.1f} ± {rec['fid_per_set_se']:<4.1f}" if se else f"{rec['fid']:>16.1f}"
        score = f"{rec['classifier_score']:>13.2f} ± {rec['classifier_score_per_set_se']:.2f}" if se else \
            f"{rec['classifier_score']:>13.2f}"
        verdict = ("   above the bar" if rec["classifier_score"] >= bar else "   below the bar") if se else ""
        print(f"{name:<19}{rec['sampler']:<40}{rec['n']:>6.0f}{fid}{score}{verdict}")
print(f"the bar: 0.85 x {floors['real_classifier_score']:.2f} = {bar:.2f}")

# %% [markdown]
# Here the corrector does not pay. At 101 NFE the reverse-diffusion predictor alone (`predictor`) has a far lower FID
# and a higher classifier score than the same predictor with a Langevin corrector (`pc`): about a third lower FID for
# sub-VP, over half for VP, and VP's ancestral predictor does a little better still. Table 1's pattern is the VE
# SDE's, whose predictor takes big steps in $\sigma$ that Langevin steps at each level repair; at this budget the
# VP-type SDEs do better spending every NFE on the predictor. Which sampler is best depends on the SDE and the
# budget: measure it. With 201 NFE the best sampler of each model clears the bar by two to three of its standard
# errors. The final denoising step helps VP by about two points of FID and does nothing for sub-VP: at the last
# time $\varepsilon = 10^{-3}$ sub-VP's noise level is $10^{-4}$ (its variance grows like $t^2$, VP's like $t$, whose
# level there is $0.01$), so Tweedie's step has nothing left to remove.

# %% [markdown]
# ## The corrector's signal-to-noise ratio
#
# Drag the slider to change $r$ for a corrector-only sampler with 100 steps. Too small, and the Langevin steps
# barely move the samples; too large, and the noise wins and blurs the modes.

# %% tags=["nbval-ignore-output"]
from dlcourse.viz import FramePlayer, panel_frames

snrs = [0.01, 0.03, 0.1, 0.16, 0.3, 0.6, 1.0]
finals = []
for r in snrs:
    res = pc_sample(vp, exact_score, (500, 2), predictor="none", corrector="langevin", n_steps=100, snr=r,
                    generator=torch.Generator().manual_seed(3))
    finals.append(res.x)
labels = [f"snr r = {r}: big-mode weight {(x.sum(1) > 0).float().mean():.2f}, energy distance "
          f"{energy_distance(x, truth[:500]):.2f}" for r, x in zip(snrs, finals)]
frames = panel_frames({"corrector only, 100 steps": torch.stack(finals)}, [0.0] * len(snrs),
                      log_density=lambda x, t: p.log_prob(x.float()), labels=[f"r = {r}" for r in snrs])
FramePlayer(frames, labels=labels, interval_ms=400)

# %% [markdown]
# ## Two ways to discretise VP, and what each costs
#
# The reverse-diffusion predictor needs the discrete chain behind the SDE: $x_i = \sqrt{1-\beta_i}\,x_{i-1} +
# \sqrt{\beta_i}\,z$. DDPM's table takes $\beta_i = \beta(t_i)\Delta t$, first order in $\Delta t$; the package's
# default (`VPSDE(discretization="exact")`) takes $\beta_i = 1 - e^{-\int_{t-\Delta t}^{t}\beta(s)\,ds}$, the
# exact variance of one step of the Ornstein–Uhlenbeck process. Neither is simply better. On data
# $\mathcal N(0, 0.25)$ with its exact score the law of the sampler's output is Gaussian and can be computed
# exactly (`dlcourse.sde.exact`), so the error below is the discretisation's alone: the relative error of the
# output variance.

# %%
from dlcourse.sde.exact import gaussian_marginal, gaussian_output_law
from dlcourse.sde.samplers import time_grid

print(f"{'steps':>6}{'exact-OU':>11}{'DDPM table':>12}")
for steps in (5, 10, 20, 50, 100, 1000):
    cells = []
    for how in ("exact", "ddpm"):
        sde = VPSDE(discretization=how)
        _, v = gaussian_output_law(sde, reverse_diffusion_step, steps, 0.0, 0.25)
        times, dt = time_grid(sde, steps, dtype=torch.float64)
        _, v_true = gaussian_marginal(sde, (times[-1:] - dt).clamp(min=0), 0.0, 0.25)
        cells.append("NaN" if v != v else f"{abs(v / float(v_true) - 1):.1%}")
    print(f"{steps:>6}{cells[0]:>11}{cells[1]:>12}")

# %% [markdown]
# DDPM's table breaks below 20 steps: $\beta(t)\Delta t$ passes 1 near $t = T$ and $\sqrt{1-\beta_i}$ is the root
# of a negative number. The exact-OU chain is stable at any step count, but from 20 to 100 steps it is *less*
# accurate. An exact forward step does not make the *reverse* step exact: the predictor still uses the score
# to first order in $\Delta t$ whichever $\beta_i$ it is given, and DDPM's $\beta_i$, always the larger of the two
# ($\beta(t)\Delta t$ takes $\beta$ at the end of the step, where it is largest), happens to land closer to the
# true reverse marginal at these step counts. Both agree as the steps grow.
# Use the exact chain when you want very few steps; use `discretization="ddpm"` to reproduce DDPM's numbers.
#
# ## Ancestral sampling, probability flow, and the last step
#
# Two more predictors of the paper. The **ancestral** predictor (Appendix F) samples DDPM's (for VP) or SMLD's
# (for VE) reverse Markov chain, using the score only through the posterior mean of $x_{i-1}$ given $x_i$; as the
# steps grow it converges to the same reverse SDE as the reverse-diffusion predictor. The **probability-flow**
# predictor takes Euler steps of the ODE of lecture 06, with no noise at all. And every sampler can end with
# **Tweedie's denoising step**: at the last time $\varepsilon$, replace $x$ by the posterior mean
# $\mathbb E[x_0 \mid x_\varepsilon] = (x + \sigma_\varepsilon^2 s_\theta(x, \varepsilon)) / \alpha_\varepsilon$ (one more NFE,
# on by default in `pc_sample` and `ode_sample`, `denoise=False` to skip it), which removes the noise that the last
# step leaves in, the noise you could see in the images at $t \approx 0$ of earlier versions of this course.

# %%
print(f"{'predictor':<20}{'steps':>6}{'NFE':>6}{'weight':>8}{'energy dist':>13}")
for pred in ("reverse_diffusion", "ancestral", "probability_flow"):
    for steps in (30, 300):
        res = pc_sample(vp, exact_score, (1000, 2), predictor=pred, corrector="none", n_steps=steps,
                        generator=torch.Generator().manual_seed(2))
        print(f"{pred:<20}{steps:>6}{res.nfe:>6}{float((res.x.sum(1) > 0).float().mean()):>8.3f}"
              f"{energy_distance(res.x, truth):>13.3f}")

# %% [markdown]
# At 30 steps the ancestral predictor is already near the noise floor, where the reverse-diffusion predictor has
# the mode weights wrong; at 300 steps they agree (a test checks that their output laws converge). Fixed Euler
# steps of the probability-flow ODE are the least accurate at low step counts: lecture 06 gives the ODE an
# adaptive solver instead.
#
# ## Questions
#
# 1. Why does the rule put $\lVert s \rVert^2$ in the denominator? What would a fixed step size do at $t$ near
#    $T$ (where $\lVert s \rVert$ is about $\sqrt d$) versus near $0$ (where it can be huge)?
# 2. In the discretisation table, which chain would you use for a 10-step sampler, and which for 50 steps? What
#    does DDPM's table do at 10 steps, and why?
# 3. Which row of the table would you pick for a network that costs 50 ms per evaluation, and why?
