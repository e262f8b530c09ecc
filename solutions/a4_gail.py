# ---
# jupyter:
#   dlcourse:
#     assignment: a4_gail
#     blocked:
#     - dlcourse.rl.gail.discriminator_loss
#     - dlcourse.rl.gail.gail_reward
#     - dlcourse.rl.ppo.gae
#     - dlcourse.rl.ppo.gae_reference
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
# # Assignment a4 · GAIL: the discriminator's loss, the policy's reward and generalised advantage estimation
#
# Graded, 10 points. GAIL (Ho & Ermon 2016) plays the GAN game on state-action pairs:
#
# $$ \min_\pi \max_D\ \ \mathbb E_\pi[\log D(s,a)] + \mathbb E_{\pi_E}[\log(1 - D(s,a))] - \lambda H(\pi)
# \qquad \text{(Ho \& Ermon 2016, eq. 16)}. $$
#
# **The sign convention (the paper's, and the package's).** $D(s,a) = \sigma(\ell(s,a))$ is the probability that
# the pair came from the **policy**: the discriminator pushes $D \to 1$ on the policy's pairs and $D \to 0$ on the
# expert's. Its network outputs the *logit* $\ell$, never the probability. The policy minimises the cost
# $c(s,a) = \log D(s,a)$ (Algorithm 1, step 5), i.e. it maximises the reward $r = -\log D(s,a)$.
#
# You will write, with tensor operations only,
#
# 1. the discriminator's loss from logits (Algorithm 1, step 4), 3 points;
# 2. the policy's reward from logits, numerically stable, 2 points;
# 3. generalised advantage estimation with terminated and truncated episodes (Schulman et al. 2016), 4 points;
# 4. the signal one GAIL iteration hands to PPO: rewards relabelled by the discriminator, GAE, normalised
#    advantages, 1 point.
#
# **How to work.** Fill in each function where it says `raise NotImplementedError(...)`, run the test cell under
# it, and check your work from a terminal in the course folder with
# `.venv/bin/dlcourse grade assignments/a4_gail.ipynb` (see [course/grading.md](../course/grading.md)). The
# instructor adds hidden tests (other shapes, float64, logits of ±1000, episodes that end in the middle of a
# batch). The package's own `dlcourse.rl.gail.discriminator_loss`, `gail_reward` and `dlcourse.rl.ppo.gae` are
# blocked while grading.

# %% tags=["grading-setup"]
import math

import torch
import torch.nn.functional as F

from dlcourse.grading.checks import check_close, check_finite, check_shape, check_true
from dlcourse.rl.gail import discriminator_loss as ref_disc_loss
from dlcourse.rl.gail import gail_reward as ref_reward
from dlcourse.rl.ppo import gae as ref_gae


def episode_batch(dtype=torch.float32):
    """A (T=5, N=3) rollout: env 0 runs on, env 1 *terminates* at t=2 (its next value 123 must never be used),
    env 2 is *truncated* at t=1 (a time limit: bootstrap from its final observation's value 0.75)."""
    gen = torch.Generator().manual_seed(7)
    T, N = 5, 3
    rewards = torch.rand(T, N, generator=gen, dtype=dtype)
    values = torch.randn(T, N, generator=gen, dtype=dtype)
    next_values = torch.cat([values[1:], torch.randn(1, N, generator=gen, dtype=dtype)])  # V(s_{t+1})
    terminated = torch.zeros(T, N, dtype=torch.bool)
    truncated = torch.zeros(T, N, dtype=torch.bool)
    terminated[2, 1] = True
    next_values[2, 1] = 123.0
    truncated[1, 2] = True
    next_values[1, 2] = 0.75  # V of the final observation, not of the next episode's first one
    return rewards, values, next_values, terminated, terminated | truncated


