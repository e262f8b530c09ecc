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
# # 03 · Noise-conditional score networks and annealed Langevin dynamics
#
# *Prerequisites: [01 Langevin dynamics](01_ebm_langevin.ipynb), [02 Score matching](02_score_matching.ipynb).*
#
# We can learn a score from data (lecture 02) and sample with it (lecture 01). Put together naively, the two fail,
# for two reasons that Song & Ermon (2019, Section 3) identified:
#
# 1. **Low-density regions.** The score is learned where the data is. Real data sits near a thin manifold, and a
#    chain started from noise begins exactly where the learned score is least accurate (lecture 02's error map).
# 2. **Mixtures.** Where one component dominates, $p \approx w_k p_k$ and
#    $\nabla_x \log p \approx \nabla_x \log w_k + \nabla_x \log p_k = \nabla_x \log p_k$: the weight $w_k$ disappears from
#    the score. A chain in the basin of a light mode sees the same arrows as in a heavy one, and crossing between
#    basins takes exponentially long.
#
# Point 2 in numbers: near the heavy mode of $p = 0.8\,\mathcal N((5,5), I) + 0.2\,\mathcal N((-5,-5), I)$ the
# mixture's score is the heavy component's score to many decimals, and near the light mode it is the light one's:

# %%
import math

import torch

from dlcourse.data.toy2d import GaussianMixture, two_gaussians

mix = two_gaussians(dtype=torch.float64)
near = torch.tensor([[4.0, 5.0], [6.0, 6.5], [-4.0, -6.0], [-5.5, -4.5]], dtype=torch.float64)
for x, s in zip(near.tolist(), mix.score(near).tolist()):
    mode = [5.0, 5.0] if x[0] > 0 else [-5.0, -5.0]
    component = [m - xi + 0.0 for m, xi in zip(mode, x)]  # the score of N(mode, I); + 0.0 turns -0.0 into 0.0
    s = [round(v, 6) + 0.0 for v in s]  # + 0.0 turns -0.0 into 0.0
    print(f"x = ({x[0]:+.1f}, {x[1]:+.1f}): mixture score ({s[0]:+.6f}, {s[1]:+.6f}), "
          f"its component's ({component[0]:+.6f}, {component[1]:+.6f})")

# %% [markdown]
# ## The fix: learn the score at many noise levels
#
# Blur the data with Gaussian noise of several sizes $\sigma_1 > \sigma_2 > \dots > \sigma_L$,
#
# $$ q_\sigma(\tilde x) = \int p(x)\, \mathcal N(\tilde x; x, \sigma^2 I)\, dx , $$
#
# and learn all their scores with one **noise-conditional score network** $s_\theta(x, \sigma)$ by denoising score
# matching, weighting each level by $\lambda(\sigma) = \sigma^2$ so that every level contributes about equally
# (Song & Ermon 2019, eqs. 5–6):
#
# $$ \mathcal L(\theta) = \frac1L \sum_{i=1}^L \sigma_i^2\ \tfrac12\, \mathbb E\, \big\| s_\theta(x + \sigma_i z, \sigma_i) + z / \sigma_i \big\|^2 . $$
#
# A large $\sigma$ fills the space between the modes with probability, so its score is defined and learnable
# everywhere and it *does* point towards the heavy mode; a small $\sigma$ is nearly the data. Here is $q_\sigma$ for the
# mixture at four levels of a geometric ladder from $\sigma_1 = 20$ (the paper's choice for this example):

# %% tags=["nbval-ignore-output"]
import matplotlib.pyplot as plt

from dlcourse.viz import evaluate_on_grid

extent = (-12.0, 12.0, -12.0, 12.0)
fig, axes = plt.subplots(1, 4, figsize=(9.6, 2.7), dpi=80, layout="constrained")
for ax, sigma in zip(axes, (20.0, 6.0, 2.0, 0.5)):
    gx, gy, logq = evaluate_on_grid(lambda y: mix.log_prob(y.double(), sigma=sigma), extent, 120)
    ax.contourf(gx, gy, logq.clip(min=logq.max() - 10), levels=10, cmap="Blues")
    ax.set_aspect("equal")
    ax.set_title(rf"$q_\sigma$, $\sigma$ = {sigma:g}", fontsize=10)
    ax.tick_params(labelsize=7)
plt.show()

