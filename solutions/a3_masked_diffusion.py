# ---
# jupyter:
#   dlcourse:
#     assignment: a3_masked_diffusion
#     blocked:
#     - dlcourse.discrete.schedules.Schedule.alpha
#     - dlcourse.discrete.schedules.LogLinearSchedule.sigma_bar
#     - dlcourse.discrete.schedules.LogLinearSchedule.sigma
#     - dlcourse.discrete.graphs.Absorbing.transition
#     - dlcourse.discrete.graphs.Absorbing.transp_transition
#     - dlcourse.discrete.graphs.Absorbing.rate_into
#     - dlcourse.discrete.graphs.Absorbing.sample_transition
#     - dlcourse.discrete.losses.subs_log_probs
#     - dlcourse.discrete.losses.mdlm_weight
#     - dlcourse.discrete.losses.mdlm_nelbo_integrand
#     - dlcourse.discrete.losses.mdlm_discrete_term
#     - dlcourse.discrete.losses.mdlm_nelbo_estimate
#     - dlcourse.discrete.losses.mdlm_loss
#     - dlcourse.discrete.losses.score_entropy
#     - dlcourse.discrete.losses.denoising_score_entropy
#     - dlcourse.discrete.losses.sedd_nelbo_estimate
#     - dlcourse.discrete.losses.sedd_loss
#     - dlcourse.discrete.samplers.sample_categorical
#     - dlcourse.discrete.samplers.mdlm_step
#     - dlcourse.discrete.samplers.mdlm_sample
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
# # Assignment a3 · Masked diffusion: masking, the MDLM bound, one sampling step and score entropy
#
# Graded, 10 points. After the lectures on discrete diffusion you will write, with tensor operations only, the four
# pieces of a masked (absorbing-state) diffusion language model:
#
# 1. the forward masking process with the log-linear schedule (Sahoo et al. 2024, "Simple and Effective Masked
#    Diffusion Language Models" (MDLM), Section 3.1), 2 points;
# 2. MDLM's continuous-time negative ELBO for given denoiser probabilities (MDLM eq. 10–11), 3 points;
# 3. one ancestral sampling step from $t$ to $s < t$ (MDLM eq. 7 with $x = x_\theta$, Section 3.3), 3 points;
# 4. SEDD's denoising score entropy for the absorbing graph (Lou, Meng & Ermon 2024, "Discrete Diffusion Modeling
#    by Estimating the Ratios of the Data Distribution", Theorem 3.4 with the weights of Theorem 3.6), 2 points.
#
# **Tokens.** Text is a (B, L) tensor of token ids: the 27 characters of text8 are ids 0–26 and the mask is
# `MASK_ID = 27` (`dlcourse.data.text`). A denoiser outputs, at every position, a distribution over the $N$ real
# tokens: a (B, L, N) tensor. Per-sequence numbers (a time, $\alpha_t$) have shape (B,).
#
# **How to work.** Fill in each function where it says `raise NotImplementedError(...)`, run the test cell under
# it, and check your work from a terminal in the course folder with
# `.venv/bin/dlcourse grade assignments/a3_masked_diffusion.ipynb` (see [course/grading.md](../course/grading.md)).
# Every function takes the randomness it needs (uniform numbers `u`) as an argument, so its result can be checked
# exactly. The instructor adds hidden tests (other shapes, float64, times near 0 and 1, statistical checks). The
# package's own masking, losses and samplers (`dlcourse.discrete`) are blocked while grading.

# %%
import torch

from dlcourse.data.text import MASK_ID, VOCAB_SIZE

print(f"{VOCAB_SIZE} real tokens (ids 0..{VOCAB_SIZE - 1}); the mask is id {MASK_ID}")

# %% tags=["grading-setup"]
import itertools
import math

import numpy as np
import torch

from dlcourse.data.text import MASK_ID
from dlcourse.discrete.graphs import Absorbing
from dlcourse.discrete.losses import denoising_score_entropy, mdlm_nelbo_integrand
from dlcourse.discrete.markov import TinyDistribution
from dlcourse.discrete.samplers import mdlm_step
from dlcourse.discrete.schedules import GeometricSchedule, LogLinearSchedule
from dlcourse.grading.checks import (check_close, check_dtype, check_equal, check_finite, check_frequencies,
                                     check_shape, check_true)


def ref_mask(x0, t, u, eps=1e-3):
    p_mask = ((1 - eps) * t).reshape(-1, 1)  # 1 - alpha_t, (B, 1)
    return torch.where(u < p_mask, torch.full_like(x0, MASK_ID), x0)


