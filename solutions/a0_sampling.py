# ---
# jupyter:
#   dlcourse:
#     assignment: a0_sampling
#     blocked:
#     - dlcourse.data.toy2d.GaussianMixture.sample
#     - dlcourse.data.toy2d.GaussianMixture.log_prob
#     - dlcourse.data.toy2d.GaussianMixture.score
#     - dlcourse.data.toy2d.GaussianMixture.posterior
#     - dlcourse.data.toy2d.GaussianMixture.component_of
#     - dlcourse.data.toy2d.GaussianMixture._component_terms
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
# # Assignment a0 · Sampling from a 2-D Gaussian mixture, its log-density and its score
#
# A warm-up for the rest of the course, graded (10 points). You will write, with nothing but tensor
# operations, the four things the score-based lectures take for granted about a Gaussian mixture
#
# $$ p(x) = \sum_{k=1}^K w_k\, \mathcal N(x;\ \mu_k, \Sigma_k), \qquad x \in \mathbb R^2 : $$
#
# 1. drawing the component $k$ of each sample from the weights (inverse CDF), 2 points;
# 2. drawing from one Gaussian with a Cholesky factor, 2 points;
# 3. drawing from the mixture (ancestral sampling), 2 points;
# 4. the log-density $\log p(x)$, stably, with a log-sum-exp, 2 points;
# 5. the score $\nabla_x \log p(x)$, 2 points.
#
# **How to work.** Fill in each function where it says `raise NotImplementedError(...)`; keep its name and
# arguments. Run the test cell under it: when it finishes silently you passed the *public* tests; otherwise the
# message says what is wrong (a shape, a dtype, a sign, a factor of two). Before handing in, check your work
# from a terminal in the course folder with `.venv/bin/dlcourse grade assignments/a0_sampling.ipynb` (see
# [course/grading.md](../course/grading.md)). The instructor grades with further *hidden* tests
# (`--hidden`): other inputs, edge cases, far-away points. While grading, the package's own `GaussianMixture`
# methods are **blocked** (calling them fails): the point is to write them yourself.
#
# Every function takes the noise it needs (uniform `u`, standard normal `z`) as an argument, so the result
# is a deterministic function of its inputs and can be checked exactly.

# %% tags=["grading-setup"]
import math

import torch

from dlcourse.data.toy2d import GaussianMixture
from dlcourse.grading.checks import (check_close, check_cov_close, check_dtype, check_equal, check_finite,
                                     check_frequencies, check_mean_close, check_shape, check_true)

# %% [markdown]
# ## 1. Choosing the components: the inverse CDF
#
# With weights $w_1, \dots, w_K$ (non-negative; normalise them, they need not sum to one) and their cumulative
# sums $c_k = \sum_{j \le k} w_j / \sum_j w_j$, a uniform $u \in [0, 1)$ falls in exactly one interval
# $[c_{k-1}, c_k)$ (with $c_0 = 0$), which happens with probability $w_k$. So component $k$ (counting from 0 in
# code) is the number of cumulative sums that are $\le u$. Look at `torch.cumsum` and `torch.searchsorted`;
# guard against $c_K$ rounding to slightly less than 1.

# %% nbgrader={"grade": false, "grade_id": "sample_components", "locked": false, "solution": true}
def sample_components(weights, u):
    """Component indices by the inverse CDF of the weights.

    Args:
        weights: (K,) non-negative mixture weights (not necessarily normalised).
        u: (n,) uniform numbers in [0, 1).
    Returns:
        (n,) int64 tensor: k such that c_{k-1} <= u < c_k, with c the normalised cumulative weights.
    """
    ### BEGIN SOLUTION
    cdf = torch.cumsum(weights / weights.sum(), dim=0).to(u.dtype)  # (K,)
    k = torch.searchsorted(cdf, u, right=True)  # number of c_k <= u, (n,)
    return k.clamp(max=weights.numel() - 1)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "q1_components", "locked": true, "points": 2, "solution": false}
