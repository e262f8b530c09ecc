# ---
# jupyter:
#   dlcourse:
#     assignment: a2_score_sdes
#     blocked:
#     - dlcourse.sde.sdes.SDE.marginal_coeffs
#     - dlcourse.sde.sdes.SDE.perturb
#     - dlcourse.sde.sdes.VPSDE.marginal_prob
#     - dlcourse.sde.sdes.VPSDE.integrated_beta
#     - dlcourse.sde.sdes.VPSDE.drift
#     - dlcourse.sde.sdes.VPSDE.diffusion
#     - dlcourse.sde.sdes.VPSDE.discrete_beta
#     - dlcourse.sde.sdes.VPSDE.discretize
#     - dlcourse.sde.sdes.VPSDE.corrector_alpha
#     - dlcourse.sde.sdes.SDE.ode_drift
#     - dlcourse.sde.sdes.SDE.reverse_drift
#     - dlcourse.sde.sdes.SDE.reverse_discretize
#     - dlcourse.sde.sdes.VPSDE.ancestral
#     - dlcourse.sde.samplers.reverse_diffusion_step
#     - dlcourse.sde.samplers.ancestral_sampling_step
#     - dlcourse.sde.samplers.probability_flow_step
#     - dlcourse.sde.samplers.langevin_corrector_step
#     - dlcourse.sde.samplers.euler_maruyama_step
#     - dlcourse.sde.samplers.pc_sample
#     cell_time_limit: 60
#     time_limit: 30
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
# # Assignment a2 · The VP SDE: its marginal, a predictor, a corrector and the probability flow
#
# Graded, 10 points. After lectures 04–06 you will write, with tensor operations only, the four pieces of a
# score-SDE sampler for the variance-preserving SDE $dx = -\tfrac12\beta(t)\,x\,dt + \sqrt{\beta(t)}\,dw$ with
# $\beta(t) = \beta_{\min} + t(\beta_{\max} - \beta_{\min})$ (Song et al. 2021, eq. 11):
#
# 1. the perturbation kernel's mean and std (eq. 29), 2 points;
# 2. one reverse-diffusion predictor step (eq. 47), 3 points;
# 3. one Langevin corrector step with the signal-to-noise rule (Algorithm 5), 3 points;
# 4. the drift of the probability-flow ODE (eq. 13), 2 points.
#
# **Shapes.** `x` has a batch dimension first and any shape after it: (B, 2) points or (B, C, H, W) images. Per-
# sample numbers such as `t` have shape (B,); reshape them to broadcast against `x` (never assume 2-D).
# The score is given to you as a tensor `score` (the model's output at `x` and `t`), and the noise `z` too, so each
# function is a deterministic function of its arguments.
#
# **How to work.** Fill in each function where it says `raise NotImplementedError(...)`, run the test cell under
# it, and check your work from a terminal in the course folder with
# `.venv/bin/dlcourse grade assignments/a2_score_sdes.ipynb` (see [course/grading.md](../course/grading.md)). The
# instructor adds hidden
# tests (other shapes, float64, a full sampler built from your steps). The package's own SDE code is blocked
# while grading.

# %% tags=["grading-setup"]
import math

import torch

from dlcourse.data.toy2d import GaussianMixture
from dlcourse.grading.checks import check_close, check_finite, check_shape, check_true
from dlcourse.sde import VPSDE

REF = VPSDE()  # the reference, in the grader's own process


def ref_marginal(x0, t):
    return REF.marginal_prob(x0, t)


def ref_predictor(x, score, t, dt, z):
    beta = REF.discrete_beta(t, dt).reshape(-1, *[1] * (x.dim() - 1))
    return (2 - torch.sqrt(1 - beta)) * x + beta * score + torch.sqrt(beta) * z