def ref_step(x_t, probs, alpha_t, alpha_s, u, remask=False, swap=False, stay_first=False):
    """The ancestral step written out (and its usual bugs), by inverse CDF with the given u."""
    a_t, a_s = alpha_t.reshape(-1, 1, 1), alpha_s.reshape(-1, 1, 1)
    unmask, stay = (a_s - a_t) / (1 - a_t), (1 - a_s) / (1 - a_t)
    if swap:
        unmask, stay = stay, unmask
    w = probs.double() * unmask.double()
    stay = stay.double().expand(*probs.shape[:-1], 1)
    N = probs.shape[-1]
    w = torch.cat([stay, w], -1) if stay_first else torch.cat([w, stay], -1)  # (B, L, N + 1)
    cdf = w.cumsum(-1)
    k = (cdf < (u.double() * cdf[..., -1]).unsqueeze(-1)).sum(-1).clamp(max=N)
    if stay_first:
        draw = torch.where(k == 0, torch.full_like(k, MASK_ID), k - 1)
    else:
        draw = torch.where(k == N, torch.full_like(k, MASK_ID), k)
    return draw if remask else torch.where(x_t == MASK_ID, draw, x_t)


def masked_versions(x, mask_id=MASK_ID):
    """All 2^L masked copies of one sequence x (L,), (2^L, L), and their numbers of masks (2^L,)."""
    masks = torch.tensor(list(itertools.product([0, 1], repeat=len(x))), dtype=torch.bool)
    return torch.where(masks, torch.full_like(x, mask_id), x.expand(len(masks), len(x))), masks.sum(-1)


# %% [markdown]
# ## 1. The forward process: masking
#
# The absorbing forward process masks every token independently: at time $t \in [0, 1]$ a token is still clean
# with probability $\alpha_t$ and has become the mask with probability $1 - \alpha_t$ (MDLM Section 3.1,
# $q(z_t \mid x) = \mathrm{Cat}(z_t;\ \alpha_t x + (1 - \alpha_t) m)$). With the log-linear schedule
# (SEDD Section 5.1; MDLM's linear $\alpha_t$)
#
# $$ \alpha_t = 1 - (1 - \varepsilon)\, t , $$
#
# so almost every token is masked at $t = 1$ (all of them when $\varepsilon = 0$). The name comes from the total
# noise $\bar\sigma(t) = -\log \alpha_t = -\log(1 - (1 - \varepsilon) t)$, the logarithm of a linear function of
# $t$: $\alpha_t$ itself is linear. Use the uniform numbers `u`:
# **the token at $(b, \ell)$ is masked exactly when $u_{b\ell} < 1 - \alpha_{t_b}$** (so $u$ near 0 masks first).

# %% nbgrader={"grade": false, "grade_id": "mask_tokens", "locked": false, "solution": true}
def mask_tokens(x0, t, u, eps=1e-3):
    """Sample z_t ~ q(z_t | x0) of the absorbing process with alpha_t = 1 - (1 - eps) t.

    Args:
        x0: (B, L) int64 clean token ids.
        t: (B,) times in [0, 1].
        u: (B, L) uniform numbers in [0, 1).
        eps: the schedule's epsilon.
    Returns:
        (B, L) int64: MASK_ID where u < 1 - alpha_t, x0 elsewhere.
    """
    ### BEGIN SOLUTION
    alpha_t = 1 - (1 - eps) * t  # (B,)
    masked = u < (1 - alpha_t).unsqueeze(-1)  # (B, L): masked with probability 1 - alpha_t
    return torch.where(masked, torch.full_like(x0, MASK_ID), x0)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "q1_masking", "locked": true, "points": 2, "solution": false}
x0 = torch.tensor([[0, 5, 26, 3], [7, 7, 1, 0], [12, 4, 9, 20]])
t = torch.tensor([0.25, 0.5, 0.9])
u = torch.tensor([[0.1, 0.3, 0.2, 0.8], [0.45, 0.55, 0.05, 0.95], [0.85, 0.95, 0.1, 0.6]])
got = mask_tokens(x0, t, u)
check_shape(got, (3, 4), name="mask_tokens(x0, t, u)")
check_dtype(got, torch.int64, name="mask_tokens(x0, t, u)")
alpha = (1 - 0.999 * t)[:, None]
check_equal(got, ref_mask(x0, t, u), name="mask_tokens(x0, t, u)",
            mistakes={"you masked with probability alpha_t (u < alpha_t): alpha_t is the probability to stay clean, "
                      "mask where u < 1 - alpha_t": torch.where(u < alpha, MASK_ID, x0),
                      "you masked where u > alpha_t: the same probability, but the convention here is "
                      "u < 1 - alpha_t": torch.where(u > alpha, MASK_ID, x0),
                      "you masked where u >= 1 - alpha_t (the clean tokens instead of the masked ones)":
                      torch.where(u >= 1 - alpha, MASK_ID, x0)})
