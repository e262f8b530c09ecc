# ---
# jupyter:
#   dlcourse:
#     assignment: a1_score_matching
#     blocked:
#     - dlcourse.score.losses.dsm_loss
#     - dlcourse.score.losses.dsm_target
#     - dlcourse.score.losses.ncsn_loss
#     - dlcourse.score.langevin.langevin_step
#     - dlcourse.score.langevin.annealed_step_sizes
#     - dlcourse.score.ncsn.geometric_sigmas
#     cell_time_limit: 60
#     time_limit: 20
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
# # Assignment a1 · Denoising score matching and annealed Langevin dynamics
#
# *After lectures [01](../lectures/01_ebm_langevin.ipynb), [02](../lectures/02_score_matching.ipynb) and
# [03](../lectures/03_ncsn.ipynb).* Graded, 10 points. You will write the four pieces that make a
# noise-conditional score network (Song & Ermon 2019) work:
#
# 1. **perturbing the data** with noise of one or many levels, for any data shape, 1 point;
# 2. the σ²-weighted **denoising score matching loss**, 3 points;
# 3. the **geometric noise ladder** $\sigma_1 > \dots > \sigma_L$, 2 points;
# 4. **one step of annealed Langevin dynamics**, 4 points, checked by reproducing Figure 3 of the paper with your
#    step.
#
# **How to work.** Fill in each function where it says `raise NotImplementedError(...)`; keep its name and
# arguments. Run the test cell under it: silence means you passed the *public* tests; otherwise the message says
# what is wrong. Before handing in, check your work from a terminal in the course folder with
# `.venv/bin/dlcourse grade assignments/a1_score_matching.ipynb` (see [course/grading.md](../course/grading.md)).
# The instructor grades with further *hidden* tests (other shapes, per-sample noise levels, float64). While
# grading, the package's own `dsm_loss`, `langevin_step`, `annealed_step_sizes` and `geometric_sigmas` are
# **blocked**.
#
# Every function takes its random numbers ($z$) as an argument, so its result is a deterministic function of its
# inputs and can be checked exactly.

# %% tags=["grading-setup"]
import math

import torch

from dlcourse.data.toy2d import two_gaussians
from dlcourse.grading.checks import check_close, check_finite, check_shape, check_true

# %% [markdown]
# ## 1. Perturbing the data
#
# Denoising score matching (Vincent 2011) trains on noisy copies of the data, $\tilde x = x + \sigma z$ with
# $z \sim \mathcal N(0, I)$. Write it for data of any shape: a batch of 2-D points `(B, 2)` or of images
# `(B, C, H, W)`. `sigma` is either a number (one level for the whole batch) or a tensor of shape `(B,)` (one level
# per sample, as when NCSN draws a random level for each sample). To multiply a `(B,)` tensor into a
# `(B, C, H, W)` one, reshape it to `(B, 1, 1, 1)`: `sigma.reshape(-1, *[1] * (x.dim() - 1))` works for every rank.

# %% nbgrader={"grade": false, "grade_id": "perturb", "locked": false, "solution": true}
def perturb(x, sigma, z):
    """The noisy data x + sigma z.

    Args:
        x: (B, ...) clean data.
        sigma: a float, or a (B,) tensor with one noise level per sample.
        z: (B, ...) standard normal noise, like x.
    Returns:
        (B, ...) tensor like x.
    """
    ### BEGIN SOLUTION
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if sigma.dim() == 1:
        sigma = sigma.reshape(-1, *[1] * (x.dim() - 1))  # (B, 1, ...)
    return x + sigma * z
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "q1_perturb", "locked": true, "points": 1, "solution": false}
x = torch.tensor([[1.0, 2.0], [0.0, -1.0], [3.0, 0.5]])
z = torch.tensor([[0.5, -1.0], [1.5, 0.0], [-0.2, 0.3]])
check_close(perturb(x, 0.5, z), x + 0.5 * z, name="perturb(x, 0.5, z)",
            mistakes={"the noise was not scaled by sigma": x + z, "sigma^2 was used instead of sigma": x + 0.25 * z})
sigmas = torch.tensor([0.1, 1.0, 4.0])
check_close(perturb(x, sigmas, z), x + sigmas.unsqueeze(-1) * z, name="perturb(x, sigmas, z) with sigmas of shape (3,)",
            hint="Sample i must get its own sigma_i: reshape sigmas to (B, 1) before multiplying.")