def gae_mistakes(r, v, nv, term, done, gamma, lam):
    """{the mistake: the advantages it gives} for the usual GAE bugs."""
    no = torch.zeros_like(term)
    adv_gamma = torch.zeros_like(r)  # decays by gamma instead of gamma * lambda
    running = torch.zeros_like(r[0])
    delta = r + gamma * (~term).to(r.dtype) * nv - v
    for t in reversed(range(r.shape[0])):
        running = delta[t] + gamma * (~done[t]).to(r.dtype) * running
        adv_gamma[t] = running
    mistakes = {
        "you bootstrapped through a termination: after a terminal state there is no next value, so δ_t = r_t - "
        "V(s_t) where terminated_t": ref_gae(r, v, nv, no, done, gamma, lam)[0],
        "you used done (terminated or truncated) instead of terminated in δ_t: a truncated episode (a time limit) "
        "must still bootstrap from its final observation's value": ref_gae(r, v, nv, done, done, gamma, lam)[0],
    }
    if lam != 0:  # with lam = 0 the running sum carries nothing: mistakes in it cannot show
        mistakes["you forgot to reset the running sum at episode ends (multiply it by 1 - done_t)"] = \
            ref_gae(r, v, nv, term, no, gamma, lam)[0]
        mistakes["you reset the running sum only at terminations: a truncated episode ends too, so reset on done"] = \
            ref_gae(r, v, nv, term, term, gamma, lam)[0]
    if lam != 1:  # with lam = 1, gamma * lam is gamma
        mistakes["your running sum decays by γ instead of γλ"] = adv_gamma
    return mistakes


# %% [markdown]
# ## 1. The discriminator's loss
#
# The discriminator maximises eq. (16) over $D$; as a loss to minimise, that is
#
# $$ L(D) = -\,\mathbb E_\pi[\log D(s,a)] - \mathbb E_{\pi_E}[\log(1 - D(s,a))], $$
#
# a binary cross-entropy with **label 1 for policy pairs and 0 for expert pairs** (Algorithm 1, step 4). Each
# expectation is a mean over its own batch (the two batches may have different sizes), and the loss is their sum.
# With $D = \sigma(\ell)$: $-\log \sigma(\ell) = \operatorname{softplus}(-\ell)$ and
# $-\log(1 - \sigma(\ell)) = \operatorname{softplus}(\ell)$. Write it with these (or with
# `F.binary_cross_entropy_with_logits`): `torch.log(torch.sigmoid(x))` gives $-\infty$ once $\sigma$ underflows.

# %% nbgrader={"grade": false, "grade_id": "discriminator_loss", "locked": false, "solution": true}
def discriminator_loss(logits_policy, logits_expert):
    """-(E_π[log D] + E_πE[log(1 - D)]) with D = sigmoid(logit) = P[pair came from the policy].

    Args:
        logits_policy: (Bp,) discriminator logits of the policy's state-action pairs.
        logits_expert: (Be,) discriminator logits of the expert's pairs.
    Returns:
        a scalar tensor (shape ()).
    """
    ### BEGIN SOLUTION
    return F.softplus(-logits_policy).mean() + F.softplus(logits_expert).mean()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "q1_disc_loss", "locked": true, "points": 3, "solution": false}
gen = torch.Generator().manual_seed(1)
lp = torch.randn(6, generator=gen) + 1.0
le = torch.randn(4, generator=gen) - 0.5
got = discriminator_loss(lp, le)
check_shape(got, (), name="discriminator_loss(logits_policy, logits_expert)")
check_close(got, ref_disc_loss(lp, le), rtol=1e-5, atol=1e-6, name="discriminator_loss(logits_policy, logits_expert)",
            mistakes={"you swapped the labels: D is the probability that a pair came from the POLICY, so policy "
                      "pairs have label 1 and expert pairs label 0": ref_disc_loss(le, lp),
                      "you returned the objective E_π[log D] + E_πE[log(1 - D)] that D maximises, not its negative":
                      -ref_disc_loss(lp, le),
                      "you summed over the pairs instead of averaging": F.softplus(-lp).sum() + F.softplus(le).sum(),
                      "you averaged over all Bp + Be pairs together instead of taking one mean per batch":
                      torch.cat([F.softplus(-lp), F.softplus(le)]).mean(),
                      "you averaged the two terms instead of adding them": 0.5 * ref_disc_loss(lp, le)})
check_close(discriminator_loss(torch.zeros(3), torch.zeros(5)), 2 * math.log(2), rtol=1e-5, atol=1e-6,
            name="discriminator_loss at logits 0 (D = ½ everywhere: the answer is 2 log 2)")
ext = torch.tensor([-60.0, 0.0, 60.0])
check_close(discriminator_loss(ext, ext), ref_disc_loss(ext, ext), rtol=1e-5, atol=1e-5,
            name="discriminator_loss with logits ±60 (float32)",
            mistakes={"you took logs of probabilities clamped at -100 (F.binary_cross_entropy on sigmoid outputs): "
                      "stay in logit space (F.binary_cross_entropy_with_logits or softplus)":
                      (-torch.log(torch.sigmoid(ext)).clamp(max=100)).mean()
                      + (-torch.log1p(-torch.sigmoid(ext)).clamp(max=100)).mean()},
            hint="log(sigmoid(x)) and log(1 - sigmoid(x)) become -inf once sigmoid rounds to 0 or 1: write "
                 "-log sigmoid(x) as softplus(-x) and -log(1 - sigmoid(x)) as softplus(x).")