### BEGIN HIDDEN TESTS
gen = torch.Generator().manual_seed(10)
x0 = torch.randint(27, (6, 50), generator=gen)
u = torch.rand(6, 50, generator=gen, dtype=torch.float64)
t = torch.tensor([0.0, 1e-6, 0.3, 0.7, 1 - 1e-6, 1.0], dtype=torch.float64)
got = mask_tokens(x0, t, u)
check_equal(got, ref_mask(x0, t, u), name="mask_tokens on (6, 50) tokens with float64 t = 0, 1e-6, 0.3, 0.7, "
            "1 - 1e-6, 1", hint="At t = 0 nothing is masked; at t = 1 each token is masked w.p. 1 - eps.")
check_equal(mask_tokens(x0, t, u, eps=0.0)[-1], torch.full((50,), MASK_ID),
            name="mask_tokens(x0, t=1, u, eps=0)", hint="With eps = 0, alpha_1 = 0: every token is masked at t = 1.")
check_equal(mask_tokens(x0, t, u, eps=0.4), ref_mask(x0, t, u, eps=0.4), name="mask_tokens(x0, t, u, eps=0.4)",
            hint="Use the eps argument: alpha_t = 1 - (1 - eps) t.")
# the masking rate, statistically: 40000 tokens at t = 0.6 are masked w.p. 1 - alpha = 0.5994
x0 = torch.randint(27, (200, 200), generator=gen)
got = mask_tokens(x0, torch.full((200,), 0.6), torch.rand(200, 200, generator=gen))
check_true(bool(((got == MASK_ID) | (got == x0)).all()),
           "mask_tokens must return, at every position, either MASK_ID or the clean token.")
check_frequencies((got == MASK_ID).long(), [1 - 0.6 * 0.999, 0.6 * 0.999],
                  name="the masked (1) / clean (0) indicators of mask_tokens on 200 x 200 tokens at t = 0.6")
### END HIDDEN TESTS

# %% [markdown]
# ## 2. The MDLM negative ELBO
#
# A denoiser $x_\theta(z_t)$ predicts, at every position $\ell$, a distribution over the clean token. In MDLM's
# SUBS parameterisation (Section 3.2.3) an unmasked position keeps its token ("carry-over unmasking"), so it costs
# nothing, and the continuous-time bound on $-\log p_\theta(x)$ becomes (MDLM eq. 10–11)
#
# $$ \mathcal L_{\text{NELBO}} = \mathbb E_{t \sim U[0,1]}\, \mathbb E_{q(z_t \mid x)}
#    \left[\ \frac{\alpha'_t}{1 - \alpha_t} \sum_{\ell\,:\ z_t^\ell = m} \log \langle x_\theta^\ell(z_t), x^\ell \rangle
#    \right]. $$
#
# Write the quantity in the brackets, for each sequence. Note the signs: $\alpha'_t < 0$ and
# $\log\langle\cdot\rangle \le 0$, so the integrand is a non-negative weight $-\alpha'_t / (1 - \alpha_t)$ times
# the cross-entropy $-\log \langle x_\theta^\ell, x^\ell\rangle$ **of the masked positions only**. `log_probs` is
# the network's plain log-softmax (it has no carry-over applied), so leaving out the unmasked positions is up to
# you. The schedule is any: you get $\alpha_t$ and its derivative $\alpha'_t$ (for the log-linear schedule the
# weight is $1/t$).

# %% nbgrader={"grade": false, "grade_id": "mdlm_nelbo", "locked": false, "solution": true}
def mdlm_nelbo(log_probs, x0, x_t, alpha_t, dalpha_t):
    """The integrand of MDLM's continuous-time NELBO at one time t, per sequence.

    Args:
        log_probs: (B, L, N) log x_theta(z_t): log-probabilities of the clean token at each position.
        x0: (B, L) clean tokens (ids < N); x_t: (B, L) noisy tokens (MASK_ID where masked).
        alpha_t: (B,) alpha at t; dalpha_t: (B,) its derivative d alpha / dt (negative).
    Returns:
        (B,): -alpha'_t / (1 - alpha_t) * (sum over masked positions of -log p(x0 at that position)).
    """
    ### BEGIN SOLUTION
    nll = -log_probs.gather(-1, x0.unsqueeze(-1)).squeeze(-1)  # (B, L)
    nll = torch.where(x_t == MASK_ID, nll, torch.zeros_like(nll))
    return -dalpha_t / (1 - alpha_t) * nll.sum(-1)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "q2_nelbo", "locked": true, "points": 3, "solution": false}