# %% [markdown]
# ## Annealed Langevin dynamics
#
# Sample by walking down the ladder: $T$ Langevin steps with the score of $q_{\sigma_1}$, then $T$ with $q_{\sigma_2}$
# starting where the previous level ended, and so on. The step shrinks with the noise, $\alpha_i = \varepsilon\,
# \sigma_i^2 / \sigma_L^2$, which keeps the signal-to-noise ratio of every step the same (Song & Ermon 2019,
# Algorithm 1). Written out, with the exact scores of $q_\sigma$:

# %%
def annealed_langevin(score, x, sigmas, eps, n_steps_each, generator=None):
    """Annealed Langevin dynamics, Algorithm 1 of Song & Ermon (2019), paper step convention.

    score(x (N, D), sigma (N,)) -> (N, D); sigmas: the ladder, largest first.
    """
    for sigma in sigmas:
        alpha = eps * sigma**2 / sigmas[-1] ** 2
        sigma_n = torch.full((x.shape[0],), sigma, dtype=x.dtype)  # (N,)
        for _ in range(n_steps_each):
            z = torch.randn(x.shape, generator=generator, dtype=x.dtype)  # (N, D)
            x = x + 0.5 * alpha * score(x, sigma_n) + math.sqrt(alpha) * z
    return x


# %% [markdown]
# The package's batched sampler `annealed_langevin_dynamics` (in-place updates, can record the chain for the
# players below) computes the same function; with the same random numbers the two agree to round-off:

# %%
from dlcourse.score import annealed_langevin_dynamics, geometric_sigmas, langevin_dynamics

sigmas = geometric_sigmas(20.0, 1.0, 10).double()  # the paper's ladder for this example: 20 -> 1 in 10 levels
exact_score = lambda x, sigma: mix.score(x, sigma=sigma)  # noqa: E731
x0 = 16 * torch.rand(8, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) - 8
ours = annealed_langevin(exact_score, x0, sigmas.tolist(), 0.1, 5, generator=torch.Generator().manual_seed(1))
package = annealed_langevin_dynamics(exact_score, x0, sigmas, 0.1, 5, generator=torch.Generator().manual_seed(1))
print(f"the two samplers agree to 1e-12: {torch.allclose(ours, package, rtol=0, atol=1e-12)}")

# %% [markdown]
# ## Figure 3 of Song & Ermon (2019)
#
# 1280 chains, started uniformly on $[-8, 8]^2$, with the *exact* scores: plain Langevin ($\varepsilon = 0.1$, 1000
# steps, on $p$ itself) against annealed Langevin ($\sigma$ from 20 to 1 in 10 levels, $\varepsilon = 0.1$, $T = 100$,
# also 1000 steps in all).

# %% tags=["nbval-ignore-output"]
n = 1280
gen = torch.Generator().manual_seed(0)
start = 16 * torch.rand(n, 2, generator=gen, dtype=torch.float64) - 8
plain = langevin_dynamics(mix.score, start, 0.1, 1000, generator=gen)
annealed = annealed_langevin(exact_score, start, sigmas.tolist(), 0.1, 100, generator=gen)
exact = mix.sample(n, generator=gen)

fig, axes = plt.subplots(1, 3, figsize=(9.0, 3.2), dpi=80, sharey=True, layout="constrained")
for ax, xs, title in ((axes[0], exact, "samples of p"), (axes[1], plain, "Langevin"),
                      (axes[2], annealed, "annealed Langevin")):
    heavy = (mix.component_of(xs) == 0).double().mean().item()
    ax.scatter(xs[:, 0], xs[:, 1], s=2, color="tab:blue" if ax is axes[0] else "tab:red")
    ax.set_title(f"{title}: {heavy:.0%} at (5, 5)", fontsize=10)
    ax.set_xlim(-9, 9)
    ax.set_ylim(-9, 9)
    ax.set_aspect("equal")
    ax.tick_params(labelsize=7)
plt.show()

# %% [markdown]
# Plain Langevin puts about half of the chains in each mode: the split of the starting square between the two
# basins. Annealed Langevin recovers the 80/20 weights (within the binomial standard error
# $\sqrt{0.8 \cdot 0.2 / 1280} \approx 0.011$, plus a bias of about $-0.02$ from the finite $T$, which
# the course's test suite measures with 20 000 chains). Its modes are wider than the data's because they are samples
of the last level, $q_1$, whose components have variance $1 + \sigma_L^2 = 2$. At $\sigma_1 = 20$ the two modes are one broad bump whose
# score points at the heavier side; as $\sigma$ shrinks, each chain is already in the right basin.

