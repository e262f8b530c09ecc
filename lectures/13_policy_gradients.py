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
# # 13 · Policy gradients, GAE and PPO: how GAIL's policy learns
#
# In the GAN of lecture 12 the generator learns by backpropagating through the discriminator. GAIL's "generator"
# is a policy $\pi_\theta(a \mid s)$ acting in an environment, and nobody can backpropagate through an
# environment. What we can do is *try actions and keep the ones that turned out better than expected*. This
# lecture builds that learner in three steps, each one an equation in `dlcourse.rl.ppo`:
#
# 1. the **policy gradient**, which needs only $\log \pi_\theta$ and a score for each action taken;
# 2. **generalised advantage estimation** (GAE), which turns rewards and a learned value function into that
#    score, with one dial $\lambda$ between bias and variance, and which must know whether an episode
#    *ended* or was merely *cut off*;
# 3. **PPO's clipped objective**, which lets one batch of experience be reused for several gradient steps
#    without the policy running away from the data it was collected with.
#
# Assignment a4 asks you to write GAE yourself; this lecture shows what it must do, not how to code it.

# %% [markdown]
# ## 1. The policy gradient
#
# The objective is the expected discounted return $J(\theta) = \mathbb E_{\pi_\theta}[\sum_t \gamma^t r_t]$. Its
# gradient (Williams 1992; Sutton et al. 2000, Theorem 1) is
#
# $$ \nabla_\theta J = \mathbb E_{\pi_\theta}\Big[\sum_t \gamma^t\, \nabla_\theta \log \pi_\theta(a_t \mid s_t)\, A^\pi(s_t, a_t)\Big],
#    \qquad A^\pi(s, a) = Q^\pi(s, a) - V^\pi(s). $$
#
# The environment's dynamics do not appear: only the log-probability of the actions we took, each weighted by
# its **advantage**, how much better that action was than the policy's average in that state. (Libraries,
# including this one, drop the $\gamma^t$ in front, a small bias that every PPO implementation accepts.) Any
# function of the state alone may be subtracted from the weight without biasing the gradient, because
# $\mathbb E_{a \sim \pi}[\nabla \log \pi(a \mid s)] = 0$; subtracting $V(s)$ is what turns the return into an
# advantage and removes most of its variance. We check that zero-mean identity on a softmax policy:

# %%
import torch

logits = torch.tensor([0.3, -1.2, 2.0], requires_grad=True)  # one state, three actions
probs = torch.softmax(logits, -1)
scores = [torch.autograd.grad(torch.log_softmax(logits, -1)[a], logits)[0] for a in range(3)]  # ∇ log π(a)
expected = sum(p * g for p, g in zip(probs.detach(), scores))
print("E_a[grad log pi(a)] =", [round(v, 6) + 0.0 for v in expected.tolist()])