### BEGIN HIDDEN TESTS
lp64 = torch.randn(11, generator=gen, dtype=torch.float64) * 3
le64 = torch.randn(2, generator=gen, dtype=torch.float64) * 3
check_close(discriminator_loss(lp64, le64), ref_disc_loss(lp64, le64), rtol=1e-10, atol=1e-12,
            name="discriminator_loss in float64 with batches of 11 policy and 2 expert pairs",
            mistakes={"you averaged over all Bp + Be pairs together instead of taking one mean per batch":
                      torch.cat([F.softplus(-lp64), F.softplus(le64)]).mean()})
big = torch.tensor([-1000.0, -200.0, 200.0, 1000.0])
want = ref_disc_loss(big, big)  # (1000 + 200 + 0 + 0)/4 + (0 + 0 + 200 + 1000)/4 = 600
check_close(discriminator_loss(big, big), want, rtol=1e-5, atol=1e-4,
            name="discriminator_loss with logits ±200 and ±1000 (float32)",
            mistakes={"you took logs of probabilities clamped at -100 (F.binary_cross_entropy on sigmoid outputs): "
                      "use the logits directly (F.binary_cross_entropy_with_logits or softplus)":
                      (-torch.log(torch.sigmoid(big)).clamp(max=100)).mean()
                      + (-torch.log1p(-torch.sigmoid(big)).clamp(max=100)).mean()},
            hint="Stay in logit space: -log sigmoid(x) = softplus(-x), -log(1 - sigmoid(x)) = softplus(x).")
check_true(float(discriminator_loss(torch.full((4,), 9.0), torch.full((4,), -9.0)))
           < float(discriminator_loss(torch.full((4,), -9.0), torch.full((4,), 9.0))),
           "Your discriminator_loss is larger for a discriminator that is right (policy logits +9, expert logits -9) "
           "than for one that is wrong: the labels are swapped.")
### END HIDDEN TESTS

# %% [markdown]
# ## 2. The policy's reward
#
# The policy minimises the cost $\log D(s,a)$; PPO maximises a reward, so use
#
# $$ r(s,a) = -\log D(s,a) = -\log \sigma(\ell) = \operatorname{softplus}(-\ell) \ \ge 0 , $$
#
# large where the pair looks like the expert's ($D \to 0$, $\ell \to -\infty$) and near 0 where it plainly is the
# policy's. A discriminator that wins early produces logits of $-100$ and below on expert-like pairs, and there
# `-torch.log(torch.sigmoid(logits))` is $+\infty$ in float32: compute it stably.

# %% nbgrader={"grade": false, "grade_id": "gail_reward", "locked": false, "solution": true}
def gail_reward(logits):
    """r = -log D(s, a) with D = sigmoid(logits) = P[pair came from the policy].

    Args:
        logits: discriminator logits of any shape, e.g. (B,) or (T, N).
    Returns:
        the rewards, same shape and dtype as logits.
    """
    ### BEGIN SOLUTION
    return F.softplus(-logits)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "q2_reward", "locked": true, "points": 2, "solution": false}
logits = torch.linspace(-6.0, 6.0, 13)
got = gail_reward(logits)
check_shape(got, (13,), name="gail_reward(logits)")
check_close(got, ref_reward(logits), rtol=1e-5, atol=1e-6, name="gail_reward(logits) for logits -6, -5, ..., 6",
            mistakes={"you returned the cost log D instead of the reward -log D": -ref_reward(logits),
                      "you treated D as P[expert]: with D = P[policy], r = -log D = softplus(-logit), not "
                      "-log(1 - D) = softplus(logit)": F.softplus(logits),
                      "you used the other sign convention r = log(1 - D), which is negative and pays the agent "
                      "for ending episodes; this assignment uses r = -log D": -F.softplus(logits),
                      "you returned -logit (the AIRL-style reward log(1 - D) - log D), not -log D": -logits,
                      "you returned D or 1 - D instead of -log D": torch.sigmoid(-logits)})
check_true(bool((got >= 0).all()) and bool((got.diff() < 0).all()),
           "gail_reward should be non-negative and fall as the logit (the evidence for 'policy') rises.")