# %% [markdown]
# ## Play with it
#
# The player simulates every combination of its controls up front. "noise σ" means the level of the density
# followed by plain Langevin ($q_\sigma$), and the top of the ladder $\sigma_1$ for annealed Langevin (which always
# ends at $\sigma_L = 1$, 10 levels; with $\sigma_1 = 0$ there is nothing to anneal and the chain runs at
# $\sigma_L$). Things to try:
#
# - plain, $\sigma = 0$: the weights stay about 50/50 (try other steps and lengths with
#   `LangevinPlayer(two_gaussians(), step_sizes=(0.02, 0.1, 0.5), n_steps=(200, 1000))`: they stay wrong);
# - plain, $\sigma = 20$: the chains roam the whole picture, but that is the blurred $q_{20}$, not $p$;
# - annealed, $\sigma_1 = 20$: sharp modes *and* the right weights;
# - annealed, $\sigma_1 = 3$: too little noise to connect modes 14 apart, and the weights are wrong again. The
#   largest noise must be comparable to the largest distance between data points (NCSNv2's first rule, below).

# %% tags=["nbval-ignore-output"]
from dlcourse.viz.langevin import LangevinPlayer

toy_player = LangevinPlayer(two_gaussians(), step_sizes=(0.1,), n_steps=(1000,),
                            sigmas=(0.0, 3.0, 20.0), annealed=(False, True), n_chains=300, n_frames=25)
toy_player.select(step_size=0.1, n_steps=1000, sigma=20.0, annealed=True).player.show(-1)
toy_player

# %% [markdown]
# ## With a learned score
#
# So far the scores were exact. The course ships an NCSN trained on samples of this mixture (`ncsn_toy`: an MLP
# given $\log\sigma$, 20 levels from 20 to 0.1, trained with the σ²-weighted DSM loss for 4000 steps; its manifest
# entry has the command that reproduces it). Annealed Langevin with the *learned* score, with the sampler settings
# stored in the checkpoint (100 steps per level and a final denoising step):

# %% tags=["nbval-ignore-output"]
from dlcourse import load
from dlcourse.score import sample_ncsn

toy_model, toy_cfg = load("ncsn_toy")
learned = sample_ncsn(toy_model, toy_cfg, 1000, generator=torch.Generator().manual_seed(0)).double()
heavy = (mix.component_of(learned) == 0).double().mean().item()
print(f"ladder {toy_cfg.noise.sigma_max} -> {toy_cfg.noise.sigma_min} in {toy_cfg.noise.num_levels} levels, "
      f"T = {toy_cfg.sampler.n_steps_each}, eps = {toy_cfg.sampler.eps}: {heavy:.1%} of 1000 samples at (5, 5)")
top = learned[mix.component_of(learned) == 0]
print(f"heavy mode: mean ({top[:, 0].mean():.2f}, {top[:, 1].mean():.2f}), "
      f"variance ({top[:, 0].var():.2f}, {top[:, 1].var():.2f}); the data's: (5, 5) and (1, 1)")

# %% [markdown]
# The learned score recovers the weights too, and the modes have about the right centre and spread: the network
# never saw a sample between the modes, but at large $\sigma$ the blurred data covers that region, and that is
# where the chains cross.