gen = torch.Generator().manual_seed(2)
log_probs = torch.log_softmax(torch.randn(4, 6, 27, generator=gen), -1)
x0 = torch.randint(27, (4, 6), generator=gen)
t = torch.tensor([0.2, 0.5, 0.7, 0.95])
sch = LogLinearSchedule(1e-3)
sigma, sigma_bar = sch(t)
x_t = ref_mask(x0, t, torch.rand(4, 6, generator=gen))
alpha, dalpha = 1 - 0.999 * t, torch.full_like(t, -0.999)
got = mdlm_nelbo(log_probs, x0, x_t, alpha, dalpha)
want = mdlm_nelbo_integrand(log_probs, x0, x_t, sigma, sigma_bar, MASK_ID)
nll = -log_probs.gather(-1, x0[..., None])[..., 0]
check_shape(got, (4,), name="mdlm_nelbo(log_probs, x0, x_t, alpha_t, dalpha_t)")
check_close(got, want, rtol=1e-4, atol=1e-5, name="mdlm_nelbo(log_probs, x0, x_t, alpha_t, dalpha_t)",
            mistakes={"you counted the unmasked positions too (only masked positions enter the loss: SUBS carries "
                      "the unmasked ones over at no cost)": 1 / t * nll.sum(-1),
                      "the weight has the wrong sign: alpha'_t < 0, so the weight is -alpha'_t / (1 - alpha_t) > 0":
                      -want,
                      "you averaged over the masked positions instead of summing":
                      want / (x_t == MASK_ID).sum(-1).clamp(min=1),
                      "you used the weight -alpha'_t / alpha_t instead of -alpha'_t / (1 - alpha_t)":
                      want * (1 - alpha) / alpha})
### BEGIN HIDDEN TESTS
# float64, another schedule (geometric: alpha = exp(-sigma_bar), alpha' = -sigma alpha), t near 0 and 1
gen = torch.Generator().manual_seed(20)
B, L, N = 6, 9, 5
log_probs = torch.log_softmax(torch.randn(B, L, N, generator=gen, dtype=torch.float64), -1)
x0 = torch.randint(N, (B, L), generator=gen)
t = torch.tensor([1e-4, 0.01, 0.3, 0.6, 0.9, 1 - 1e-4], dtype=torch.float64)
x_t = ref_mask(x0, t, torch.rand(B, L, generator=gen, dtype=torch.float64))
x_t[0, 0] = MASK_ID  # at least one masked position at t = 1e-4
for sch in (LogLinearSchedule(1e-3), GeometricSchedule(1e-3, 5.0)):
    sigma, sigma_bar = sch(t)
    alpha = torch.exp(-sigma_bar)
    check_close(mdlm_nelbo(log_probs, x0, x_t, alpha, -sigma * alpha),
                mdlm_nelbo_integrand(log_probs, x0, x_t, sigma, sigma_bar, MASK_ID), rtol=1e-8, atol=1e-10,
                name=f"mdlm_nelbo in float64 with (B, L, N) = (6, 9, 5), the {type(sch).__name__} and t from 1e-4 "
                     "to 1 - 1e-4", hint="Use the alpha_t and dalpha_t you are given (any schedule).")
# with the exact denoiser of an enumerable distribution the bound is exactly -log p(x): integrate over t with
# Gauss-Legendre (exact here: the integrand times q(z_t | x) is a polynomial in t) and sum over all masks
exact = TinyDistribution.random(3, 4, seed=2)
gl_t, gl_w = np.polynomial.legendre.leggauss(4)  # Gauss-Legendre on [-1, 1]
for i in [0, 40, 80]:
    x = exact.seqs[i]
    z, k = masked_versions(x)  # (16, 4)
    lp = torch.log(exact.denoiser(z, MASK_ID))  # (16, 4, 3)
    tt = torch.tensor((gl_t + 1) / 2, dtype=torch.float64).repeat_interleave(len(z))  # (64,)
    integrand = mdlm_nelbo(lp.repeat(4, 1, 1), x.expand(64, 4), z.repeat(4, 1), 1 - tt, -torch.ones_like(tt))
    check_finite(integrand, name="mdlm_nelbo with the exact denoiser of a tiny distribution (log 0 = -inf "
                 "at the tokens it rules out)", hint="Gather the clean token's log-probability before masking.")
    q = tt ** k.repeat(4) * (1 - tt) ** (4 - k.repeat(4))  # q(z_t | x) for alpha_t = 1 - t
    nelbo = float((torch.tensor(gl_w).repeat_interleave(len(z)) / 2 * q * integrand).sum())
    check_close(nelbo, -math.log(exact.probs[i]), rtol=1e-9, atol=1e-9,
                name=f"the integral over t of E_q[mdlm_nelbo] with the exact denoiser, for sequence {x.tolist()} "
                     "(it must equal -log p(x))")
### END HIDDEN TESTS