# any rank: images (B, C, H, W) with one sigma per image (a reshape to (B, 1) breaks here)
x_img = torch.linspace(-1.0, 1.0, 2 * 3 * 4 * 4).reshape(2, 3, 4, 4)
z_img = torch.linspace(1.0, -1.0, 2 * 3 * 4 * 4).reshape(2, 3, 4, 4)
sigmas_img = torch.tensor([0.5, 2.0])
check_close(perturb(x_img, sigmas_img, z_img), x_img + sigmas_img.reshape(2, 1, 1, 1) * z_img,
            name="perturb(x, sigmas, z) on images of shape (2, 3, 4, 4) with sigmas of shape (2,)",
            hint="Reshape sigmas to (B, 1, 1, 1) for images: sigma.reshape(-1, *[1] * (x.dim() - 1)) works for "
                 "every rank.")
### BEGIN HIDDEN TESTS
gen = torch.Generator().manual_seed(1)
x = torch.rand(4, 1, 3, 3, generator=gen, dtype=torch.float64)
z = torch.randn(4, 1, 3, 3, generator=gen, dtype=torch.float64)
sigmas = torch.tensor([0.05, 0.3, 1.0, 4.0], dtype=torch.float64)
got = perturb(x, sigmas, z)
check_shape(got, (4, 1, 3, 3), name="perturb(x, sigmas, z) on images (4, 1, 3, 3)")
check_close(got, x + sigmas.reshape(4, 1, 1, 1) * z, rtol=1e-12, atol=1e-12,
            name="perturb(x, sigmas, z) on images (4, 1, 3, 3) with one sigma per image (float64)")
check_close(perturb(x, 2.0, z), x + 2.0 * z, rtol=1e-12, atol=1e-12, name="perturb(x, 2.0, z) on images")
### END HIDDEN TESTS

# %% [markdown]
# ## 2. The denoising score matching loss
#
# The network sees $\tilde x$ and should output the score of the noising kernel,
# $\nabla_{\tilde x} \log q_\sigma(\tilde x \mid x) = -(\tilde x - x)/\sigma^2 = -z/\sigma$. With NCSN's weighting
# $\lambda(\sigma) = \sigma^2$ (Song & Ermon 2019, eqs. 5–6; Vincent 2011, eq. 11) the loss of one sample is
#
# $$ \ell = \tfrac12\, \sigma^2\, \big\lVert s_\theta(\tilde x, \sigma) + z/\sigma \big\rVert^2 , $$
#
# the squared norm summed over *all* coordinates of the sample; the loss is the mean of $\ell$ over the batch.
# Your function gets the network's output `score` $= s_\theta(\tilde x, \sigma)$, already evaluated at the noisy
# data, so a training step reads `dsm_loss(net(perturb(x, sigma, z), sigma), z, sigma)`. Again `sigma` is a
# number or a `(B,)` tensor, and the data may have any shape.

# %% nbgrader={"grade": false, "grade_id": "dsm_loss", "locked": false, "solution": true}
def dsm_loss(score, z, sigma):
    """σ²-weighted denoising score matching loss, averaged over the batch.

    Args:
        score: (B, ...) the score network's output s(x + sigma z, sigma) at the perturbed data.
        z: (B, ...) the standard normal noise that perturbed the data.
        sigma: a float, or a (B,) tensor with one noise level per sample.
    Returns:
        A scalar tensor: the mean over the batch of 1/2 sigma^2 ||score + z / sigma||^2, the squared norm summed
        over every dimension but the first.
    """
    ### BEGIN SOLUTION
    sigma = torch.as_tensor(sigma, dtype=score.dtype, device=score.device)
    if sigma.dim() == 1:
        sigma = sigma.reshape(-1, *[1] * (score.dim() - 1))  # (B, 1, ...)
    residual = sigma * score + z  # σ (s + z/σ), (B, ...)
    return 0.5 * residual.reshape(score.shape[0], -1).square().sum(dim=1).mean()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "q2_dsm_loss", "locked": true, "points": 3, "solution": false}