# %% [markdown]
# ## Choosing the ladder and the step: NCSNv2's rules
#
# Song & Ermon (2020), *Improved techniques for training score-based generative models*, turned the choices into
# rules, all implemented in `dlcourse.score.ncsn`:
#
# 1. **$\sigma_1$ = the largest distance between two training points**, so that the first level can move any
#    point to any other.
# 2. **The ratio $\gamma = \sigma_{i-1}/\sigma_i$** such that a sample of level $i$ lands in the typical shell of
#    level $i-1$ about half of the time: in $D$ dimensions $\lVert x\rVert \approx \sigma\sqrt D$ with spread
#    $\sigma/\sqrt2$, which gives $\Phi(\sqrt{2D}(\gamma-1) + 3\gamma) - \Phi(\sqrt{2D}(\gamma-1) - 3\gamma) \approx \tfrac12$.
#    Then $L$ follows from $\sigma_1$, $\sigma_L$ and $\gamma$.
# 3. **$s_\theta(x, \sigma) = s_\theta(x)/\sigma$**: the true score has size about $\sqrt D/\sigma$, so the network
#    outputs something of order one at every level (`dlcourse.score.NCSN` divides by $\sigma$).
# 4. **The step $\varepsilon$** for a budget of $T$ steps per level: the one that brings the chain's variance
#    after $T$ steps closest to $\sigma_i^2$ (their eq. 4, for data concentrated at a point).
# 5. **An exponential moving average of the weights** for sampling (`dlcourse.train`'s EMA).
#
# and one more trick: finish with a **denoising step** $x \leftarrow x + \sigma_L^2\, s_\theta(x, \sigma_L)$, Tweedie's
# formula for $\mathbb E[x \mid \tilde x]$, which removes the last level's noise.
#
# For the $8\times 8$ digits (scikit-learn's, 1500 training images in $[0, 1]$, $D = 64$):

# %%
from dlcourse.data.images import load_images
from dlcourse.score import max_pairwise_distance, ncsnv2_gamma, ncsnv2_num_levels, ncsnv2_step_size

digits, _ = load_images("digits", "train")  # (1500, 1, 8, 8) in [0, 1]
sigma_1 = max_pairwise_distance(digits)
gamma = ncsnv2_gamma(64)
L = ncsnv2_num_levels(sigma_1, 0.01, gamma)
ratio = (sigma_1 / 0.01) ** (1 / (L - 1))
eps = ncsnv2_step_size(ratio, 0.01, 10, convention="code")
print(f"rule 1: sigma_1 = {sigma_1:.4f}")
print(f"rule 2: gamma = {gamma:.4f}, so L = {L} levels from {sigma_1:.2f} to 0.01 (ratio {ratio:.4f})")
print(f"rule 4: eps = {eps:.4g} for T = 10 steps per level (code convention: x + eps s + sqrt(2 eps) z)")

# %% [markdown]
# For CIFAR-10 ($D = 3072$) the same rules give $\gamma \approx 1.04$ and, from $\sigma_1 = 50$ to $0.01$, over 200
# levels: the paper used 232.

# %% [markdown]
# ## Clothes from noise
#
# The course ships an NCSN trained with exactly these rules on Fashion-MNIST (60,000 greyscale 28x28 images of
# clothes, $D = 784$): a 1M-parameter U-Net, σ²-weighted DSM over the whole ladder, EMA weights;
# `dlcourse train ncsn --preset cpu` reproduces it in a few hours of one CPU core. The rules, applied to that data,
# are stored in its config:

# %%
from dlcourse.utils import count_parameters

model, cfg = load("ncsn_fashion")
print(f"{count_parameters(model):,} parameters; rule 1: sigma_1 = {cfg.noise.sigma_max:.2f}; rule 2: L = "
      f"{cfg.noise.num_levels} levels down to sigma_L = {cfg.noise.sigma_min}; rule 4: eps = {cfg.sampler.eps:.3g} "
      f"for T = {cfg.sampler.n_steps_each} steps per level ({cfg.sampler.convention} convention)")

# %% [markdown]
# Sixteen chains, started from uniform noise on $[0, 1]^{784}$, through all the levels and the final denoising
# step. Press ▶: for the first levels the images are noise (clamped to $[0, 1]$ for display); somewhere around
# $\sigma \approx 1$ the silhouettes of shoes, trousers and shirts appear, and the last levels put in the texture.

# %% tags=["nbval-ignore-output"]
from dlcourse.score import model_image_chain
from dlcourse.viz.langevin import image_chain_player

chain = model_image_chain("ncsn_fashion", n_images=16, seed=0, n_frames=40)
clothes_player = image_chain_player(chain, nrow=8, scale=3)
clothes_player.show(-1)

# %% [markdown]
# Are these new clothes, or copies of training images? Each sample (top) next to its nearest training image in
# Euclidean distance (bottom). The check needs the 60,000 training images: `load_images("fashion-mnist")`
# downloads them (30 MB) the first time, on a machine with a network.

# %% tags=["nbval-ignore-output"]
from dlcourse.errors import DataMissingError
from dlcourse.quality.metrics import nearest_training_images
from dlcourse.viz import image_grid