w = torch.tensor([0.2, 0.5, 0.3])
u = torch.tensor([0.05, 0.3, 0.69, 0.71, 0.99])
got = sample_components(w, u)
check_dtype(got, torch.int64, name="sample_components(w, u)")
check_equal(got, torch.tensor([0, 1, 1, 2, 2]), name="sample_components(w, u) with w = [0.2, 0.5, 0.3]")
### BEGIN HIDDEN TESTS
w = torch.tensor([0.25, 0.25, 0.5], dtype=torch.float64)
u = torch.tensor([0.0, 0.25, 0.5, 0.75], dtype=torch.float64)
check_equal(sample_components(w, u), torch.tensor([0, 1, 2, 2]),
            name="sample_components(w, u) with u equal to the cumulative weights 0, 0.25, 0.5",
            hint="u = w_0 + ... + w_k belongs to component k + 1: count the cumulative sums that are <= u.")
w = torch.tensor([1.0, 3.0])
check_equal(sample_components(w, torch.tensor([0.2, 0.3, 0.9])), torch.tensor([0, 1, 1]),
            name="sample_components(w, u) with weights [1, 3] that do not sum to one",
            hint="Normalise the weights (divide by their sum) before the cumulative sum.")
gen = torch.Generator().manual_seed(1)
w = torch.tensor([0.1, 0.6, 0.05, 0.25])
check_frequencies(sample_components(w, torch.rand(20000, generator=gen)), w,
                  name="sample_components(w, u) for 20000 uniform u")
### END HIDDEN TESTS

# %% [markdown]
# ## 2. One Gaussian: the Cholesky factor
#
# If $z \sim \mathcal N(0, I)$ and $\Sigma = L L^\top$ with $L$ lower triangular (`torch.linalg.cholesky`), then
# $x = \mu + L z$ has mean $\mu$ and covariance $\mathrm{E}[L z z^\top L^\top] = L L^\top = \Sigma$. With a batch
# of row vectors `z` of shape (n, 2), "$L z$ for every row" is one matrix product; get the transpose right.

# %% nbgrader={"grade": false, "grade_id": "sample_gaussian", "locked": false, "solution": true}
def sample_gaussian(mean, cov, z):
    """Samples of N(mean, cov) from standard normal noise.

    Args:
        mean: (d,) mean.
        cov: (d, d) symmetric positive definite covariance.
        z: (n, d) standard normal noise, one row per sample.
    Returns:
        (n, d) tensor: row i is mean + L z_i with cov = L L^T (L lower triangular).
    """
    ### BEGIN SOLUTION
    L = torch.linalg.cholesky(cov)  # (d, d)
    return mean + z @ L.T  # (n, d)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "q2_gaussian", "locked": true, "points": 2, "solution": false}
mean = torch.tensor([1.0, -2.0])
cov = torch.tensor([[2.0, 0.6], [0.6, 0.5]])
got = sample_gaussian(mean, cov, torch.zeros(3, 2))
check_shape(got, (3, 2), name="sample_gaussian(mean, cov, z) with z of shape (3, 2)")
check_close(got, mean.expand(3, 2), name="sample_gaussian(mean, cov, z) with z = 0")
z = torch.randn(20000, 2, generator=torch.Generator().manual_seed(0))
x = sample_gaussian(mean, cov, z)
check_mean_close(x, mean, cov=cov, name="sample_gaussian(mean, cov, z) for 20000 normal z")
check_cov_close(x, cov, name="sample_gaussian(mean, cov, z) for 20000 normal z")
### BEGIN HIDDEN TESTS
mean = torch.tensor([0.5, 3.0], dtype=torch.float64)
cov = torch.tensor([[1.0, -0.9], [-0.9, 4.0]], dtype=torch.float64)
z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.3, -2.0], [-1.5, 0.7]], dtype=torch.float64)
L = torch.linalg.cholesky(cov)
check_close(sample_gaussian(mean, cov, z), mean + z @ L.T, rtol=1e-6, atol=1e-8,
            name="sample_gaussian(mean, cov, z) (float64)",
            mistakes={"you multiplied the rows of z by L^T instead of L (z @ L instead of z @ L.T)": mean + z @ L,
                      "you used the covariance itself instead of its Cholesky factor": mean + z @ cov,
                      "you took the square root of each entry of the covariance": mean + z @ cov.abs().sqrt().T})
### END HIDDEN TESTS