# %% [markdown]
# ## 1. The perturbation kernel
#
# With $B(t) = \int_0^t \beta(s)\,ds = \beta_{\min} t + \tfrac12 t^2 (\beta_{\max} - \beta_{\min})$, the VP SDE
# started at $x_0$ is Gaussian at time $t$ with
#
# $$ \text{mean} = e^{-B(t)/2}\, x_0, \qquad \text{std} = \sqrt{1 - e^{-B(t)}}. $$
#
# Near $t = 0$, $1 - e^{-B}$ loses digits to cancellation: `torch.expm1` computes $e^{a} - 1$ accurately.

# %% nbgrader={"grade": false, "grade_id": "vp_marginal", "locked": false, "solution": true}
def vp_marginal(x0, t, beta_min=0.1, beta_max=20.0):
    """Mean and std of p_0t(x_t | x_0) for the VP SDE.

    Args:
        x0: (B, ...) clean data.
        t: (B,) times in [0, 1].
    Returns:
        (mean, std): mean like x0, std of shape (B,).
    """
    ### BEGIN SOLUTION
    integral = beta_min * t + 0.5 * t ** 2 * (beta_max - beta_min)  # (B,)
    alpha = torch.exp(-0.5 * integral).reshape(-1, *[1] * (x0.dim() - 1))
    return alpha * x0, torch.sqrt(-torch.expm1(-integral))
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "q1_marginal", "locked": true, "points": 2, "solution": false}
x0 = torch.tensor([[1.0, -2.0], [0.5, 0.5], [3.0, 0.0]])
t = torch.tensor([0.1, 0.5, 1.0])
mean, std = vp_marginal(x0, t)
ref_mean, ref_std = ref_marginal(x0, t)
check_shape(std, (3,), name="the std returned by vp_marginal(x0, t)")
check_close(mean, ref_mean, rtol=1e-5, atol=1e-6, name="the mean returned by vp_marginal(x0, t)",
            mistakes={"you used exp(-B(t)) instead of exp(-B(t)/2) for the mean": torch.exp(
                -(0.1 * t + 0.5 * t ** 2 * 19.9))[:, None] * x0})
check_close(std, ref_std, rtol=1e-5, atol=1e-6, name="the std returned by vp_marginal(x0, t)",
            mistakes={"you returned the variance 1 - exp(-B(t)) instead of its square root": ref_std ** 2,
                      "you returned 1 - exp(-B(t)/2)": -torch.expm1(-0.5 * (0.1 * t + 0.5 * t ** 2 * 19.9))})
x0_img = torch.linspace(-1.0, 1.0, 96).reshape(2, 3, 4, 4)
t_img = torch.tensor([0.3, 0.9])
check_close(vp_marginal(x0_img, t_img)[0], ref_marginal(x0_img, t_img)[0], rtol=1e-5, atol=1e-6,
            name="the mean returned by vp_marginal(x0, t) for images of shape (2, 3, 4, 4)",
            hint="Reshape the (B,) factor to (B, 1, 1, 1) for images: x0.dim() tells you how many 1s.")