# %% [markdown]
# ## 3. One ancestral sampling step
#
# MDLM samples by running the reverse chain from all-mask ($t = 1$) to clean ($t = 0$); one step from $t$ to
# $s < t$ draws $z_s \sim q(z_s \mid z_t, x = x_\theta(z_t))$, which with SUBS is, at each position
# (MDLM eq. 7 and Section 3.3):
#
# - if $z_t^\ell$ is **not** masked: $z_s^\ell = z_t^\ell$ (a decoded token is never re-masked);
# - if $z_t^\ell = m$: $z_s^\ell = v$ with probability $\dfrac{\alpha_s - \alpha_t}{1 - \alpha_t}\,
#   x_\theta^\ell(z_t)_v$ for each token $v$, and $z_s^\ell = m$ (stays masked) with probability
#   $\dfrac{1 - \alpha_s}{1 - \alpha_t}$.
#
# Draw from these $N + 1$ outcomes, **ordered tokens $0..N-1$ first and "stay masked" last**, by the inverse CDF
# with the given $u$: with weights $w_0, \dots, w_N$ and cumulative sums $c_k = w_0 + \dots + w_k$, the outcome
# is the number of $c_k$ that are $< u \cdot c_N$ (as `dlcourse.discrete.samplers.sample_categorical` does).
# Outcome $N$ is written as `MASK_ID`.

# %% nbgrader={"grade": false, "grade_id": "ancestral_step", "locked": false, "solution": true}
def ancestral_step(x_t, probs, alpha_t, alpha_s, u):
    """One MDLM ancestral step z_t -> z_s.

    Args:
        x_t: (B, L) int64 tokens at time t (MASK_ID where masked).
        probs: (B, L, N) the denoiser's probabilities x_theta(z_t) (each row sums to 1).
        alpha_t, alpha_s: (B,) alpha at t and at s < t (alpha_s > alpha_t).
        u: (B, L) uniform numbers in [0, 1).
    Returns:
        (B, L) int64 tokens at time s.
    """
    ### BEGIN SOLUTION
    a_t, a_s = alpha_t.reshape(-1, 1, 1), alpha_s.reshape(-1, 1, 1)
    w_tokens = probs * (a_s - a_t) / (1 - a_t)  # (B, L, N)
    w_stay = ((1 - a_s) / (1 - a_t)).expand(*probs.shape[:-1], 1)  # (B, L, 1)
    cdf = torch.cat([w_tokens, w_stay], dim=-1).cumsum(-1)  # (B, L, N + 1)
    k = (cdf < (u * cdf[..., -1]).unsqueeze(-1)).sum(-1).clamp(max=probs.shape[-1])  # (B, L)
    draw = torch.where(k == probs.shape[-1], torch.full_like(k, MASK_ID), k)
    return torch.where(x_t == MASK_ID, draw, x_t)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "q3_step", "locked": true, "points": 3, "solution": false}
gen = torch.Generator().manual_seed(3)
B, L, N = 4, 8, 27
x_t = ref_mask(torch.randint(N, (B, L), generator=gen), torch.tensor([1.0, 0.8, 0.5, 0.3]),
               torch.rand(B, L, generator=gen), eps=0.0)
probs = torch.softmax(2 * torch.randn(B, L, N, generator=gen, dtype=torch.float64), -1)
alpha_t, alpha_s = torch.tensor([0.0, 0.2, 0.5, 0.7]), torch.tensor([0.3, 0.5, 0.6, 0.9])
state = gen.get_state()  # u is what the package's sampler draws from this generator
u = torch.rand(B, L, generator=gen, dtype=torch.float64)
gen.set_state(state)
want = mdlm_step(x_t, torch.log(probs), alpha_s.double(), alpha_t.double(), MASK_ID, gen)
got = ancestral_step(x_t, probs, alpha_t.double(), alpha_s.double(), u)
check_shape(got, (B, L), name="ancestral_step(x_t, probs, alpha_t, alpha_s, u)")
check_dtype(got, torch.int64, name="ancestral_step(x_t, probs, alpha_t, alpha_s, u)")
a_t, a_s = alpha_t.double(), alpha_s.double()
check_equal(got, want, name="ancestral_step(x_t, probs, alpha_t, alpha_s, u)",
            mistakes={"you re-masked or changed tokens that were already decoded (an unmasked z_t must stay as it "
                      "is)": ref_step(x_t, probs, a_t, a_s, u, remask=True),
                      "you swapped the two probabilities: unmask with (alpha_s - alpha_t)/(1 - alpha_t) times "
                      "x_theta, stay masked with (1 - alpha_s)/(1 - alpha_t)": ref_step(x_t, probs, a_t, a_s, u,
                                                                                         swap=True),
                      "you put the 'stay masked' outcome first; it comes last, after the N tokens":
                      ref_step(x_t, probs, a_t, a_s, u, stay_first=True)})
# a vocabulary of N = 5 tokens: "stay masked" (outcome N) is still written MASK_ID = 27, not 5
gen = torch.Generator().manual_seed(31)
x_t = ref_mask(torch.randint(5, (3, 6), generator=gen), torch.tensor([1.0, 0.6, 0.3]), torch.rand(3, 6, generator=gen),
               eps=0.0)