# %% [markdown]
# ## 2. Advantages from a learned value function: GAE
#
# We never know $A^\pi$; we estimate it from a rollout and a critic $V$ (a second network, trained to regress the
# returns). The one-step estimate is the **TD residual** (Schulman et al. 2016, eq. 10)
#
# $$ \delta_t = r_t + \gamma V(s_{t+1}) - V(s_t), $$
#
# exact in expectation if $V = V^\pi$, but wrong wherever the critic is wrong. The Monte-Carlo estimate
# $\sum_{l \ge 0} \gamma^l r_{t+l} - V(s_t)$ uses the critic only as a baseline: unbiased, but it adds up the
# noise of every future reward. GAE (eq. 16) interpolates with a geometric weight $\lambda \in [0, 1]$:
#
# $$ \hat A_t^{\mathrm{GAE}(\gamma, \lambda)} = \sum_{l \ge 0} (\gamma \lambda)^l\, \delta_{t+l},
#    \qquad \hat A_t = \delta_t \;(\lambda = 0), \qquad \hat A_t = \sum_l \gamma^l r_{t+l} - V(s_t) \;(\lambda = 1). $$
#
# The **λ-return** $\hat A_t + V(s_t)$ is what the critic is trained towards (eqs. 17-18 and TD(λ)). Each
# $\delta$ is written with the next state's value, so the sum can be computed backwards in one pass:
# $\hat A_t = \delta_t + \gamma\lambda \hat A_{t+1}$, with the chain cut where an episode ends.
#
# **Terminated or truncated.** An episode can end in two ways, and they need different arithmetic:
#
# - **terminated**: the task is over (the pole fell, the goal was reached). There is no future, so
#   $V(s_{t+1}) = 0$ in $\delta_t$.
# - **truncated**: a time limit (or the end of the rollout buffer) stopped it, but the state still has a future.
#   $\delta_t$ must **bootstrap** with $V$ of the real final observation, $r_t + \gamma V(s_{t+1}) - V(s_t)$, even
#   though the environment has already reset to a new episode's first state.
#
# In both cases the sum stops there: $\hat A_{t+1}$ belongs to another episode. gymnasium reports the two
# separately (`terminated`, `truncated`); `dlcourse.rl.ppo.gae` takes both, with `next_values` holding $V$ of the
# true next state. The difference, on the smallest example: reward 1 at every step of a task that never ends,
# $\gamma = 0.9$, so $V^\pi = 1 / (1 - \gamma) = 10$ everywhere and every advantage is exactly 0. A time limit
# cuts the episode after 5 steps, and the critic is perfect:

# %%
from dlcourse.rl.ppo import gae

T, gamma = 5, 0.9
rewards = torch.ones(T, 1)
values = torch.full((T, 1), 10.0)        # V(s_t), exact
next_values = torch.full((T, 1), 10.0)   # V(s_{t+1}); the last one is V of the final observation
ended = torch.zeros(T, 1, dtype=torch.bool)
ended[-1] = True                         # the time limit
for name, terminated in [("truncated, bootstrapped", torch.zeros_like(ended)), ("treated as terminated", ended)]:
    adv, ret = gae(rewards, values, next_values, terminated, ended, gamma, 0.95)
    print(f"{name:>24s}: advantages {[round(a, 3) + 0.0 for a in adv[:, 0].tolist()]}")

# %% [markdown]
# Bootstrapped, the advantages are zero, as they must be. Treated as a termination, the last step looks
# 9 points worse than average and the ones before it inherit a discounted share: the policy would learn that the
# states near a time limit are bad, about something it cannot observe (the clock is not in the state). This
# is the mistake a4's tests look for.

# %% [markdown]
# ## The bias-variance dial, measured
#
# A corridor of 8 cells: the agent starts at the left, moves right with probability 0.7 and left with 0.3, pays a
# noisy step cost ($-0.1$ plus Gaussian noise of standard deviation 0.3) and gets $+1$ when it reaches the
# right end, which terminates the episode; $\gamma = 0.95$. Its exact values $V^\pi$ and advantages $A^\pi(s, a)$
# come from a linear solve. The critic is deliberately wrong: $V(s) = V^\pi(s) + \sin(1.3\, s)$, a smooth error
# as large as the values themselves, as a critic early in training has. We run 512 corridors side by side for 256 steps
# (episodes restart when they end) and compare GAE's estimate with the exact advantage at every step, for each
# $\lambda$. For each visited pair $(s, a)$ the error splits into a mean (that pair's bias) and a spread around
# it (the **variance**). Part of the bias is harmless: an error shared by every action of a state is a baseline
# and, by the identity above, leaves the policy gradient unbiased. So the **bias** we report is the part that
# depends on the action, the pair's mean error minus its state's, squared and averaged over the visits.

# %%
import math

L, P_RIGHT, STEP_COST, NOISE, GAMMA = 8, 0.7, -0.1, 0.3, 0.95


def step(s, a):
    """Next state and mean reward of the corridor: a = 1 right, 0 left (a wall at 0); the right end terminates."""
    s_next = torch.where(a == 1, s + 1, (s - 1).clamp_min(0))
    done = s_next == L - 1
    return s_next, STEP_COST + done.to(torch.float64), done