### BEGIN HIDDEN TESTS
x_img = torch.randn(4, 1, 3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
t64 = torch.tensor([1e-6, 0.01, 0.3, 0.9], dtype=torch.float64)
mean, std = vp_marginal(x_img, t64)
ref_mean, ref_std = ref_marginal(x_img, t64)
check_close(mean, ref_mean, rtol=1e-10, atol=1e-12, name="the mean of vp_marginal for images (B, 1, 3, 3), float64",
            hint="Reshape the (B,) factor to (B, 1, 1, 1) for images: x0.dim() tells you how many 1s.")
check_close(std, ref_std, rtol=1e-8, atol=1e-14, name="the std of vp_marginal at t = 1e-6 (float64)",
            hint="sqrt(1 - exp(-B)) for tiny B: compute 1 - exp(-B) as -expm1(-B) to avoid cancellation.")
m2, s2 = vp_marginal(x0, t, beta_min=1.0, beta_max=5.0)
check_close(s2, REF.__class__(1.0, 5.0).marginal_prob(x0, t)[1], rtol=1e-5, atol=1e-6,
            name="vp_marginal(x0, t, beta_min=1, beta_max=5)", hint="Use the beta_min and beta_max arguments.")
### END HIDDEN TESTS

# %% [markdown]
# ## 2. The reverse-diffusion predictor
#
# One step from $t$ down to $t - \Delta t$ mirrors one forward step of the VP chain, $x_t = \sqrt{1 - \beta_i}\,
# x_{t-\Delta t} + \sqrt{\beta_i}\, z$, with the exact step variance $\beta_i = 1 - e^{-(B(t) - B(t - \Delta t))}$
# (for small $\Delta t$ this is DDPM's $\beta(t)\Delta t$). Writing the forward step as $x + f_i + G_i z$ with
# $f_i = (\sqrt{1-\beta_i} - 1)\,x$ and $G_i = \sqrt{\beta_i}$, the reverse-diffusion predictor is
#
# $$ x \leftarrow x - f_i + G_i^2\, s_\theta(x, t) + G_i\, z \qquad \text{(Song et al. 2021, eq. 47)}. $$
#
# `dt` is the positive step size $\Delta t$; clamp $t - \Delta t$ at 0.

# %% nbgrader={"grade": false, "grade_id": "reverse_diffusion_step", "locked": false, "solution": true}
def reverse_diffusion_step(x, score, t, dt, z, beta_min=0.1, beta_max=20.0):
    """One reverse-diffusion predictor step of the VP SDE from t to t - dt.

    Args:
        x: (B, ...) current state; score: like x, s(x, t); z: like x, standard normal noise.
        t: (B,) current times; dt: positive float step.
    Returns:
        the new state, like x.
    """
    ### BEGIN SOLUTION
    def integral(s):
        return beta_min * s + 0.5 * s ** 2 * (beta_max - beta_min)

    beta = -torch.expm1(-(integral(t) - integral((t - dt).clamp(min=0))))  # (B,)
    beta = beta.reshape(-1, *[1] * (x.dim() - 1))
    f = (torch.sqrt(1 - beta) - 1) * x
    return x - f + beta * score + torch.sqrt(beta) * z
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "q2_predictor", "locked": true, "points": 3, "solution": false}
gen = torch.Generator().manual_seed(1)
x = torch.randn(5, 2, generator=gen)
score = torch.randn(5, 2, generator=gen)
z = torch.randn(5, 2, generator=gen)
t = torch.tensor([1.0, 0.8, 0.5, 0.2, 0.05])
got = reverse_diffusion_step(x, score, t, 0.01, z)
want = ref_predictor(x, score, t, 0.01, z)
beta = REF.discrete_beta(t, 0.01)[:, None]
check_shape(got, (5, 2), name="reverse_diffusion_step(x, score, t, dt, z)")
check_close(got, want, rtol=1e-5, atol=1e-6, name="reverse_diffusion_step(x, score, t, dt, z)",
            mistakes={"you subtracted the score term instead of adding it (x - f - G² s)":
                      (2 - torch.sqrt(1 - beta)) * x - beta * score + torch.sqrt(beta) * z,
                      "you added f instead of subtracting it (x + f + G² s + G z)":
                      torch.sqrt(1 - beta) * x + beta * score + torch.sqrt(beta) * z,
                      "you used G instead of G² in front of the score":
                      (2 - torch.sqrt(1 - beta)) * x + torch.sqrt(beta) * score + torch.sqrt(beta) * z})