probs = torch.softmax(torch.randn(3, 6, 5, generator=gen, dtype=torch.float64), -1)
alpha_t, alpha_s = torch.tensor([0.0, 0.4, 0.7], dtype=torch.float64), torch.tensor([0.3, 0.6, 0.8], dtype=torch.float64)
u = torch.rand(3, 6, generator=gen, dtype=torch.float64)
want = ref_step(x_t, probs, alpha_t, alpha_s, u)
check_equal(ancestral_step(x_t, probs, alpha_t, alpha_s, u), want,
            name="ancestral_step with N = 5 tokens (the mask is still MASK_ID = 27)",
            mistakes={"you wrote outcome N (= 5 here) for 'stay masked'; it must be MASK_ID whatever N is":
                      torch.where(want == MASK_ID, torch.full_like(want, 5), want)})
### BEGIN HIDDEN TESTS
# float64 and float32, another vocabulary, a step to s = 0 (alpha_s = 1) unmasks everything
gen = torch.Generator().manual_seed(30)
B, L, N = 5, 7, 3
x_t = ref_mask(torch.randint(N, (B, L), generator=gen), torch.tensor([1.0, 0.9, 0.5, 0.2, 0.05]),
               torch.rand(B, L, generator=gen), eps=0.0)
probs = torch.softmax(torch.randn(B, L, N, generator=gen, dtype=torch.float64), -1)
alpha_t = torch.tensor([0.0, 0.1, 0.5, 0.8, 0.95], dtype=torch.float64)
alpha_s = torch.tensor([0.01, 0.3, 0.52, 1.0, 1.0], dtype=torch.float64)
u = torch.rand(B, L, generator=gen, dtype=torch.float64)
got = ancestral_step(x_t, probs, alpha_t, alpha_s, u)
check_equal(got, ref_step(x_t, probs, alpha_t, alpha_s, u), name="ancestral_step with N = 3 tokens, float64",
            hint="The mask is MASK_ID whatever N is; outcome N (stay masked) becomes MASK_ID.")
check_true(bool((got[3:] != MASK_ID).all()), "ancestral_step to s = 0 (alpha_s = 1) left masks behind: at s = 0 "
           "the probability to stay masked, (1 - alpha_s)/(1 - alpha_t), is 0.")
unmasked = x_t != MASK_ID
check_true(bool((got[unmasked] == x_t[unmasked]).all()), "ancestral_step changed positions that were not masked "
           "(carry-over: a decoded token stays as it is).")
# statistically: one masked position from t (alpha 0.2) to s (alpha 0.6): P(v) = 0.5 p_v, P(stay) = 0.5
p = torch.tensor([0.5, 0.3, 0.15, 0.05])
n = 20000
got = ancestral_step(torch.full((n, 1), MASK_ID), p.expand(n, 1, 4), torch.full((n,), 0.2), torch.full((n,), 0.6),
                     torch.rand(n, 1, generator=gen))
got = torch.where(got == MASK_ID, torch.full_like(got, 4), got)
check_frequencies(got, torch.cat([0.5 * p, torch.tensor([0.5])]),
                  name="20000 ancestral steps of one masked position from alpha_t = 0.2 to alpha_s = 0.6 "
                       "(value 4 = stayed masked)")
### END HIDDEN TESTS

# %% [markdown]
# ## 4. SEDD's denoising score entropy, absorbing graph
#
# SEDD learns the *concrete score* $s_\theta(x_t)_y \approx p_t(y)/p_t(x_t)$ for every $y$ that differs from
# $x_t$ at one position. Its denoising score entropy replaces the unknown $p_t(y)/p_t(x_t)$ by the ratio of the
# forward transitions, $r_y = p_{t\mid 0}(y \mid x_0) / p_{t\mid 0}(x_t \mid x_0)$ (Lou et al. 2024, Theorem 3.4):
# per position,
#
# $$ \mathrm{DSE} = \sum_{y \ne x_t} Q(x_t, y) \left( s_y - r_y \log s_y + K(r_y) \right), \qquad
#    K(a) = a (\log a - 1),\ K(0) = 0, $$
#
# with the graph's rates as weights (Theorem 3.6). As in section 3, a masked position holds `MASK_ID`, whatever
# the number $N$ of real tokens. For the **absorbing graph** with total noise $\bar\sigma$
# ($p_{t\mid0}(x_0 \mid x_0) = e^{-\bar\sigma}$, $p_{t\mid0}(m \mid x_0) = 1 - e^{-\bar\sigma}$):
#
# - an unmasked $x_t$ has no incoming rate ($Q(x_t, y) = 0$): DSE $= 0$;
# - a masked $x_t = m$ has $Q(m, y) = 1$ for every real token $y$, and $r_y = 1/(e^{\bar\sigma} - 1)$ for
#   $y = x_0$, $r_y = 0$ for the other tokens (so $r_y \log s_y$ and $K(r_y)$ vanish there).
#
# Each term $s - r\log s + K(r) \ge 0$ with equality exactly at $s = r$. You get $\log s$ (a (B, L, N + 1) tensor
# whose last entry, the mask, is not used) and the clean tokens. `torch.expm1` computes $e^{\bar\sigma} - 1$
# accurately for small $\bar\sigma$.