score = torch.tensor([[-0.5, 1.0], [-1.2, 0.4], [0.3, -0.1]])
z = torch.tensor([[0.5, -1.0], [1.5, 0.0], [-0.2, 0.3]])
# sigma = 0.8 tells the weights apart: 1/2 sigma^2 = 0.32, sigma^2 = 0.64 (the 1/2 dropped), 1/2 sigma = 0.4
got = dsm_loss(score, z, 0.8)
check_shape(got, (), name="dsm_loss(score, z, 0.8)")
residual = (score + z / 0.8).square().sum(-1)  # ||s + z / sigma||^2 per sample, (3,)
check_close(got, (0.5 * 0.64 * residual).mean(), rtol=1e-5, atol=1e-6, name="dsm_loss(score, z, 0.8)", mistakes={
    "the sigma^2 weighting is missing": (0.5 * residual).mean(),
    "the 1/2 in front of the loss is missing": (0.64 * residual).mean(),
    "the weight is sigma instead of sigma^2": (0.5 * 0.8 * residual).mean(),
    "the target has the wrong sign (score - z/sigma instead of score + z/sigma)":
        (0.5 * 0.64 * (score - z / 0.8).square().sum(-1)).mean(),
    "the squared norm was averaged over the coordinates instead of summed":
        (0.5 * 0.64 * (score + z / 0.8).square().mean(-1)).mean(),
    "the target is z / sigma^2 instead of z / sigma": (0.5 * 0.64 * (score + z / 0.64).square().sum(-1)).mean(),
})
# The exact score of Gaussian data N(0, s^2 I), blurred to N(0, (s^2 + sigma^2) I), reaches the analytic minimum
# 1/2 D s^2 / (s^2 + sigma^2): the per-sample loss is 1/2 v chi^2_D with v = s^2 / (s^2 + sigma^2), so its mean over
# n samples has standard error v sqrt(D / (2 n)); we allow 5 of them.
gen = torch.Generator().manual_seed(0)
n, D, s2, sigma = 20000, 2, 4.0, 0.5
data = math.sqrt(s2) * torch.randn(n, D, generator=gen, dtype=torch.float64)
noise = torch.randn(n, D, generator=gen, dtype=torch.float64)
noisy = data + sigma * noise
v = s2 / (s2 + sigma**2)
check_close(dsm_loss(-noisy / (s2 + sigma**2), noise, sigma), torch.tensor(0.5 * D * v, dtype=torch.float64),
            rtol=0.0, atol=5 * v * math.sqrt(D / (2 * n)),
            name="dsm_loss with the exact score of Gaussian data (20000 samples)",
            hint="For N(0, 4 I) data and sigma = 0.5 the minimum is 1/2 * 2 * 4 / 4.25 = 0.941.")
### BEGIN HIDDEN TESTS
# one noise level per sample, float64
gen = torch.Generator().manual_seed(1)
score = torch.randn(5, 2, generator=gen, dtype=torch.float64)
z = torch.randn(5, 2, generator=gen, dtype=torch.float64)
sigmas = torch.tensor([0.1, 0.5, 1.0, 2.0, 10.0], dtype=torch.float64)
per_sample = 0.5 * sigmas**2 * (score + z / sigmas.unsqueeze(-1)).square().sum(-1)
check_close(dsm_loss(score, z, sigmas), per_sample.mean(), rtol=1e-10, atol=1e-12,
            name="dsm_loss(score, z, sigmas) with one sigma per sample (float64)", mistakes={
                "every sample was weighted by the first sigma only":
                    (0.5 * sigmas[0] ** 2 * (score + z / sigmas.unsqueeze(-1)).square().sum(-1)).mean(),
            })
# images (B, C, H, W), with a per-sample sigma
score = torch.randn(4, 1, 3, 3, generator=gen)
z = torch.randn(4, 1, 3, 3, generator=gen)
sigmas = torch.tensor([0.05, 0.3, 1.0, 4.0])
s = sigmas.reshape(4, 1, 1, 1)
got = dsm_loss(score, z, sigmas)
check_shape(got, (), name="dsm_loss on a batch of images (4, 1, 3, 3)")
check_close(got, (0.5 * (s * score + z).reshape(4, -1).square().sum(-1)).mean(), rtol=1e-5, atol=1e-6,
            name="dsm_loss on a batch of images (4, 1, 3, 3)",
            hint="Sum the squared residual over every dimension but the batch one, and reshape sigma to "
                 "(B, 1, 1, 1) so it broadcasts against the images.")
### END HIDDEN TESTS

# %% [markdown]
# DSM is minimised by the score of the *blurred* data, and the minimum is not zero. For our mixture, the loss of
# the exact blurred score against the same score scaled by 0.5 or 2 (wrong) at three noise levels:

# %%
mix = two_gaussians()
gen = torch.Generator().manual_seed(0)
data = mix.sample(4000, generator=gen)  # (4000, 2)
noise = torch.randn(data.shape, generator=gen)
for sigma in (0.5, 2.0, 8.0):
    noisy = perturb(data, sigma, noise)
    losses = [dsm_loss(c * mix.score(noisy, sigma=sigma), noise, sigma).item() for c in (0.5, 1.0, 2.0)]
    print(f"sigma = {sigma:3.1f}: loss of 0.5 x score {losses[0]:.3f}, exact score {losses[1]:.3f}, "
          f"2 x score {losses[2]:.3f}")

# %% [markdown]
# ## 3. The noise ladder
#
# NCSN uses a geometric sequence from $\sigma_1$ down to $\sigma_L$: every level is the previous one divided by the
# same ratio,
#
# $$ \sigma_i = \sigma_1 \left( \frac{\sigma_L}{\sigma_1} \right)^{\frac{i-1}{L-1}}, \qquad i = 1, \dots, L . $$
#
# Return it as a float32 tensor, largest first, with both ends exactly $\sigma_1$ and $\sigma_L$ (up to float32
# rounding). Hint: compute in log space, or use `torch.logspace`/`torch.linspace`.

# %% nbgrader={"grade": false, "grade_id": "noise_ladder", "locked": false, "solution": true}
def noise_ladder(sigma_max, sigma_min, num_levels):
    """The geometric noise ladder sigma_1 = sigma_max > ... > sigma_L = sigma_min.

    Args:
        sigma_max: the largest level sigma_1 (a float).
        sigma_min: the smallest level sigma_L (a float, 0 < sigma_min < sigma_max).
        num_levels: L >= 2.
    Returns:
        (L,) float32 tensor, decreasing, with a constant ratio between consecutive levels.
    """
    ### BEGIN SOLUTION
    exponents = torch.linspace(0.0, 1.0, num_levels, dtype=torch.float64)  # (L,)
    return (sigma_max * (sigma_min / sigma_max) ** exponents).float()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "q3_noise_ladder", "locked": true, "points": 2, "solution": false}
got = noise_ladder(1.0, 0.01, 3)
check_close(got, torch.tensor([1.0, 0.1, 0.01]), rtol=1e-5, atol=0.0, name="noise_ladder(1.0, 0.01, 3)", mistakes={
    "the levels are evenly spaced (linspace) instead of geometric": torch.tensor([1.0, 0.505, 0.01]),
    "the ladder is in increasing order; it must start at sigma_max": torch.tensor([0.01, 0.1, 1.0]),
})
got = noise_ladder(20.0, 1.0, 10)
check_shape(got, (10,), name="noise_ladder(20.0, 1.0, 10)")
check_true(got.dtype == torch.float32, f"noise_ladder should return float32, got {got.dtype}.")
check_close(got, 20.0 * 20.0 ** (-torch.arange(10) / 9.0), rtol=1e-5, atol=0.0, name="noise_ladder(20.0, 1.0, 10)")
### BEGIN HIDDEN TESTS
got = noise_ladder(50.0, 0.01, 232)  # NCSNv2's CIFAR-10 ladder
check_shape(got, (232,), name="noise_ladder(50.0, 0.01, 232)")
check_close(got[[0, -1]], torch.tensor([50.0, 0.01]), rtol=1e-6, atol=0.0,
            name="the two ends of noise_ladder(50.0, 0.01, 232)",
            hint="With 232 levels, multiplying by the ratio 231 times drifts; compute each level from its exponent.")
ratios = got[:-1] / got[1:]
check_close(ratios, torch.full((231,), (50.0 / 0.01) ** (1 / 231)), rtol=1e-4, atol=0.0,
            name="the ratios of consecutive levels of noise_ladder(50.0, 0.01, 232)")
check_close(noise_ladder(3.0, 0.5, 2), torch.tensor([3.0, 0.5]), rtol=1e-6, atol=0.0,
            name="noise_ladder(3.0, 0.5, 2)", hint="Two levels are just the two ends.")
### END HIDDEN TESTS