x_img = torch.linspace(-1.0, 1.0, 96).reshape(2, 3, 4, 4)
s_img, z_img, t_img = -x_img, 0.5 * x_img.flip(-1), torch.tensor([0.6, 0.2])
check_close(reverse_diffusion_step(x_img, s_img, t_img, 0.01, z_img), ref_predictor(x_img, s_img, t_img, 0.01, z_img),
            rtol=1e-5, atol=1e-6, name="reverse_diffusion_step for images of shape (2, 3, 4, 4)",
            hint="Reshape the (B,) beta to (B, 1, 1, 1) for images: x.dim() tells you how many 1s.")
### BEGIN HIDDEN TESTS
x = torch.randn(3, 1, 2, 2, generator=gen, dtype=torch.float64)
score = torch.randn(3, 1, 2, 2, generator=gen, dtype=torch.float64)
z = torch.randn(3, 1, 2, 2, generator=gen, dtype=torch.float64)
t = torch.tensor([0.9, 0.4, 0.005], dtype=torch.float64)
check_close(reverse_diffusion_step(x, score, t, 0.01, z), ref_predictor(x, score, t, 0.01, z), rtol=1e-9,
            atol=1e-12, name="reverse_diffusion_step on images (3, 1, 2, 2), float64, with t - dt < 0 for one sample",
            hint="Broadcast the (B,) beta over every non-batch dimension, and clamp t - dt at 0.")
# the package's sampler with the student's step plugged in recovers a mixture's weights (exact score, 100 steps)
from dlcourse.sde import pc_sample

mix = GaussianMixture([0.8, 0.2], [[2.0, 2.0], [-2.0, -2.0]], 0.25)
xs = pc_sample(REF, lambda x, t: mix.score(x, *REF.marginal_coeffs(t)), (2000, 2), corrector="none", n_steps=100,
               predictor=lambda sde, x, s, t, dt, z: reverse_diffusion_step(x, s, t, dt, z),
               generator=torch.Generator().manual_seed(2)).x
check_finite(xs, name="2000 samples from 100 of your predictor steps")
weight = float((xs.sum(1) > 0).float().mean())
check_true(abs(weight - 0.8) < 0.05, f"100 of your predictor steps with the exact score of 0.8 N((2,2), ¼I) + "
           f"0.2 N((-2,-2), ¼I) put {weight:.3f} of the samples in the big mode instead of 0.8 ± 0.05.")
### END HIDDEN TESTS

# %% [markdown]
# ## 3. The Langevin corrector
#
# At a fixed $t$, run one Langevin step towards $p_t$ with the step size from the signal-to-noise rule
# (Algorithm 5, with $\alpha = 1 - \beta_i$ given to you):
#
# $$ \epsilon = 2\alpha \left(\frac{r\,\overline{\lVert z\rVert}}{\overline{\lVert s\rVert}}\right)^2, \qquad
# x \leftarrow x + \epsilon\, s + \sqrt{2\epsilon}\, z, $$
#
# where $\overline{\lVert \cdot \rVert}$ is the Euclidean norm of each sample (over all its non-batch dimensions)
# **averaged over the batch**, as in the paper's algorithm. So $\epsilon$ is one number per batch (times $\alpha$).

# %% nbgrader={"grade": false, "grade_id": "langevin_corrector_step", "locked": false, "solution": true}
def langevin_corrector_step(x, score, z, snr, alpha):
    """One Langevin corrector step with the signal-to-noise step-size rule.

    Args:
        x, score, z: (B, ...) state, score s(x, t) and standard normal noise.
        snr: the target signal-to-noise ratio r (float).
        alpha: (B,) the factor alpha = 1 - beta_i.
    Returns:
        the new state, like x.
    """
    ### BEGIN SOLUTION
    B = x.shape[0]
    grad_norm = score.reshape(B, -1).norm(dim=1).mean()
    noise_norm = z.reshape(B, -1).norm(dim=1).mean()
    eps = (2 * alpha * (snr * noise_norm / grad_norm) ** 2).reshape(-1, *[1] * (x.dim() - 1))
    return x + eps * score + torch.sqrt(2 * eps) * z
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "q3_corrector", "locked": true, "points": 3, "solution": false}
from dlcourse.sde.samplers import langevin_corrector_step as _ref_corrector