# exact values: V = sum_a pi(a) [r(s, a) + gamma (1 - done) V(s')] for the L - 1 non-terminal cells
states = torch.arange(L - 1)
A_mat = torch.eye(L - 1, dtype=torch.float64)
b = torch.zeros(L - 1, dtype=torch.float64)
for a, p in [(1, P_RIGHT), (0, 1 - P_RIGHT)]:
    s_next, r, done = step(states, torch.full_like(states, a))
    b += p * r
    for i in range(L - 1):
        if not done[i]:
            A_mat[i, s_next[i]] -= p * GAMMA
V_true = torch.cat([torch.linalg.solve(A_mat, b), torch.zeros(1, dtype=torch.float64)])  # (L,), V = 0 at the end
A_true = torch.zeros(L, 2, dtype=torch.float64)
for a in (0, 1):
    s_next, r, done = step(torch.arange(L), torch.full((L,), a))
    A_true[:, a] = r + GAMMA * (~done) * V_true[s_next.clamp_max(L - 1)] - V_true
V_critic = V_true + torch.sin(1.3 * torch.arange(L))
V_critic[-1] = 0.0
print("V_true  :", [round(v, 3) for v in V_true.tolist()])
print("A(s, right) - A(s, left) :", [round(v, 3) for v in (A_true[:-1, 1] - A_true[:-1, 0]).tolist()])

# %%
N, T_ROLL = 512, 256
gen = torch.Generator().manual_seed(0)
s = torch.zeros(N, dtype=torch.long)
S, Acts, R, Term, S_next = [], [], [], [], []
for t in range(T_ROLL):
    a = (torch.rand(N, generator=gen) < P_RIGHT).long()
    s_next, r_mean, done = step(s, a)
    r = r_mean + NOISE * torch.randn(N, generator=gen, dtype=torch.float64)
    S.append(s), Acts.append(a), R.append(r), Term.append(done), S_next.append(s_next)
    s = torch.where(done, torch.zeros_like(s_next), s_next)  # a terminated corridor starts again