# %% nbgrader={"grade": false, "grade_id": "dse_absorbing", "locked": false, "solution": true}
def dse_absorbing(log_score, x_t, x0, sigma_bar):
    """Denoising score entropy of the absorbing graph, per position.

    Args:
        log_score: (B, L, N + 1) log s_theta(x_t)_y for the N real tokens y and the mask (last; unused).
        x_t: (B, L) noisy tokens, MASK_ID where masked.
        x0: (B, L) clean tokens (ids < N).
        sigma_bar: (B,) total noise.
    Returns:
        (B, L): the DSE at each position (0 where x_t is not masked).
    """
    ### BEGIN SOLUTION
    N = log_score.shape[-1] - 1
    r = 1.0 / torch.expm1(sigma_bar).reshape(-1, 1)  # (B, 1): the ratio at y = x0
    tokens = log_score[..., :N]  # (B, L, N)
    log_s0 = tokens.gather(-1, x0.unsqueeze(-1)).squeeze(-1)  # (B, L): log s at y = x0
    dse = tokens.exp().sum(-1) - r * log_s0 + r * (torch.log(r) - 1)
    return torch.where(x_t == MASK_ID, dse, torch.zeros_like(dse))
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "q4_dse", "locked": true, "points": 2, "solution": false}
gen = torch.Generator().manual_seed(4)
B, L, N = 2, 5, 3
graph = Absorbing(N)
x0 = torch.randint(N, (B, L), generator=gen)
x_t = x0.clone()
x_t[0, [0, 2, 3]] = MASK_ID
x_t[1, [1, 4]] = MASK_ID
sigma_bar = torch.tensor([0.5, 1.5])
log_score = torch.randn(B, L, N + 1, generator=gen)
got = dse_absorbing(log_score, x_t, x0, sigma_bar)
masked = x_t == MASK_ID
want = denoising_score_entropy(graph, log_score, torch.where(masked, N, x_t), x0, sigma_bar)  # the graph's mask is N
r = (1 / torch.expm1(sigma_bar))[:, None]
log_s0 = log_score.gather(-1, x0[..., None])[..., 0]
check_shape(got, (B, L), name="dse_absorbing(log_score, x_t, x0, sigma_bar)")
check_close(got, want, rtol=1e-5, atol=1e-6, name="dse_absorbing(log_score, x_t, x0, sigma_bar)",
            mistakes={"you added r log s instead of subtracting it": want + 2 * r * log_s0 * masked,
                      "you left out the constant K(r) = r (log r - 1), so the loss is not 0 at s = r":
                      want - r * (r.log() - 1) * masked,
                      "you summed over y = x_t (the mask) too; the sum is over y != x_t":
                      want + log_score[..., N].exp() * masked,
                      "you summed over y = x_t (the mask) too, with ratio 1 there; the sum is over y != x_t":
                      want + (log_score[..., N].exp() - log_score[..., N] - 1) * masked,
                      "you used the inverted ratio e^sigma_bar - 1; r = p(x0 | x0) / p(mask | x0) = 1 / (e^sigma_bar "
                      "- 1)": want + ((1 / r) * (-log_s0 + (1 / r).log() - 1) - r * (-log_s0 + r.log() - 1)) * masked,
                      "you took the mask to be id N = log_score.shape[-1] - 1 = 3; it is MASK_ID = 27 here too":
                      torch.zeros(B, L),
                      "you counted the unmasked positions too (their rate Q(x_t, y) is 0)":
                      torch.where(masked, want, log_score[..., :N].exp().sum(-1) - r * log_s0 + r * (r.log() - 1))})
# zero at the true ratio (s = r at y = x0, s ~ 0 at the other tokens), positive elsewhere
r64 = 1 / torch.expm1(sigma_bar.double())
true = torch.full((B, L, N + 1), -60.0, dtype=torch.float64).scatter(-1, x0[..., None],
                                                                      torch.log(r64)[:, None, None].expand(B, L, 1))
check_close(dse_absorbing(true, x_t, x0, sigma_bar.double()), torch.zeros(B, L, dtype=torch.float64), atol=1e-9,
            rtol=0,
            name="dse_absorbing in float64 at the true ratios (log s = -log(e^sigma_bar - 1) at y = x0, -60 elsewhere)",
            hint="Each term s - r log s + K(r) is 0 at s = r: check the constant K(r) = r (log r - 1).")