gen = torch.Generator().manual_seed(3)
x = torch.randn(6, 2, generator=gen)
score = 3 * torch.randn(6, 2, generator=gen)
z = torch.randn(6, 2, generator=gen)
t = torch.full((6,), 0.5)
alpha = REF.corrector_alpha(t, 0.01)
want = _ref_corrector(REF, x, score, t, 0.01, 0.16, z)
got = langevin_corrector_step(x, score, z, 0.16, alpha)
eps = 2 * alpha[:, None] * (0.16 * z.norm(dim=1).mean() / score.norm(dim=1).mean()) ** 2  # (6, 1)
eps_ps = 2 * alpha[:, None] * (0.16 * z.norm(dim=1, keepdim=True) / score.norm(dim=1, keepdim=True)) ** 2
check_close(got, want, rtol=1e-5, atol=1e-6, name="langevin_corrector_step(x, score, z, snr=0.16, alpha)",
            mistakes={"you used each sample's own norms instead of norms averaged over the batch":
                      x + eps_ps * score + torch.sqrt(2 * eps_ps) * z,
                      "your noise term is sqrt(eps) z instead of sqrt(2 eps) z": x + eps * score + eps.sqrt() * z,
                      "your step size lacks the factor 2 (eps = alpha (r |z| / |s|)^2)":
                      x + eps / 2 * score + eps.sqrt() * z})
x_img = torch.linspace(-1.0, 1.0, 96).reshape(2, 3, 4, 4)
s_img, z_img, t_img = -2 * x_img, x_img.flip(-1), torch.tensor([0.6, 0.2])
a_img = REF.corrector_alpha(t_img, 0.01)
check_close(langevin_corrector_step(x_img, s_img, z_img, 0.16, a_img),
            _ref_corrector(REF, x_img, s_img, t_img, 0.01, 0.16, z_img), rtol=1e-5, atol=1e-6,
            name="langevin_corrector_step for images of shape (2, 3, 4, 4)",
            hint="Take each sample's norm over all its non-batch dimensions (reshape to (B, -1)).")
### BEGIN HIDDEN TESTS
x = torch.randn(4, 1, 3, 3, generator=gen, dtype=torch.float64)
score = torch.randn(4, 1, 3, 3, generator=gen, dtype=torch.float64)
z = torch.randn(4, 1, 3, 3, generator=gen, dtype=torch.float64)
t = torch.tensor([0.9, 0.5, 0.2, 0.01], dtype=torch.float64)
alpha = REF.corrector_alpha(t, 0.002)
check_close(langevin_corrector_step(x, score, z, 0.05, alpha),
            _ref_corrector(REF, x, score, t, 0.002, 0.05, z), rtol=1e-9, atol=1e-12,
            name="langevin_corrector_step on images (4, 1, 3, 3), float64, with per-sample alpha",
            hint="Take the norm of each sample over all its non-batch dimensions (reshape to (B, -1)), average "
                 "over the batch, and broadcast the (B,) step over the rest.")
### END HIDDEN TESTS

# %% [markdown]
# ## 4. The probability-flow drift
#
# The ODE with the same marginals as the SDE (Song et al. 2021, eq. 13) has drift
# $\tilde f(x, t) = f(x, t) - \tfrac12 g(t)^2\, s_\theta(x, t)$; for VP, $f = -\tfrac12\beta(t)\,x$ and
# $g(t)^2 = \beta(t)$.