# %% [markdown]
# ## 3. The mixture: ancestral sampling
#
# Draw the component of each sample with `sample_components`, then sample that component's Gaussian:
# $x_i = \mu_{k_i} + L_{k_i} z_i$. Do it for the whole batch at once (index `means` and the stacked Cholesky
# factors with the (n,) tensor of components; `torch.linalg.cholesky` works on a batch (K, 2, 2)), not with a
# Python loop over samples.

# %% nbgrader={"grade": false, "grade_id": "sample_mixture", "locked": false, "solution": true}
def sample_mixture(weights, means, covs, u, z):
    """Samples of the mixture sum_k w_k N(means[k], covs[k]).

    Args:
        weights: (K,) non-negative weights; means: (K, d); covs: (K, d, d).
        u: (n,) uniform numbers in [0, 1) that choose the components (with `sample_components`).
        z: (n, d) standard normal noise.
    Returns:
        (n, d) tensor of samples.
    """
    ### BEGIN SOLUTION
    k = sample_components(weights, u)  # (n,)
    L = torch.linalg.cholesky(covs)  # (K, d, d)
    return means[k] + torch.einsum("nij,nj->ni", L[k], z)  # (n, d)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "q3_mixture", "locked": true, "points": 2, "solution": false}
weights = torch.tensor([0.5, 0.3, 0.2])
means = torch.tensor([[-3.0, 0.0], [2.0, 2.0], [1.0, -3.0]])
covs = torch.tensor([[[1.0, 0.5], [0.5, 1.0]], [[0.3, 0.0], [0.0, 0.3]], [[0.5, -0.2], [-0.2, 0.2]]])
gen = torch.Generator().manual_seed(0)
u, z = torch.rand(20000, generator=gen), torch.randn(20000, 2, generator=gen)
x = sample_mixture(weights, means, covs, u, z)
check_shape(x, (20000, 2), name="sample_mixture(weights, means, covs, u, z)")
check_finite(x, name="sample_mixture(weights, means, covs, u, z)")
reference = GaussianMixture(weights, means, covs)
check_mean_close(x, reference.mean(), cov=reference.cov(), name="sample_mixture(...) for 20000 draws")
# the error bars of a mixture's sample covariance come from its fourth moments: estimate them from draws of the
# reference itself, never from the samples under test
check_cov_close(x, reference.cov(), reference=reference.sample(50000, generator=torch.Generator().manual_seed(7)),
                name="sample_mixture(...) for 20000 draws")
### BEGIN HIDDEN TESTS
u, z = torch.tensor([0.1, 0.6, 0.9, 0.45]), torch.tensor([[0.5, -1.0], [1.0, 1.0], [-0.3, 0.8], [2.0, 0.0]])
c = torch.cumsum(weights, 0)
k = (u.unsqueeze(-1) >= c).sum(-1).clamp(max=2)
L = torch.linalg.cholesky(covs)
check_close(sample_mixture(weights, means, covs, u, z), means[k] + torch.einsum("nij,nj->ni", L[k], z),
            rtol=1e-5, atol=1e-5, name="sample_mixture(weights, means, covs, u, z) for four given (u, z)",
            mistakes={"every sample used the first component's covariance":
                      means[k] + z @ L[0].T,
                      "the Cholesky factors were transposed (z @ L_k instead of z @ L_k^T)":
                      means[k] + torch.einsum("nji,nj->ni", L[k], z)})
### END HIDDEN TESTS

# %% [markdown]
# Your sampler at work, on the mixture of the tests (if this cell fails, the cells above are not done yet):

# %%
import matplotlib.pyplot as plt

gen = torch.Generator().manual_seed(0)
demo = sample_mixture(torch.tensor([0.5, 0.3, 0.2]), torch.tensor([[-3.0, 0.0], [2.0, 2.0], [1.0, -3.0]]),
                      torch.tensor([[[1.0, 0.5], [0.5, 1.0]], [[0.3, 0.0], [0.0, 0.3]], [[0.5, -0.2], [-0.2, 0.2]]]),
                      torch.rand(2000, generator=gen), torch.randn(2000, 2, generator=gen))