S, Acts, R, Term, S_next = (torch.stack(x) for x in (S, Acts, R, Term, S_next))  # (T, N) each
values, next_values = V_critic[S], V_critic[S_next]
keep = slice(0, T_ROLL // 2)  # steps far from the end of the buffer, where every sum has room to run


def bias_variance(lam):
    """GAE(gamma, lam) against the exact advantage, over the visits: the squared action-dependent bias, the
    variance, and the estimates (T, N)."""
    adv, _ = gae(R, values, next_values, Term, Term, GAMMA, lam)
    err = (adv - A_true[S, Acts])[keep].reshape(-1)
    pair, state = (S * 2 + Acts)[keep].reshape(-1), S[keep].reshape(-1)

    def mean_by(index, n):
        return torch.bincount(index, weights=err, minlength=n) / torch.bincount(index, minlength=n).clamp_min(1)

    pair_mean, state_mean = mean_by(pair, 2 * L), mean_by(state, L)  # each pair's and each state's mean error
    bias2 = ((pair_mean[pair] - state_mean[state]) ** 2).mean()
    var = ((err - pair_mean[pair]) ** 2).mean()
    return float(bias2), float(var), adv


lams = [i / 20 for i in range(21)]
table = [bias_variance(lam)[:2] for lam in lams]
for lam, (b2, v) in zip(lams, table):
    if lam in (0.0, 0.5, 0.8, 0.9, 0.95, 1.0):
        print(f"lambda {lam:4.2f}: bias^2 {b2:.4f}  variance {v:.4f}  sum {b2 + v:.4f}")

# %% [markdown]
# At $\lambda = 0$ the estimate is one TD residual $r + \gamma V(s') - V(s)$: its variance is that of a single
# reward and transition, and its bias contains the critic's error at the *next* cell, which depends on the action
# taken. At $\lambda = 1$ the critic enters only as the baseline $V(s_t)$: its error is the same for both actions
# and the action-dependent bias vanishes, but every future reward's noise is summed in. The error is smallest in
# between; PPO's usual $\lambda = 0.95$ and this package's CartPole setting $0.8$ are points on such a curve, for
# critics that are usually better than this one.

# %%
import matplotlib.pyplot as plt

from dlcourse.viz.player import hall_style

hall_style()
b2s, vs = zip(*table)
fig, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
ax.plot(lams, b2s, "o-", label="bias² (action-dependent)")
ax.plot(lams, vs, "s-", label="variance")
ax.plot(lams, [x + y for x, y in zip(b2s, vs)], "k--", label="sum")
ax.set_xlabel("GAE's λ")
ax.set_ylabel("per-step error of Â")
ax.set_title("GAE: bias against variance")
ax.legend()
plt.show()

# %% [markdown]
# The same dial, one pair at a time: the estimates of the advantage of "right" in cell 3 (a histogram over every
# visit), against its exact value (black) and that value minus the critic's error in cell 3 (grey), the shift
# that every action of cell 3 shares. Move $\lambda$: the histogram slides from a narrow peak in the wrong place
# to a wide one centred on the grey line.

# %% tags=["nbval-ignore-output"]
from matplotlib.figure import Figure

from dlcourse.viz import FramePlayer

cell, action = 3, 1
mask = ((S == cell) & (Acts == action))[keep]
player_lams = [0.0, 0.25, 0.5, 0.7, 0.8, 0.9, 0.95, 1.0]
estimates = [bias_variance(lam)[2][keep][mask] for lam in player_lams]
lo = min(float(e.min()) for e in estimates)
hi = max(float(e.max()) for e in estimates)


def frame(lam, est):
    fig = Figure(figsize=(6.0, 3.8), layout="constrained")
    ax = fig.add_subplot()
    ax.hist(est.numpy(), bins=torch.linspace(lo, hi, 41).numpy(), color="tab:blue", alpha=0.8)
    ax.axvline(float(A_true[cell, action]), color="k", lw=2, label="exact A(s, a)")
    ax.axvline(float(A_true[cell, action] - (V_critic - V_true)[cell]), color="0.5", lw=2, ls=":",
               label="A(s, a) − critic's error at s")
    ax.axvline(float(est.mean()), color="tab:red", lw=2, ls="--", label="mean of the estimates")
    ax.set_xlim(lo, hi)
    ax.set_xlabel(f"Â for 'right' in cell {cell}")
    ax.set_title(f"λ = {lam:.2f}: mean error {float(est.mean() - A_true[cell, action]):+.2f}, sd {float(est.std()):.2f}")
    ax.legend(loc="upper left", fontsize=10)
    return fig


FramePlayer([frame(lam, e) for lam, e in zip(player_lams, estimates)],
            labels=[f"λ = {lam:.2f}" for lam in player_lams], interval_ms=600)

# %% [markdown]
# ## 3. PPO: many steps on one batch, clipped
#
# A rollout costs environment time, so we want to take several gradient steps on it. But the policy gradient is
# only valid near the policy that collected the data: far from it, the advantages describe someone else's
# behaviour. PPO (Schulman et al. 2017) optimises a surrogate in the probability ratio
# $r_t(\theta) = \pi_\theta(a_t \mid s_t) / \pi_{\theta_\text{old}}(a_t \mid s_t)$ and removes the incentive to move
# it outside $[1 - \epsilon, 1 + \epsilon]$ (eq. 7):
#
# $$ L^{\mathrm{CLIP}}(\theta) = \mathbb E_t\Big[\min\big(r_t(\theta) \hat A_t,\ \operatorname{clip}(r_t(\theta), 1 - \epsilon, 1 + \epsilon)\, \hat A_t\big)\Big]. $$
#
# At $r = 1$ its gradient is the policy gradient. For a good action ($\hat A > 0$) the objective stops rising once
# the action has become $1 + \epsilon$ times more likely; for a bad one it stops falling at $1 - \epsilon$. The
# $\min$ keeps the unclipped term where it is *worse*, so the surrogate is a pessimistic bound: moving further
# never looks better than it is. `dlcourse.rl.ppo.clipped_surrogate` is this line; `ppo_update` runs
# `epochs` passes of minibatch steps on it, with the critic's loss and an entropy bonus (eq. 9). The
# entropy bonus is where GAIL's causal-entropy term $-\lambda H(\pi)$ (Ho & Ermon 2016, eq. 16) enters.

# %%
from dlcourse.rl.ppo import clipped_surrogate

ratios = torch.linspace(0.0, 2.0, 201)
fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.6), sharey=True, layout="constrained")
for ax, a_hat in zip(axes, (1.0, -1.0)):
    surrogate = [float(clipped_surrogate(r[None], torch.tensor([a_hat]), 0.2)) for r in ratios]
    ax.plot(ratios, ratios * a_hat, color="0.6", ls=":", label="r·Â (unclipped)")
    ax.plot(ratios, surrogate, color="tab:blue", lw=2, label="L^CLIP")
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_xlabel("probability ratio r")
    ax.set_title(f"Â {'>' if a_hat > 0 else '<'} 0")