check_true(bool((got[masked] > 0).all()), "dse_absorbing must be positive at masked positions when s is not the "
           "true ratio (each term s - r log s + K(r) is >= 0, with equality only at s = r).")
### BEGIN HIDDEN TESTS
# text8's vocabulary (N = 27, mask id 27), float64, sigma_bar tiny (r = 1e4) and large
gen = torch.Generator().manual_seed(40)
B, L, N = 4, 12, 27
x0 = torch.randint(N, (B, L), generator=gen)
sigma_bar = torch.tensor([1e-4, 0.3, 2.0, 8.0], dtype=torch.float64)
x_t = torch.where(torch.rand(B, L, generator=gen) < 0.5, torch.full_like(x0, MASK_ID), x0)
log_score = torch.randn(B, L, N + 1, generator=gen, dtype=torch.float64) - 3
check_close(dse_absorbing(log_score, x_t, x0, sigma_bar),
            denoising_score_entropy(Absorbing(N), log_score, x_t, x0, sigma_bar), rtol=1e-9, atol=1e-9,
            name="dse_absorbing with N = 27 (text8), float64, sigma_bar = 1e-4, 0.3, 2, 8",
            hint="Compute e^sigma_bar - 1 with torch.expm1 (sigma_bar can be tiny).")
# in expectation over x0 and x_t, the DSE is smallest at the true concrete score (Lou et al. 2024, Theorem 3.4:
# DSE = SE + a constant, and SE is minimised by the true ratios)
exact = TinyDistribution.random(3, 2, seed=3)
graph, sb = Absorbing(3), 0.8
pairs = [masked_versions(x, 3) for x in exact.seqs]
z = torch.cat([p[0] for p in pairs])  # (36, 2), the graph's mask id 3
z_student = torch.where(z == 3, MASK_ID, z)  # the same sequences with MASK_ID, as dse_absorbing takes them
k = torch.cat([p[1] for p in pairs])
xx = exact.seqs.repeat_interleave(4, 0)  # (36, 2)
weight = exact.probs.repeat_interleave(4) * (1 - math.exp(-sb)) ** k * math.exp(-sb) ** (2 - k)
true_log = torch.log(exact.concrete_score(graph, sb, z)).clamp(min=-50)  # (36, 2, 4)
sbs = torch.full((36,), sb, dtype=torch.float64)


def expected_dse(log_s):
    return float((weight * dse_absorbing(log_s, z_student, xx, sbs).sum(-1)).sum())


best = expected_dse(true_log)
check_close(best, float((weight * denoising_score_entropy(graph, true_log, z, xx, sbs).sum(-1)).sum()), rtol=1e-9,
            atol=1e-12, name="the expected dse_absorbing at the true concrete score of a tiny distribution")
state = z[:, 0] * 4 + z[:, 1]  # one score per noisy sequence x_t, shared by every x0 that leads to it
for scale in (0.1, 0.02, 0.5):
    worse = expected_dse(true_log + scale * torch.randn(16, 2, 4, generator=gen, dtype=torch.float64)[state])
    check_true(worse > best, f"the expected dse_absorbing at a perturbed score ({worse:.6f}) is not larger than at "
               f"the true concrete score ({best:.6f}): the true ratios must minimise it.")
### END HIDDEN TESTS

# %% [markdown]
# ## Try it (not graded)
#
# A whole sampler from your step: start from all masks and run `steps` ancestral steps on the grid
# $t_k = k/\text{steps}$ with the *exact* denoiser of a tiny distribution over 3-letter words from the alphabet
# {0, 1, 2}. With many steps, each step unmasks at most one position most of the time, and the chain rule makes
# the samples exact; with one step every position is unmasked independently at once.

# %%
from dlcourse.discrete.markov import TinyDistribution

tiny = TinyDistribution.random(num_symbols=3, length=3, seed=0)
gen = torch.Generator().manual_seed(0)
for steps in (1, 3, 30):
    x = torch.full((4000, 3), MASK_ID)
    for k in range(steps, 0, -1):
        a_t = torch.full((4000,), 1 - k / steps, dtype=torch.float64)
        a_s = torch.full((4000,), 1 - (k - 1) / steps, dtype=torch.float64)
        x = ancestral_step(x, tiny.denoiser(x, MASK_ID), a_t, a_s, torch.rand(4000, 3, generator=gen,
                                                                                dtype=torch.float64))
    freq = torch.bincount(tiny.index(x), minlength=27).double() / 4000
    print(f"{steps:2d} steps: total variation to the true distribution {0.5 * (freq - tiny.probs).abs().sum():.3f}")