fig, ax = plt.subplots(figsize=(3.2, 3.2), dpi=60)
ax.scatter(demo[:, 0], demo[:, 1], s=2, alpha=0.4)
ax.set_aspect("equal")
ax.set_title("2000 samples of the mixture")
plt.show()

# %% [markdown]
# ## 4. The log-density, with a log-sum-exp
#
# For each point and component, $\log w_k + \log \mathcal N(x; \mu_k, \Sigma_k)$ with
#
# $$ \log \mathcal N(x; \mu, \Sigma) = -\tfrac12 (x - \mu)^\top \Sigma^{-1} (x - \mu) - \tfrac12 \log\det \Sigma
#    - \tfrac d2 \log(2\pi), $$
#
# then $\log p(x) = \log \sum_k \exp(\cdot)$ over $k$. Far from every mode each term is hugely negative and
# `exp` underflows to 0 (so `log(sum(exp(...)))` gives `-inf`): use `torch.logsumexp`. With $\Sigma = L L^\top$,
# the quadratic form is $\lVert L^{-1}(x - \mu) \rVert^2$ (`torch.linalg.solve_triangular`) and
# $\log\det\Sigma = 2 \sum_i \log L_{ii}$.

# %% nbgrader={"grade": false, "grade_id": "log_prob", "locked": false, "solution": true}
def log_prob(x, weights, means, covs):
    """log p(x) of the mixture sum_k w_k N(means[k], covs[k]).

    Args:
        x: (B, d) points; weights: (K,) summing to one; means: (K, d); covs: (K, d, d).
    Returns:
        (B,) tensor of log-densities, finite even far from every mode.
    """
    ### BEGIN SOLUTION
    d = x.shape[-1]
    L = torch.linalg.cholesky(covs)  # (K, d, d)
    residual = x.unsqueeze(1) - means  # (B, K, d)
    white = torch.linalg.solve_triangular(L, residual.unsqueeze(-1), upper=False).squeeze(-1)  # (B, K, d)
    logdet = 2.0 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)  # (K,)
    log_normal = -0.5 * white.square().sum(-1) - 0.5 * logdet - 0.5 * d * math.log(2 * math.pi)  # (B, K)
    return torch.logsumexp(torch.log(weights) + log_normal, dim=-1)  # (B,)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "q4_log_prob", "locked": true, "points": 2, "solution": false}
weights = torch.tensor([0.5, 0.3, 0.2])
means = torch.tensor([[-3.0, 0.0], [2.0, 2.0], [1.0, -3.0]])
covs = torch.tensor([[[1.0, 0.5], [0.5, 1.0]], [[0.3, 0.0], [0.0, 0.3]], [[0.5, -0.2], [-0.2, 0.2]]])
x = torch.tensor([[0.0, 0.0], [-3.0, 0.5], [2.0, 1.5], [1.0, -2.0], [4.0, 4.0]])
got = log_prob(x, weights, means, covs)
check_shape(got, (5,), name="log_prob(x, weights, means, covs)")
check_close(got, GaussianMixture(weights, means, covs).log_prob(x), rtol=1e-4, atol=1e-4,
            name="log_prob(x, weights, means, covs)")
### BEGIN HIDDEN TESTS
far = torch.tensor([[40.0, -40.0], [-60.0, 10.0], [0.0, 100.0]])
got = log_prob(far, weights, means, covs)
check_finite(got, name="log_prob(x, ...) at points far from every mode",
             hint="exp() underflows to 0 there, and log(0) = -inf: use torch.logsumexp over the components.")
check_close(got, GaussianMixture(weights, means, covs).log_prob(far), rtol=1e-4, atol=1e-2,
            name="log_prob(x, ...) at points far from every mode")
gen = torch.Generator().manual_seed(3)
x64 = torch.randn(50, 2, generator=gen, dtype=torch.float64) * 3
w64, m64, c64 = weights.double(), means.double(), covs.double()
check_close(log_prob(x64, w64, m64, c64), GaussianMixture(w64, m64, c64, dtype=torch.float64).log_prob(x64),
            rtol=1e-8, atol=1e-8, name="log_prob(x, ...) in float64 at 50 random points")
### END HIDDEN TESTS