# %% [markdown]
# ## 4. One step of annealed Langevin dynamics
#
# At level $\sigma_i$ of the ladder, annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1) takes Langevin
# steps of size
#
# $$ \alpha_i = \varepsilon\, \frac{\sigma_i^2}{\sigma_L^2}, \qquad
#    x \leftarrow x + \frac{\alpha_i}{2}\, s_\theta(x, \sigma_i) + \sqrt{\alpha_i}\, z, \quad z \sim \mathcal N(0, I), $$
#
# so $\varepsilon$ is the step at the last level and larger levels take proportionally larger steps. This is the
# **paper's** step convention (lecture 01): not the released code's $x + \alpha s + \sqrt{2\alpha} z$.
#
# Write one step. `score` is the score already evaluated at `x` (a tensor like `x`), `sigma` the current level and
# `sigma_min` the last level $\sigma_L$, both floats.

# %% nbgrader={"grade": false, "grade_id": "annealed_langevin_step", "locked": false, "solution": true}
def annealed_langevin_step(x, score, sigma, sigma_min, eps, z):
    """One step of annealed Langevin dynamics at noise level sigma (paper convention).

    Args:
        x: (B, ...) current state.
        score: (B, ...) the score s(x, sigma) at the current state.
        sigma: the current noise level sigma_i (a float).
        sigma_min: the last level of the ladder sigma_L (a float).
        eps: the step size at the last level (a float).
        z: (B, ...) standard normal noise.
    Returns:
        (B, ...) the new state x + alpha/2 score + sqrt(alpha) z, with alpha = eps sigma^2 / sigma_min^2.
    """
    ### BEGIN SOLUTION
    alpha = eps * sigma**2 / sigma_min**2
    return x + 0.5 * alpha * score + math.sqrt(alpha) * z
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "q4_annealed_step", "locked": true, "points": 4, "solution": false}
x = torch.tensor([[1.0, -2.0], [0.5, 0.0]])
score = torch.tensor([[0.3, 1.0], [-2.0, 0.5]])
z = torch.tensor([[0.1, -0.4], [1.2, 0.7]])
got = annealed_langevin_step(x, score, 2.0, 0.5, 0.01, z)
alpha = 0.01 * 2.0**2 / 0.5**2  # 0.16
check_shape(got, (2, 2), name="annealed_langevin_step(x, score, 2.0, 0.5, 0.01, z)")
check_close(got, x + 0.5 * alpha * score + math.sqrt(alpha) * z, rtol=1e-5, atol=1e-6,
            name="annealed_langevin_step(x, score, sigma=2.0, sigma_min=0.5, eps=0.01, z)", mistakes={
                "you used the released code's convention x + alpha s + sqrt(2 alpha) z instead of the paper's":
                    x + alpha * score + math.sqrt(2 * alpha) * z,
                "the step size was not scaled by sigma^2 / sigma_min^2 (alpha = eps)":
                    x + 0.5 * 0.01 * score + math.sqrt(0.01) * z,
                "the scaling is upside down (alpha = eps sigma_min^2 / sigma^2)":
                    x + 0.5 * 0.01 / 16 * score + math.sqrt(0.01 / 16) * z,
                "the noise is multiplied by alpha instead of sqrt(alpha)": x + 0.5 * alpha * score + alpha * z,
                "the drift is missing its 1/2": x + alpha * score + math.sqrt(alpha) * z,
            })
# Figure 3 of Song & Ermon (2019), with your step: 0.8 N((5,5), I) + 0.2 N((-5,-5), I), exact scores, 2000 chains
# started uniformly on [-8, 8]^2, sigma from 20 to 1 in 10 levels, eps = 0.1, T = 100. The fraction in the heavy
# mode is 0.8 minus a bias of 0.021 from the finite T (measured with 20 000 chains), with binomial standard error
# sqrt(0.16 / 2000) = 0.009; we allow the bias plus 5 standard errors.
mix = two_gaussians()
gen = torch.Generator().manual_seed(0)
chains = 16 * torch.rand(2000, 2, generator=gen) - 8
ladder = 20.0 * (1.0 / 20.0) ** (torch.arange(10) / 9.0)
for level in ladder.tolist():
    for _ in range(100):
        chains = annealed_langevin_step(chains, mix.score(chains, sigma=level), level, 1.0, 0.1,
                                        torch.randn(chains.shape, generator=gen))
check_finite(chains, name="the chains after annealed Langevin with your step",
             hint="They diverged: is the step size too large at the first levels?")
