"""Proximal policy optimisation with generalised advantage estimation: the policy-gradient inner loop.

The pieces, each a small function, are what both the expert trainer (`train_ppo`) and GAIL's loop use:

    rollout = collect_rollout(env, policy, obs, n_steps)       # (T, N, ...) tensors
    adv, ret = gae(rewards, values, next_values, terminated, dones, gamma, lam)
    ppo_update(policy, optimizer, rollout, adv, ret, cfg)

``gae`` is the fast path (vectorised over environments, one loop over time); ``gae_reference`` is the same
recursion written out for one environment at a time in plain Python floats, as in the lecture; a test checks
that they agree. TRPO (the paper's inner loop) is not implemented: PPO's clipped surrogate is its first-order
stand-in (Schulman et al. 2017, Section 3).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from ..config import Config
from ..errors import ConfigError
from .envs import VecEnv, make_env
from .policies import ActorCritic

__all__ = ["PPOConfig", "gae", "gae_reference", "collect_rollout", "Rollout", "clipped_surrogate", "ppo_loss",
           "ppo_update", "evaluate", "normalised_return", "train_ppo", "PPOResult"]


@dataclass
class PPOConfig(Config):
    """PPO's hyperparameters (defaults: a CartPole setting that reaches 500 in ~100k steps)."""

    #: environments stepped in parallel
    num_envs: int = 8
    #: steps per environment per rollout (a batch is num_envs * n_steps transitions)
    n_steps: int = 32
    #: environment steps in the whole run
    total_steps: int = 100_000
    #: passes over each rollout
    epochs: int = 20
    #: transitions per gradient step
    minibatch_size: int = 256
    #: Adam learning rate
    lr: float = 1e-3
    #: decay the learning rate linearly to 0 over the run
    anneal_lr: bool = True
    #: discount γ
    gamma: float = 0.98
    #: GAE's λ
    gae_lambda: float = 0.8
    #: PPO's clip range ε
    clip: float = 0.2
    #: weight of the entropy bonus (GAIL's causal-entropy term λ H(π) enters here)
    ent_coef: float = 0.0
    #: weight of the value loss
    vf_coef: float = 0.5
    #: clip the global gradient norm
    max_grad_norm: float = 0.5
    #: standardise advantages within each minibatch
    norm_adv: bool = True
    #: hidden widths of the policy and value networks
    hidden: tuple[int, ...] = (64, 64)
    #: initial log σ of a Gaussian policy (continuous actions)
    log_std_init: float = 0.0

    def check(self) -> None:
        if min(self.num_envs, self.n_steps, self.epochs, self.minibatch_size) < 1 or self.total_steps < 0:
            raise ConfigError("num_envs, n_steps, epochs and minibatch_size must be >= 1 and total_steps >= 0")
        if not (0 < self.gamma <= 1 and 0 <= self.gae_lambda <= 1 and self.clip > 0 and self.lr > 0):
            raise ConfigError(f"need 0 < gamma <= 1, 0 <= gae_lambda <= 1, clip > 0, lr > 0 (got {self.gamma}, "
                              f"{self.gae_lambda}, {self.clip}, {self.lr})")


# ---------------------------------------------------------------------------------------------------------------
# generalised advantage estimation
# ---------------------------------------------------------------------------------------------------------------