# %% nbgrader={"grade": false, "grade_id": "probability_flow_drift", "locked": false, "solution": true}
def probability_flow_drift(x, score, t, beta_min=0.1, beta_max=20.0):
    """dx/dt of the VP probability-flow ODE.

    Args:
        x, score: (B, ...) state and s(x, t); t: (B,) times.
    Returns:
        like x.
    """
    ### BEGIN SOLUTION
    beta = (beta_min + t * (beta_max - beta_min)).reshape(-1, *[1] * (x.dim() - 1))
    return -0.5 * beta * x - 0.5 * beta * score
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "q4_flow", "locked": true, "points": 2, "solution": false}
gen = torch.Generator().manual_seed(4)
x = torch.randn(5, 2, generator=gen)
score = torch.randn(5, 2, generator=gen)
t = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])
want = REF.ode_drift(x, t, score)
b = (0.1 + t * 19.9)[:, None]
check_close(probability_flow_drift(x, score, t), want, rtol=1e-5, atol=1e-6,
            name="probability_flow_drift(x, score, t)",
            mistakes={"you used the reverse-SDE drift f - g² s (the ODE has half of it: f - ½ g² s)":
                      -0.5 * b * x - b * score,
                      "you added the score term instead of subtracting it": -0.5 * b * x + 0.5 * b * score,
                      "you used g(t) instead of g(t)² = beta(t)": -0.5 * b * x - 0.5 * b.sqrt() * score})
x_img = torch.linspace(-1.0, 1.0, 96).reshape(2, 3, 4, 4)
s_img, t_img = -x_img, torch.tensor([0.6, 0.2])
check_close(probability_flow_drift(x_img, s_img, t_img), REF.ode_drift(x_img, t_img, s_img), rtol=1e-5, atol=1e-6,
            name="probability_flow_drift for images of shape (2, 3, 4, 4)",
            hint="Reshape the (B,) beta to (B, 1, 1, 1) for images: x.dim() tells you how many 1s.")
### BEGIN HIDDEN TESTS
x = torch.randn(2, 3, 2, 2, generator=gen, dtype=torch.float64)
score = torch.randn(2, 3, 2, 2, generator=gen, dtype=torch.float64)
t = torch.tensor([0.3, 0.7], dtype=torch.float64)
check_close(probability_flow_drift(x, score, t), REF.ode_drift(x, t, score), rtol=1e-10,
            atol=1e-12, name="probability_flow_drift on images (2, 3, 2, 2), float64")
check_close(probability_flow_drift(x, score, t, beta_min=1.0, beta_max=3.0),
            VPSDE(1.0, 3.0).ode_drift(x, t, score), rtol=1e-10, atol=1e-12,
            name="probability_flow_drift with beta_min=1, beta_max=3", hint="Use the beta_min and beta_max arguments.")
### END HIDDEN TESTS

# %% [markdown]
# ## Try it (not graded)
#
# With your predictor and the exact score of a mixture, sample and look at the result. Your step takes the same
# arguments as the package's steps, `dlcourse.sde.reverse_diffusion_step(sde, x, score, t, dt, z)`, minus the SDE,
# so outside grading it plugs straight into the package's loop:
# `pc_sample(vp, score_fn, (1000, 2), predictor=lambda sde, *args: reverse_diffusion_step(*args), corrector="none")`
# (the grader's hidden test does exactly that). Here is the loop written out:

# %%
mix = GaussianMixture([0.8, 0.2], [[2.0, 2.0], [-2.0, -2.0]], 0.25)
vp = VPSDE()
gen = torch.Generator().manual_seed(0)
xs = torch.randn(1000, 2, generator=gen)
for tv in torch.linspace(1.0, 1e-3, 100):
    tb = tv.expand(1000)
    alpha_t = torch.exp(-0.5 * (0.1 * tb + 0.5 * tb ** 2 * 19.9))
    std_t = torch.sqrt(1 - alpha_t ** 2)
    xs = reverse_diffusion_step(xs, mix.score(xs, alpha_t, std_t), tb, 1 / 100, torch.randn(1000, 2, generator=gen))
print(f"fraction in the big mode: {(xs.sum(1) > 0).float().mean():.3f} (the data has 0.8)")