heavy = (mix.component_of(chains) == 0).float().mean().item()
check_true(abs(heavy - 0.779) < 5 * math.sqrt(0.16 / 2000) + 0.005,
           f"With your step, annealed Langevin put {heavy:.1%} of 2000 chains in the heavy mode at (5, 5); Figure 3 "
           f"of Song & Ermon (2019) expects about 78% (80% minus 2% from the finite number of steps), give or take "
           f"5%. Around 50% means the chains never mixed: check that alpha grows with sigma.")
### BEGIN HIDDEN TESTS
# images, float64
gen = torch.Generator().manual_seed(2)
x = torch.rand(3, 1, 4, 4, generator=gen, dtype=torch.float64)
score = torch.randn(3, 1, 4, 4, generator=gen, dtype=torch.float64)
z = torch.randn(3, 1, 4, 4, generator=gen, dtype=torch.float64)
alpha = 3e-5 * 0.7**2 / 0.01**2
check_close(annealed_langevin_step(x, score, 0.7, 0.01, 3e-5, z), x + 0.5 * alpha * score + math.sqrt(alpha) * z,
            rtol=1e-10, atol=1e-12, name="annealed_langevin_step on images (3, 1, 4, 4) in float64")
# at the last level the step is eps itself: for N(0, s^2) the chain's stationary variance is
# s^2 / (1 - eps / (4 s^2)) (lecture 01); 20000 chains, 300 steps, 5 standard errors v sqrt(2 / n)
s2, eps = 2.0, 1.0
chains = torch.zeros(20000, 1, dtype=torch.float64)
for _ in range(300):
    chains = annealed_langevin_step(chains, -chains / s2, 0.3, 0.3, eps, torch.randn(chains.shape, generator=gen,
                                                                                   dtype=torch.float64))
v = s2 / (1 - eps / (4 * s2))
check_close(chains.var(), torch.tensor(v, dtype=torch.float64), rtol=0.0, atol=5 * v * math.sqrt(2 / 20000),
            name="the variance of 20000 chains of your step at the last level, target N(0, 2), eps = 1",
            hint="The paper's convention x + eps/2 s + sqrt(eps) z has stationary variance s^2 / (1 - eps / (4 s^2)) "
                 "= 2.286 here; the code's convention x + eps s + sqrt(2 eps) z gives 2.667.")
### END HIDDEN TESTS

# %% [markdown]
# ## Putting it together
#
# With your ladder and your step, the whole of Algorithm 1 is a double loop. Here it runs on the mixture with its
# exact blurred scores, next to plain Langevin (one level, $\sigma = 0$) from the same start: only the annealed chains
# find the 80/20 weights.

# %%
import matplotlib.pyplot as plt


def annealed_langevin(score_fn, x, sigmas, eps, n_steps_each, generator=None):
    """Song & Ermon (2019), Algorithm 1, with your noise_ladder levels and annealed_langevin_step."""
    for sigma in sigmas.tolist():
        for _ in range(n_steps_each):
            z = torch.randn(x.shape, generator=generator)
            x = annealed_langevin_step(x, score_fn(x, sigma), sigma, sigmas[-1].item(), eps, z)
    return x


gen = torch.Generator().manual_seed(0)
start = 16 * torch.rand(1000, 2, generator=gen) - 8
annealed = annealed_langevin(lambda y, s: mix.score(y, sigma=s), start, noise_ladder(20.0, 1.0, 10), 0.1, 100, gen)
plain = start
for _ in range(1000):
    plain = plain + 0.05 * mix.score(plain) + math.sqrt(0.1) * torch.randn(plain.shape, generator=gen)
fig, axes = plt.subplots(1, 2, figsize=(6.0, 3.0), dpi=70, sharey=True, layout="constrained")
for ax, xs, title in ((axes[0], plain, "plain Langevin"), (axes[1], annealed, "annealed Langevin")):
    ax.scatter(xs[:, 0], xs[:, 1], s=2, color="tab:red")
    ax.set_title(f"{title}: {(mix.component_of(xs) == 0).float().mean():.0%} at (5, 5)", fontsize=10)
    ax.set_xlim(-9, 9)
    ax.set_ylim(-9, 9)
    ax.set_aspect("equal")
plt.show()

# %% [markdown]
# ## What next
#
# These three functions are the core of `dlcourse train ncsn` (the loss, with one random level per sample) and
# `dlcourse sample ncsn` (the step, inside a loop over the ladder). Check your work with
# `.venv/bin/dlcourse grade assignments/a1_score_matching.ipynb` and hand in the notebook.