check_close(gail_reward(torch.tensor([-100.0, 100.0])), torch.tensor([100.0, 0.0]), rtol=1e-5, atol=1e-6,
            name="gail_reward(tensor([-100., 100.])) (float32)",
            hint="-log(sigmoid(-100)) and log(1 + exp(100)) overflow in float32 (sigmoid(-100) rounds to 0, "
                 "exp(100) to inf): use softplus(-logits), which is exact there.")
### BEGIN HIDDEN TESTS
big = torch.tensor([[-1000.0, -200.0, -89.0], [89.0, 200.0, 1000.0]])
got = gail_reward(big)
check_finite(got, name="gail_reward of logits ±89, ±200, ±1000 (float32)",
             hint="log(sigmoid(x)) overflows: sigmoid(-200) is 0 in float32, so -log of it is inf. "
                  "Use softplus(-logits).")
check_close(got, ref_reward(big), rtol=1e-5, atol=1e-6, name="gail_reward of logits ±89, ±200, ±1000 (float32)",
            hint="Use softplus(-logits), which is exact for large |logits|.")
l64 = torch.randn(4, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 10
got = gail_reward(l64)
check_true(got.dtype == torch.float64, f"gail_reward of float64 logits returned {got.dtype}: keep the dtype.")
check_close(got, ref_reward(l64), rtol=1e-12, atol=1e-12, name="gail_reward of (4, 3) float64 logits")
tiny = torch.tensor([-745.0, 40.0, 745.0], dtype=torch.float64)
check_close(gail_reward(tiny), ref_reward(tiny), rtol=1e-10, atol=1e-300, name="gail_reward of logits ±745, 40 "
            "(float64)", hint="softplus(-x) is about exp(-x) for large x: log(1 + exp(-x)) written out loses it.")
### END HIDDEN TESTS

# %% [markdown]
# ## 3. Generalised advantage estimation
#
# PPO needs advantages. With the TD residual $\delta_t = r_t + \gamma V(s_{t+1}) - V(s_t)$ (Schulman et al. 2016,
# eq. 10), GAE is
#
# $$ \hat A_t = \sum_{l \ge 0} (\gamma\lambda)^l\, \delta_{t+l} \qquad \text{(eq. 16)}, $$
#
# computed backwards as $\hat A_t = \delta_t + \gamma\lambda\, \hat A_{t+1}$. A rollout holds $N$ environments
# for $T$ steps, and episodes end in the middle of it, in one of two ways:
#
# - **terminated** (the pole fell: an absorbing state): there is no future, so $\delta_t = r_t - V(s_t)$;
# - **truncated** (a time limit): the state still has a future, so bootstrap from `next_values[t]`, the value of
#   the episode's *final* observation (the environment has already reset; `next_values` holds the right value);
#
# and in both cases (**done** = terminated or truncated) the sum must stop: $\hat A_{t+1}$ belongs to another
# episode. At the end of the rollout ($t = T - 1$) an unfinished episode bootstraps from `next_values[T-1]` and
# $\hat A_T = 0$. The λ-returns, the value function's targets, are $\hat A_t + V(s_t)$.
#
# `terminated` and `dones` are **bool** tensors: turn them into numbers with `.to(rewards.dtype)` (or use `~`).

# %% nbgrader={"grade": false, "grade_id": "gae", "locked": false, "solution": true}
def gae(rewards, values, next_values, terminated, dones, gamma, lam):
    """Generalised advantage estimates (Schulman et al. 2016, eq. 16) over a rollout of N environments.

    Args:
        rewards, values, next_values: (T, N); values[t] = V(s_t), next_values[t] = V(s_{t+1}) of the true next
            state (the final observation where an episode ended).
        terminated, dones: (T, N) bool; dones = terminated or truncated.
        gamma, lam: floats, the discount γ and the GAE λ.
    Returns:
        (advantages, returns), both (T, N) like rewards, with returns = advantages + values.
    """
    ### BEGIN SOLUTION
    not_term = (~terminated).to(rewards.dtype)  # (T, N)
    not_done = (~dones).to(rewards.dtype)       # (T, N)
    deltas = rewards + gamma * not_term * next_values - values  # (T, N)
    adv = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])  # (N,)
    for t in reversed(range(rewards.shape[0])):
        running = deltas[t] + gamma * lam * not_done[t] * running
        adv[t] = running
    return adv, adv + values
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "q3_gae", "locked": true, "points": 4, "solution": false}
r, v, nv, term, done = episode_batch()
adv, ret = gae(r, v, nv, term, done, 0.9, 0.8)
want_adv, want_ret = ref_gae(r, v, nv, term, done, 0.9, 0.8)
check_shape(adv, (5, 3), name="the advantages from gae(...)")
check_close(adv, want_adv, rtol=1e-5, atol=1e-5, name="the advantages from gae(..., gamma=0.9, lam=0.8)",
            mistakes=gae_mistakes(r, v, nv, term, done, 0.9, 0.8))
