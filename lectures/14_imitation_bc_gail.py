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
# # 14 · Imitation as distribution matching: behavioural cloning and GAIL
#
# An expert shows us how to do a task: a handful of trajectories $(s_0, a_0, s_1, a_1, \dots)$, no reward, and
# no chance to ask for more. Two ways to turn that into a policy:
#
# - **Behavioural cloning** (BC) treats the pairs as a supervised data set and maximises
#   $\mathbb E_{(s,a) \sim \text{expert}}[\log \pi(a \mid s)]$. It only ever sees the *expert's* states. A small
#   mistake takes the learner to a state the expert never visited, where it was never trained, where it makes a
#   bigger mistake: errors compound. Over a horizon $T$ the cost of a cloned policy with per-step error
#   $\varepsilon$ can grow like $T^2 \varepsilon$, against $T \varepsilon$ for a learner trained on its own states
#   (Ross & Bagnell 2010).
# - **Generative adversarial imitation learning** (GAIL, Ho & Ermon 2016) matches *occupancy measures*: the
#   distribution $\rho_\pi(s, a)$ of state-action pairs a policy visits. It is the GAN game of lecture 12 with
#   the generator replaced by a policy acting in the environment (eq. (16)):
#
# $$ \min_\pi \max_D\; \mathbb E_{\pi}[\log D(s,a)] + \mathbb E_{\pi_E}[\log(1 - D(s,a))] - \lambda H(\pi). $$
#
# Here $D(s,a)$ is the probability that a pair came from the *policy*. The policy cannot backpropagate through
# the environment, so it is trained by reinforcement learning (PPO here, as in lecture 13; TRPO in the paper) with the cost
# $\log D(s,a)$ of Algorithm 1, i.e. the reward $r(s, a) = -\log D(s, a) \ge 0$: large where the pair looks
# like the expert's. Because the policy is trained on *its own* rollouts, the states it drifts into are exactly
# where the discriminator, and so the reward, teaches it to come back.

# %% [markdown]
# ## The shipped expert, its demonstrations and two imitators
#
# All three policies were trained offline (`dlcourse train expert|bc|gail`, commands in
# `dlcourse/checkpoints/manifest.json`): a PPO expert that balances CartPole for the full 500 steps, BC from
# **one** demonstration and GAIL from **four**. Both imitators saw every 20th state-action pair only (25 pairs per
# trajectory): sparse data, as a robot's logged demonstrations often are.

# %%
import torch

from dlcourse.rl.demos import load_demos
from dlcourse.rl.policies import load_policy
from dlcourse.rl.ppo import evaluate, normalised_return

demos = load_demos("cartpole_demos", "cartpole")
policies = {name: load_policy(f"cartpole_{name}")[0] for name in ("expert", "bc", "gail")}
print(f"demonstrations: {demos.n_episodes} episodes, {len(demos)} pairs, obs {tuple(demos.obs.shape)}, "
      f"expert return {demos.meta['expert_return']:.0f}, random return {demos.meta['random_return']:.1f}")
for name in ("bc", "gail"):
    _, meta = load_policy(f"cartpole_{name}")
    print(f"{name:>4s}: trained from {meta['config']['n_trajectories']} trajectory(ies), every "
          f"{meta['config']['subsample']}th pair")

# %% [markdown]
# The normalised return is 0 for uniformly random actions and 1 for the expert. Ten fresh episodes each, and
# the *agreement*: on how many of the expert's 5000 demonstrated states the policy picks the expert's action.

# %% tags=["nbval-ignore-output"]
returns = {name: evaluate(pol, "cartpole", n_episodes=10, seed=10_000) for name, pol in policies.items()}
for name, rets in returns.items():
    mean = sum(rets) / len(rets)
    norm = normalised_return(mean, demos.meta["random_return"], demos.meta["expert_return"])
    with torch.no_grad():
        agree = (policies[name].act(demos.obs, deterministic=True) == demos.actions).float().mean()
    print(f"{name:>6s}: normalised {norm:.3f}   agreement {agree:.3f}   returns {[int(r) for r in rets]}")

# %% [markdown]
# BC balances the pole in most episodes but loses some after a couple of hundred steps. A rollout, written out
# with gymnasium directly, shows how:

# %% tags=["nbval-ignore-output"]
import os

import gymnasium as gym
import numpy as np

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # frames are drawn off-screen: no window (or display) needed


def rollout(policy, seed, render=False, every=4):
    """One deterministic episode of CartPole-v1 from env seed ``seed``: states (T+1, 4) and, if ``render``,
    every ``every``-th frame as an RGB array (H, W, 3)."""
    env = gym.make("CartPole-v1", render_mode="rgb_array" if render else None)
    obs, _ = env.reset(seed=seed)
    states, frames = [obs], []
    for t in range(500):
        if render and t % every == 0:
            frames.append(env.render())
        action = policy.act(torch.as_tensor(obs)[None], deterministic=True).item()
        obs, reward, terminated, truncated, _ = env.step(action)
        states.append(obs)
        if terminated or truncated:
            break
    if render:
        frames.append(env.render())
    env.close()
    return torch.as_tensor(np.stack(states)), frames