axes[0].legend()
plt.show()
print("L^CLIP at r = 1.5, A = +1:", float(clipped_surrogate(torch.tensor([1.5]), torch.tensor([1.0]), 0.2)),
      "| at r = 0.5, A = -1:", float(clipped_surrogate(torch.tensor([0.5]), torch.tensor([-1.0]), 0.2)))

# %% [markdown]
# ## The road not taken: TRPO
#
# The GAIL paper's inner loop is TRPO (Schulman et al. 2015), not PPO. TRPO asks the same question, how far may
# one batch move the policy, and answers it with a hard constraint: maximise the surrogate
# $\mathbb E[r_t(\theta) \hat A_t]$ subject to $\mathbb E_s[\mathrm{KL}(\pi_{\theta_\text{old}} \,\|\, \pi_\theta)] \le \delta$.
# Linearising the objective ($g$, the policy gradient) and taking the KL to second order ($F$, the Fisher
# information matrix) gives the **natural gradient** step $\Delta\theta = \sqrt{2\delta / g^\top F^{-1} g}\; F^{-1} g$.
# $F$ has as many rows as the network has weights, so TRPO never forms it: it solves $F x = g$ by **conjugate
# gradient**, using only Fisher-vector products (a second backward pass through the KL), then **backtracks** along
# $x$ until the true KL is below $\delta$ and the surrogate has improved.
#
# PPO replaces all of this with the clip and a few epochs of Adam: first-order, a dozen lines, and in Schulman et
# al.'s (2017) benchmarks as good or better on most tasks. That is why `dlcourse` (and most GAIL code since)
# runs PPO. The price is a looser guarantee: clipping removes the *incentive* to leave the trust region, it does
# not forbid it, which is why `ppo_update` reports an approximate KL for each update.

# %% [markdown]
# ## In GAIL
#
# `dlcourse.rl.gail.train_gail` runs this loop with one change: the rewards of each rollout are not the
# environment's but $-\log D(s, a)$ from the discriminator, recomputed after every discriminator update. GAE
# then turns those rewards into advantages, with the environment's `terminated` and `truncated` flags exactly as
# above (a CartPole episode cut at 500 steps is truncated, one where the pole fell is terminated), and PPO
# updates the policy. Lecture 14 compares the result with behavioural cloning; assignment a4 asks you for the
# discriminator's loss, the reward and GAE.
#
# ## A question to think about
#
# The reward $-\log D \ge 0$ is positive at every step. In a task where the expert *ends* episodes early
# (Acrobot swings up in about 80 steps, then the episode terminates), what will a policy trained on it learn
# about terminating, and which of the two flags carries the information? How would the reward
# $\log(1 - D) - \log D$ change that? (Measured on Acrobot with the course's code: from one expert trajectory,
GAIL with $-\log D$ learns to hang on until the time limit, while the sign-free reward reaches the expert's
return.)