check_close(ret, want_ret, rtol=1e-5, atol=1e-5, name="the returns from gae(...)",
            mistakes={"you returned the advantages as the returns: returns = advantages + values": want_adv,
                      "you returned advantages - values: returns = advantages + values": want_adv - v})
### BEGIN HIDDEN TESTS
# λ = 0: one TD residual; λ = 1: the discounted return to the episode's end (plus γ^k V(final obs) unless it
# terminated) minus V(s_t). Written out here, independently of the package.
r, v, nv, term, done = episode_batch(torch.float64)
gamma = 0.95
td = r + gamma * (~term).double() * nv - v  # Schulman et al. 2016, eq. (10)
check_close(gae(r, v, nv, term, done, gamma, 0.0)[0], td, rtol=1e-10, atol=1e-10,
            name="gae with lam = 0 (it must equal the TD residual δ_t), float64",
            mistakes=gae_mistakes(r, v, nv, term, done, gamma, 0.0))
mc = torch.zeros_like(r)
for n in range(r.shape[1]):
    for t in range(r.shape[0]):
        total, k = 0.0, t
        while True:
            total += gamma ** (k - t) * float(r[k, n])
            if done[k, n] or k == r.shape[0] - 1:
                break
            k += 1
        if not term[k, n]:
            total += gamma ** (k - t + 1) * float(nv[k, n])
        mc[t, n] = total - float(v[t, n])
check_close(gae(r, v, nv, term, done, gamma, 1.0)[0], mc, rtol=1e-10, atol=1e-10,
            name="gae with lam = 1 (it must equal the discounted return to the episode's end minus V), float64",
            mistakes=gae_mistakes(r, v, nv, term, done, gamma, 1.0))
# a longer rollout, 8 environments, episodes ending anywhere, including at t = 0 and t = T - 1
g = torch.Generator().manual_seed(11)
T, N = 17, 8
r = torch.randn(T, N, generator=g, dtype=torch.float64)
v = torch.randn(T, N, generator=g, dtype=torch.float64)
nv = torch.randn(T, N, generator=g, dtype=torch.float64)
done = torch.rand(T, N, generator=g) < 0.2
term = done & (torch.rand(T, N, generator=g) < 0.5)
done[0, 0] = term[0, 0] = True
done[T - 1, 1] = term[T - 1, 1] = True
done[T - 1, 2], term[T - 1, 2] = True, False
adv, ret = gae(r, v, nv, term, done, 0.99, 0.95)
want_adv, want_ret = ref_gae(r, v, nv, term, done, 0.99, 0.95)
check_close(adv, want_adv, rtol=1e-10, atol=1e-10, name="the advantages from gae on a (17, 8) float64 rollout",
            mistakes=gae_mistakes(r, v, nv, term, done, 0.99, 0.95))
check_close(ret, want_ret, rtol=1e-10, atol=1e-10, name="the returns from gae on a (17, 8) float64 rollout")
check_true(adv.dtype == torch.float64, f"gae of float64 inputs returned {adv.dtype} advantages: keep the dtype.")
# one environment, one step, terminated: Â = r - V exactly
one = gae(torch.tensor([[2.0]]), torch.tensor([[0.5]]), torch.tensor([[9.0]]), torch.tensor([[True]]),
          torch.tensor([[True]]), 0.9, 0.95)[0]
check_close(one, torch.tensor([[1.5]]), rtol=1e-6, atol=1e-6, name="gae of a single terminated step (T = N = 1)",
            hint="A terminated step has no next value: Â = r - V = 2 - 0.5.")
### END HIDDEN TESTS