# %% [markdown]
# ## 5. The score
#
# Differentiating the log-sum-exp gives a weighted average of the components' scores,
#
# $$ \nabla_x \log p(x) = -\sum_k r_k(x)\, \Sigma_k^{-1} (x - \mu_k), \qquad
#    r_k(x) = \frac{w_k\, \mathcal N(x; \mu_k, \Sigma_k)}{\sum_j w_j\, \mathcal N(x; \mu_j, \Sigma_j)}, $$
#
# where the responsibilities $r_k$ are a softmax over $k$ of the terms you summed with `logsumexp` above, so
# they stay finite far away too. (Computing the gradient of your `log_prob` with `torch.autograd.grad` is also
# accepted; both must agree with the formula.) This is the quantity score-based models learn, lecture after
# lecture.

# %% nbgrader={"grade": false, "grade_id": "score", "locked": false, "solution": true}
def score(x, weights, means, covs):
    """The score grad_x log p(x) of the mixture sum_k w_k N(means[k], covs[k]).

    Args:
        x: (B, d) points; weights: (K,) summing to one; means: (K, d); covs: (K, d, d).
    Returns:
        (B, d) tensor of scores, finite even far from every mode.
    """
    ### BEGIN SOLUTION
    d = x.shape[-1]
    L = torch.linalg.cholesky(covs)  # (K, d, d)
    residual = x.unsqueeze(1) - means  # (B, K, d)
    white = torch.linalg.solve_triangular(L, residual.unsqueeze(-1), upper=False)  # (B, K, d, 1)
    precision_residual = torch.linalg.solve_triangular(L.transpose(-1, -2), white, upper=True).squeeze(-1)
    logdet = 2.0 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)  # (K,)
    log_joint = torch.log(weights) - 0.5 * white.squeeze(-1).square().sum(-1) - 0.5 * logdet  # (B, K), constants cancel
    resp = torch.softmax(log_joint, dim=-1)  # (B, K)
    return -(resp.unsqueeze(-1) * precision_residual).sum(1)  # (B, d)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "q5_score", "locked": true, "points": 2, "solution": false}
weights = torch.tensor([0.5, 0.3, 0.2])
means = torch.tensor([[-3.0, 0.0], [2.0, 2.0], [1.0, -3.0]])
covs = torch.tensor([[[1.0, 0.5], [0.5, 1.0]], [[0.3, 0.0], [0.0, 0.3]], [[0.5, -0.2], [-0.2, 0.2]]])
x = torch.tensor([[0.0, 0.0], [-3.0, 0.5], [2.0, 1.5], [1.0, -2.0], [4.0, 4.0]])
got = score(x, weights, means, covs)
check_shape(got, (5, 2), name="score(x, weights, means, covs)")
check_close(got, GaussianMixture(weights, means, covs).score(x), rtol=1e-4, atol=1e-4,
            name="score(x, weights, means, covs)")
### BEGIN HIDDEN TESTS
far = torch.tensor([[40.0, -40.0], [-60.0, 10.0], [0.0, 100.0]])
got = score(far, weights, means, covs)
check_finite(got, name="score(x, ...) at points far from every mode",
             hint="Every weight times density underflows to 0 there, so normalising them gives 0/0: compute the "
                  "responsibilities with a softmax of the log-terms.")
check_close(got, GaussianMixture(weights, means, covs).score(far), rtol=1e-4, atol=1e-3,
            name="score(x, ...) at points far from every mode")
gen = torch.Generator().manual_seed(4)
x64 = torch.randn(50, 2, generator=gen, dtype=torch.float64) * 3
w64, m64, c64 = weights.double(), means.double(), covs.double()
check_close(score(x64, w64, m64, c64), GaussianMixture(w64, m64, c64, dtype=torch.float64).score(x64),
            rtol=1e-8, atol=1e-8, name="score(x, ...) in float64 at 50 random points")
### END HIDDEN TESTS

# %% [markdown]
# ## What next
#
# You can now sample a mixture, evaluate its density stably and compute its score: the exact answers that the
# score-matching lectures train networks to approximate. Check your work with
# `.venv/bin/dlcourse grade assignments/a0_sampling.ipynb` and hand in the notebook.