def gae(rewards: torch.Tensor, values: torch.Tensor, next_values: torch.Tensor, terminated: torch.Tensor,
        dones: torch.Tensor, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates and λ-returns, Schulman et al. 2016 (GAE), eqs. (11)-(16).

    δ_t = r_t + γ (1 - terminated_t) V(s_{t+1}) - V(s_t)            (TD residual, eq. 10)
    Â_t = δ_t + γλ (1 - done_t) Â_{t+1}                             (eq. 16 as a backward recursion)

    All inputs are (T, N). ``next_values`` is V of the true next state (the final observation where an episode
    ended), so a *truncated* episode bootstraps and a *terminated* one does not; ``dones`` = terminated or
    truncated stops the sum at episode boundaries. Returns (advantages, returns = advantages + values), (T, N).
    """
    T = rewards.shape[0]
    not_term = 1.0 - terminated.to(rewards.dtype)  # (T, N)
    not_done = 1.0 - dones.to(rewards.dtype)       # (T, N)
    deltas = rewards + gamma * not_term * next_values - values  # (T, N)
    adv = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])  # (N,)
    for t in reversed(range(T)):
        running = deltas[t] + gamma * lam * not_done[t] * running
        adv[t] = running
    return adv, adv + values


def gae_reference(rewards, values, next_values, terminated, dones, gamma: float, lam: float):
    """`gae` written out for one environment at a time with Python floats (the lecture's version).

    Inputs are (T, N) nested lists or tensors; returns (advantages, returns) as lists of lists (T, N).
    """
    rewards, values, next_values = _as_lists(rewards), _as_lists(values), _as_lists(next_values)
    terminated, dones = _as_lists(terminated), _as_lists(dones)
    T, N = len(rewards), len(rewards[0])
    adv = [[0.0] * N for _ in range(T)]
    for n in range(N):
        a_next = 0.0
        for t in range(T - 1, -1, -1):
            bootstrap = 0.0 if terminated[t][n] else gamma * next_values[t][n]
            delta = rewards[t][n] + bootstrap - values[t][n]
            if dones[t][n]:
                a_next = 0.0  # the next step belongs to another episode
            a_next = delta + gamma * lam * a_next
            adv[t][n] = a_next
    returns = [[adv[t][n] + values[t][n] for n in range(N)] for t in range(T)]
    return adv, returns


def _as_lists(x):
    return x.tolist() if isinstance(x, torch.Tensor) else [list(row) for row in x]


# ---------------------------------------------------------------------------------------------------------------
# rollouts
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Rollout:
    obs: torch.Tensor          #: (T, N, obs_dim) s_t
    actions: torch.Tensor      #: (T, N) or (T, N, act_dim) a_t
    log_probs: torch.Tensor    #: (T, N) log π_old(a_t|s_t)
    values: torch.Tensor       #: (T, N) V(s_t)
    next_values: torch.Tensor  #: (T, N) V(s_{t+1}) of the true next state
    rewards: torch.Tensor      #: (T, N) environment rewards (GAIL replaces them)
    terminated: torch.Tensor   #: (T, N) bool
    dones: torch.Tensor        #: (T, N) bool, terminated or truncated
    next_obs: torch.Tensor     #: (T, N, obs_dim) s_{t+1}, the true next state (the final one where an episode ended)
    last_obs: torch.Tensor = field(default=None)  #: (N, obs_dim) where the next rollout starts
    episode_returns: list[float] = field(default_factory=list)  #: environment returns of episodes finished here

    def flat(self, name: str) -> torch.Tensor:
        """Field ``name`` with (T, N) merged into one batch dimension: (T*N, ...)."""
        x = getattr(self, name)
        return x.reshape(-1, *x.shape[2:])


@torch.no_grad()
def collect_rollout(env: VecEnv, policy: ActorCritic, obs: torch.Tensor, n_steps: int) -> Rollout:
    """Run ``policy`` for ``n_steps`` in every sub-environment of ``env``, starting from ``obs`` (N, obs_dim).

    Tensors are kept on the policy's device; the environment itself always runs on the CPU.
    """
    device = policy.obs_mean.device
    obs_l, act_l, logp_l, val_l, rew_l, term_l, done_l, nxt_l, ep_returns = [], [], [], [], [], [], [], [], []
    obs = obs.to(device)
    for _ in range(n_steps):
        d = policy.dist(obs)
        a = d.sample()                 # (N,) or (N, act_dim)
        step = env.step(a)
        obs_l.append(obs)
        act_l.append(a)
        logp_l.append(d.log_prob(a))
        val_l.append(policy.value(obs))
        rew_l.append(step.reward)
        term_l.append(step.terminated)
        done_l.append(step.terminated | step.truncated)
        nxt_l.append(step.final_obs)
        ep_returns += step.episode_returns
        obs = step.obs.to(device)
    next_obs = torch.stack(nxt_l).to(device)  # (T, N, obs_dim)
    T, N = next_obs.shape[:2]
    next_values = policy.value(next_obs.reshape(T * N, -1)).reshape(T, N)
    return Rollout(obs=torch.stack(obs_l), actions=torch.stack(act_l), log_probs=torch.stack(logp_l),
                   values=torch.stack(val_l), next_values=next_values, rewards=torch.stack(rew_l).to(device),
                   terminated=torch.stack(term_l).to(device), dones=torch.stack(done_l).to(device),
                   next_obs=next_obs, last_obs=obs, episode_returns=ep_returns)


# ---------------------------------------------------------------------------------------------------------------
# the PPO objective and update
# ---------------------------------------------------------------------------------------------------------------


def clipped_surrogate(ratio: torch.Tensor, advantages: torch.Tensor, clip: float) -> torch.Tensor:
    """L^CLIP = E[min(r_t Â_t, clip(r_t, 1-ε, 1+ε) Â_t)], Schulman et al. 2017 (PPO), eq. (7). Returns a scalar."""
    return torch.min(ratio * advantages, ratio.clamp(1 - clip, 1 + clip) * advantages).mean()


def ppo_loss(policy: ActorCritic, obs, actions, old_log_probs, advantages, returns, cfg: PPOConfig):
    """-(L^CLIP - c₁ L^VF + c₂ H[π]), PPO eq. (9), to minimise; also returns a dict of diagnostics."""
    d = policy.dist(obs)
    log_probs = d.log_prob(actions)                       # (B,)
    ratio = (log_probs - old_log_probs).exp()             # (B,) π_θ / π_old
    if cfg.norm_adv and advantages.numel() > 1:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    pg = clipped_surrogate(ratio, advantages, cfg.clip)
    vf = 0.5 * (policy.value(obs) - returns).pow(2).mean()
    ent = d.entropy().mean()
    loss = -(pg - cfg.vf_coef * vf + cfg.ent_coef * ent)
    with torch.no_grad():
        approx_kl = ((ratio - 1) - ratio.log()).mean()  # k3 estimator of KL(π_old ‖ π_θ)
    return loss, {"policy": pg.detach(), "value": vf.detach(), "entropy": ent.detach(), "approx_kl": approx_kl}


def ppo_update(policy: ActorCritic, optimizer: torch.optim.Optimizer, rollout: Rollout, advantages: torch.Tensor,
               returns: torch.Tensor, cfg: PPOConfig, generator: torch.Generator | None = None) -> dict[str, float]:
    """``cfg.epochs`` passes of minibatch Adam steps on the rollout (PPO, Algorithm 1); returns mean diagnostics."""
    obs, actions, logp = rollout.flat("obs"), rollout.flat("actions"), rollout.flat("log_probs")
    adv, ret = advantages.reshape(-1), returns.reshape(-1)
    B = obs.shape[0]
    mb = min(cfg.minibatch_size, B)
    stats: dict[str, float] = {}
    count = 0
    for _ in range(cfg.epochs):
        perm = torch.randperm(B, generator=generator).to(obs.device)
        for start in range(0, B - mb + 1, mb):
            idx = perm[start:start + mb]
            loss, info = ppo_loss(policy, obs[idx], actions[idx], logp[idx], adv[idx], ret[idx], cfg)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
            optimizer.step()
            for k, v in info.items():
                stats[k] = stats.get(k, 0.0) + float(v)
            count += 1
    return {k: v / max(count, 1) for k, v in stats.items()}


# ---------------------------------------------------------------------------------------------------------------
# evaluation
# ---------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(policy: ActorCritic | None, env_name: str, n_episodes: int = 10, seed: int = 10_000,
             deterministic: bool = True, max_steps: int = 100_000) -> list[float]:
    """Undiscounted returns of ``n_episodes`` episodes (env i seeded ``seed + i``); ``policy=None``: uniform random
    actions from a torch generator seeded with ``seed`` (the 0 of the normalised return)."""
    env = make_env(env_name, num_envs=n_episodes, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    obs = env.reset()
    returns: list[float | None] = [None] * n_episodes
    running = torch.zeros(n_episodes, dtype=torch.float64)
    for _ in range(max_steps):
        if policy is None:
            if env.discrete:
                a = torch.randint(env.act_dim, (n_episodes,), generator=gen)
            else:
                low = torch.as_tensor(env.action_space.low, dtype=torch.float32)
                high = torch.as_tensor(env.action_space.high, dtype=torch.float32)
                a = low + (high - low) * torch.rand(n_episodes, env.act_dim, generator=gen)
        else:
            a = policy.act(obs, deterministic=deterministic)
        step = env.step(a)
        running += step.reward.double()
        for i in torch.nonzero(step.terminated | step.truncated).flatten().tolist():
            if returns[i] is None:
                returns[i] = float(running[i])
        running[step.terminated | step.truncated] = 0
        obs = step.obs
        if all(r is not None for r in returns):
            break
    env.close()
    return [float(r) if r is not None else float(running[i]) for i, r in enumerate(returns)]


def normalised_return(ret: float, random_return: float, expert_return: float) -> float:
    """(R - R_random) / (R_expert - R_random): 0 for the uniform random policy, 1 for the expert."""
    if expert_return == random_return:
        raise ValueError("expert and random returns are equal; the normalised return is undefined")
    return (ret - random_return) / (expert_return - random_return)


# ---------------------------------------------------------------------------------------------------------------
# training an expert
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class PPOResult:
    policy: ActorCritic
    env_steps: int                   #: environment steps taken
    wall_time: float                 #: seconds
    history: list[dict]              #: one dict per iteration: step, mean episode return, losses


def train_ppo(env_name: str, cfg: PPOConfig, seed: int = 0, device: torch.device | str | None = None,
              policy: ActorCritic | None = None, log_every: int = 10,
              callback: Callable[[int, dict], None] | None = None) -> PPOResult:
    """Train a policy on ``env_name``'s own reward with PPO + GAE; reproducible from ``seed`` (on one thread)."""
    from ..utils import seed_all

    seed_all(seed)
    env = make_env(env_name, cfg.num_envs, seed=seed)
    if policy is None:
        policy = ActorCritic(env.obs_dim, env.act_dim, env.discrete, cfg.hidden, cfg.log_std_init)
    policy.to(device or "cpu")
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.lr, eps=1e-5)
    gen = torch.Generator().manual_seed(seed)
    obs = env.reset()
    batch = cfg.num_envs * cfg.n_steps
    iters = max(1, cfg.total_steps // batch)
    history, recent = [], []
    t0 = time.perf_counter()
    for it in range(iters):
        if cfg.anneal_lr:
            opt.param_groups[0]["lr"] = cfg.lr * (1 - it / iters)
        ro = collect_rollout(env, policy, obs, cfg.n_steps)
        obs = ro.last_obs
        adv, ret = gae(ro.rewards, ro.values, ro.next_values, ro.terminated, ro.dones, cfg.gamma, cfg.gae_lambda)
        stats = ppo_update(policy, opt, ro, adv, ret, cfg, gen)
        recent = (recent + ro.episode_returns)[-20:]
        row = {"step": (it + 1) * batch, "episode_return": sum(recent) / len(recent) if recent else float("nan"),
               **stats, "time": time.perf_counter() - t0}
        history.append(row)
        if callback is not None:
            callback(it, row)
        if log_every and (it + 1) % log_every == 0:
            print(f"ppo {env_name}: step {row['step']:>7d}  return {row['episode_return']:7.1f}  "
                  f"kl {row['approx_kl']:.4f}  {row['time']:.0f}s", flush=True)
    env.close()
    return PPOResult(policy.eval(), iters * batch, time.perf_counter() - t0, history)