# %% [markdown]
# ## 4. One GAIL iteration's signal for PPO
#
# Algorithm 1 replaces the environment's reward with the discriminator's. Put your pieces together: from the
# discriminator's logits on the rollout's pairs, (T, N), compute the GAIL rewards, run GAE on them, and return
#
# - the advantages **normalised** over the whole batch, $(\hat A - \operatorname{mean}\hat A) /
#   (\operatorname{std}\hat A + 10^{-8})$ with torch's default (unbiased) `.std()`, as PPO uses them;
# - the λ-returns from the *unnormalised* advantages (the value function's targets).
#
# Call your own `gail_reward` and `gae`.

# %% nbgrader={"grade": false, "grade_id": "gail_advantages", "locked": false, "solution": true}
def gail_advantages(logits, values, next_values, terminated, dones, gamma, lam):
    """PPO's inputs after a GAIL relabelling.

    Args:
        logits: (T, N) discriminator logits of the rollout's state-action pairs.
        values, next_values, terminated, dones, gamma, lam: as for gae.
    Returns:
        (normalised advantages, returns), both (T, N).
    """
    ### BEGIN SOLUTION
    adv, ret = gae(gail_reward(logits), values, next_values, terminated, dones, gamma, lam)
    return (adv - adv.mean()) / (adv.std() + 1e-8), ret
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "q4_gail_advantages", "locked": true, "points": 1, "solution": false}
# checked against your own gail_reward and gae, so a mistake there is not counted twice
_, v, nv, term, done = episode_batch()
logits = torch.randn(5, 3, generator=torch.Generator().manual_seed(5)) * 2
adv_n, ret = gail_advantages(logits, v, nv, term, done, 0.9, 0.8)
own_adv, own_ret = gae(gail_reward(logits), v, nv, term, done, 0.9, 0.8)
want = (own_adv - own_adv.mean()) / (own_adv.std() + 1e-8)
raw_adv = gae(logits, v, nv, term, done, 0.9, 0.8)[0]
check_close(adv_n, want, rtol=1e-4, atol=1e-5, name="the normalised advantages from gail_advantages(...)",
            mistakes={"you did not normalise the advantages": own_adv,
                      "you normalised with the biased std (unbiased=False); use torch's default .std()":
                      (own_adv - own_adv.mean()) / (own_adv.std(unbiased=False) + 1e-8),
                      "you used the logits themselves as rewards instead of gail_reward(logits)":
                      (raw_adv - raw_adv.mean()) / (raw_adv.std() + 1e-8)})
check_close(ret, own_ret, rtol=1e-5, atol=1e-5, name="the returns from gail_advantages(...)",
            mistakes={"you computed the returns from the normalised advantages: use the unnormalised ones":
                      want + v})
### BEGIN HIDDEN TESTS
g = torch.Generator().manual_seed(12)
v64, nv64 = torch.randn(9, 4, generator=g, dtype=torch.float64), torch.randn(9, 4, generator=g, dtype=torch.float64)
done = torch.rand(9, 4, generator=g) < 0.25
term = done & (torch.rand(9, 4, generator=g) < 0.5)
logits = torch.randn(9, 4, generator=g, dtype=torch.float64) * 5
adv_n, ret = gail_advantages(logits, v64, nv64, term, done, 0.99, 0.95)
own_adv, own_ret = gae(gail_reward(logits), v64, nv64, term, done, 0.99, 0.95)
check_close(adv_n, (own_adv - own_adv.mean()) / (own_adv.std() + 1e-8), rtol=1e-8, atol=1e-8,
            name="the normalised advantages from gail_advantages on a (9, 4) float64 rollout")
check_close(ret, own_ret, rtol=1e-10, atol=1e-10, name="the returns from gail_advantages on a (9, 4) float64 rollout")
check_close(adv_n.mean(), 0.0, rtol=0, atol=1e-8, name="the mean of your normalised advantages")
### END HIDDEN TESTS

# %% [markdown]
# ## Try it (not graded)
#
# A discriminator that tells the expert's pairs apart gives them the larger reward, and the advantages carry it
# back along each episode. Below: the same rollout with logits that favour the first environment's pairs.

# %%
T, N = 6, 3
logits = torch.tensor([[-4.0, 0.0, 4.0]]).expand(T, N)  # env 0 expert-like, env 2 policy-like
values = torch.zeros(T, N)
terminated = torch.zeros(T, N, dtype=torch.bool)
dones = terminated.clone()
rewards = gail_reward(logits)
adv, ret = gae(rewards, values, values, terminated, dones, 0.99, 0.95)
print("rewards per env:  ", [f"{x:.3f}" for x in rewards[0].tolist()])
print("advantage at t=0: ", [f"{x:.3f}" for x in adv[0].tolist()])