samples = chain.frames[-1].clamp(0, 1)  # (16, 1, 28, 28)
try:
    clothes, _ = load_images("fashion-mnist", "train", download=False)
except DataMissingError as err:
    print(f"not on this machine: {err}")
else:
    index, distance = nearest_training_images(samples, clothes)
    _, typical = nearest_training_images(clothes[:200], clothes[200:])  # a training image to its nearest other
    fig, ax = plt.subplots(figsize=(12, 3.0), dpi=80, layout="constrained")
    ax.imshow(image_grid(torch.cat([samples, clothes[index]]), nrow=16, scale=1, pad_value=1.0), cmap="gray",
              vmin=0, vmax=1)
    ax.set_title("top: samples; bottom: the nearest training image to each", fontsize=14)
    ax.axis("off")
    plt.show()
    print(f"distance to the nearest training image: samples {distance.mean():.2f} (min {distance.min():.2f}); "
          f"a training image to its nearest other training image {typical.mean():.2f}")

# %% [markdown]
# The nearest training images are the same kind of garment but not the same picture, and the samples are about
# as far from their nearest training image as real training images are from theirs: with 60,000 images and a million
# parameters the model has not memorised its data. That is not a law: trained on scikit-learn's 1500 digits
# (`load("ncsn_digits")`, in an earlier version of this lecture) the same architecture produced near-copies of
# training digits. When diffusion models copy and when they generalise is a live research question (try
# `dlcourse train ncsn --preset cpu --set data_limit=500`).
#
# How good are the samples? The course scores 28x28 images with a small Fashion-MNIST classifier
# (`fashion_classifier`, 91% test accuracy), in the two ways the field scores CIFAR-10 with Inception:
#
# - **FID**: fit a Gaussian to the classifier's 128 penultimate features of the samples and another to those of the
#   10,000 test images; the Fréchet distance between them,
#   $\lVert \mu_1 - \mu_2 \rVert^2 + \operatorname{tr}\big(\Sigma_1 + \Sigma_2 - 2 (\Sigma_1 \Sigma_2)^{1/2}\big)$
#   (Heusel et al. 2017), is 0 for the same distribution; lower is better.
# - **classifier score**: $\exp\, \mathbb{E}_x\, \mathrm{KL}\big(p(y \mid x) \,\Vert\, p(y)\big)$ (the Inception
#   score of Salimans et al. 2016, with this classifier): up to 10 when every image is confidently one of the 10
#   classes and the classes are balanced, 1 when the classifier cannot tell; higher is better.
#
# Neither means much alone, so each comes with its floor and ceiling: 1000 real training images (what a perfect
# model's 1000 samples would score; FID is not 0 because 1000 images estimate a 128x128 covariance with error) and
# 1000 images of uniform noise. `dlcourse eval ncsn --quality --record` measured the shipped model:

# %%
from dlcourse.checkpoint import read_manifest

manifest = read_manifest()
record = next(v for k, v in manifest["ncsn_fashion"]["evals"].items() if k.startswith("quality ("))
floors = manifest["fashion_classifier"]["evals"]["accuracy"]
print(f"{'':<24}{'FID (classifier features)':>27}{'classifier score':>18}")
print(f"{'real training images':<24}{floors['real_vs_real_fid']:>27.2f}{floors['real_classifier_score']:>18.2f}")
print(f"{'ncsn_fashion samples':<24}{record['fid']:>27.2f}{record['classifier_score']:>18.2f}")
print(f"{'uniform noise':<24}{floors['noise_fid']:>27.2f}{floors['noise_classifier_score']:>18.2f}")
print(f"({record['n']:.0f} samples, {record['sampler']}; `{record['command']}`)")

# %% [markdown]
# ## A question to think about
#
# The Fashion-MNIST ladder has 99 levels and 5 steps each. Halve $T$ again and rule 4 gives a larger
# $\varepsilon$; halve $L$ with the same $\sigma_1$ and $\sigma_L$ and rule 2's overlap gets worse. Which would you
# cut to halve the budget of network evaluations, and why? (Try it: `model_image_chain("ncsn_fashion",
# n_steps_each=2)`, and `sigmas_of(cfg)` for the ladder.)
# The next part of the course lets the number of levels go to infinity: the ladder becomes a stochastic
# differential equation, and annealed Langevin becomes one of several ways to solve it backwards in time.