seed = 10_000 + next(i for i, r in enumerate(returns["bc"]) if r < 500)  # the first episode BC loses
runs = {name: rollout(pol, seed, render=True) for name, pol in policies.items()}
for name, (states, frames) in runs.items():
    print(f"{name:>6s}: {len(states) - 1} steps, {len(frames)} frames; final cart position {states[-1, 0]:+.2f}, "
          f"pole angle {states[-1, 2]:+.3f} rad")

# %% [markdown]
# ## Compounding error, measured
#
# How far from the demonstrations does each policy wander? For every state it visits, take the distance to the
# nearest of the expert's 5000 demonstrated states (in standardised coordinates). In the episode BC loses, its
# cart drifts further from the centre than the expert ever went; the distance to the demonstrations creeps up,
# then runs away: the policy is in states it was never shown, it has no idea how to come back, and the pole
# falls (the episode ends at 0.21 rad). GAIL's distance stays low.

# %%
import matplotlib.pyplot as plt

mean, std = demos.obs.mean(0), demos.obs.std(0)


def distance_to_demos(states):
    """Distance from each state (T, 4) to its nearest demonstrated state, in units of the demos' std."""
    return torch.cdist((states - mean) / std, (demos.obs - mean) / std).min(dim=1).values  # (T,)


from dlcourse.viz.player import hall_style

hall_style()  # fonts a lecture hall can read: 12 pt ticks, 14 pt titles
fig, axes = plt.subplots(1, 3, figsize=(12.0, 3.8), layout="constrained")
colors = {"expert": "k", "bc": "tab:red", "gail": "tab:blue"}
for name, (states, _) in runs.items():
    axes[0].plot(states[:, 0], color=colors[name], label=name)
    axes[1].plot(states[:, 2], color=colors[name])
    axes[2].plot(distance_to_demos(states.float()), color=colors[name])
axes[0].axhline(2.4, color="gray", ls="--", lw=0.8)
axes[0].axhline(-2.4, color="gray", ls="--", lw=0.8)
for ax, title in zip(axes, ["cart position (track ends at ±2.4)", "pole angle (rad)", "distance to nearest demo state"]):
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("step")
axes[0].legend(fontsize=8)
plt.show()

# %% [markdown]
# Watch the same episode, one policy above the other: expert, BC, GAIL (a policy's last frame stays once its
# episode ends).

# %% tags=["nbval-ignore-output"]
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dlcourse.viz import FramePlayer

lengths = {name: len(states) - 1 for name, (states, _) in runs.items()}
titles = {"expert": "expert", "bc": f"BC (falls at step {lengths['bc']})", "gail": "GAIL"}
ROWS = slice(140, 330)  # the band of the 600x400 rendering where cart and pole can be

fig = Figure(figsize=(6.4, 5.2), layout="constrained")
canvas = FigureCanvasAgg(fig)
axes = fig.subplots(3, 1)
pictures = {}
for ax, (name, (_, frames)) in zip(axes, runs.items()):
    pictures[name] = ax.imshow(frames[0][ROWS])
    ax.set_title(titles[name], loc="left")
    ax.set_axis_off()
canvas.draw()
fig.set_layout_engine("none")  # the same layout for every frame


def stacked(t):
    """Frame t of each run (held at its last frame), one above the other: an (H, W, 3) image."""
    for name, (_, frames) in runs.items():
        pictures[name].set_data(frames[min(t, len(frames) - 1)][ROWS])
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()  # (H, W, 3)


n_frames = max(len(frames) for _, frames in runs.values())
labels = [f"step {min(4 * t, 500):3d}" for t in range(n_frames)]
player = FramePlayer([stacked(t) for t in range(n_frames)], labels=labels, interval_ms=60)
player.show(len(runs["bc"][1]) - 1)  # the moment BC's episode ends; press ▶ to replay from any point

# %% [markdown]
# ## What GAIL paid for it
#
# BC needs no interaction with the environment at all. GAIL needed about 300,000 environment steps (its own
# rollouts) to learn from the same kind of data, plus a discriminator trained along the way. On CartPole, BC
# catches up once it is given more pairs (every pair of one 500-step episode is already enough).
#
# One caveat, measured with the same code: the reward $-\log D$ is positive everywhere, so it also pays the agent
# simply for staying alive, and in CartPole staying alive *is* the task. With the sign-free reward
# $\log(1 - D) - \log D$ (`--set reward=logit`), which is mostly negative while the discriminator wins, the
# same GAIL run first learns to end its episodes quickly (returns near 10 for its first 150,000 steps) and
# reaches the expert's return only after about 215,000 steps, against about 60,000 with $-\log D$. The sign
# convention is part of the algorithm. And a full return is not the same as copying the expert: on the
# expert's own states, the shipped GAIL policy picks the expert's action less often than BC does (the agreement
# printed above); it found *a* way to balance, guided by a reward that favours expert-like pairs.
#
# ## A question to think about
#
# BC's failure here starts as a slow drift of the cart, long before the pole falls. Why would the cart's
# position be the first thing a cloned policy gets wrong, given that the expert's episodes stay near the centre
# of the track and that only every 20th of their states was kept? What data would you add to fix it without running GAIL (think of DAgger: Ross et al.
# 2011), and what would that cost the expert?
