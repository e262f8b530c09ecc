"""Generative adversarial imitation learning (Ho & Ermon 2016): a discriminator between expert and policy
state-action pairs, and a policy trained by PPO to fool it.

The game (Ho & Ermon 2016, eq. (16))::

    min_π max_D  E_π[log D(s,a)] + E_πE[log(1 - D(s,a))] - λ H(π)

**Sign convention (the paper's).** D(s,a) ∈ (0, 1) is the probability that (s, a) came from the *policy*: D → 1
on the policy's pairs and D → 0 on the expert's (the discriminator *maximises* eq. (16) over D, so it pushes log D
up on policy pairs and log(1 - D) up on expert pairs). The policy *minimises* eq. (16), i.e. it minimises
E_π[log D(s,a)] - λ H(π): an RL problem with the cost c(s,a) = log D(s,a) (Algorithm 1, step 5) plus the
entropy bonus. We maximise the equivalent reward

    r(s, a) = -c(s, a) = -log D(s, a) = softplus(-logit(s, a))   ≥ 0,

which is large where the pair looks like the expert's (D → 0) and near 0 where it is plainly the policy's (D → 1).
The reward is positive everywhere, so it also pays the agent for staying alive; in CartPole this matches the
expert (who never falls), in tasks where an expert ends episodes early it would be a bias (the other sign
convention, r = log(1 - D), is negative and pays for ending episodes instead; see Kostrikov et al. 2019).
``GAILConfig.reward = "logit"`` uses r = log(1 - D) - log D = -logit(s, a) instead, whose sign
carries no survival bonus (the form of the AIRL reward, Fu et al. 2018); the benchmark uses it as a control.

The causal-entropy term λ H(π) of eq. (16) is PPO's entropy bonus (``ppo.ent_coef``). The paper's inner loop is
TRPO; here it is PPO with GAE (`dlcourse.rl.ppo`), the usual substitute.
"""

from __future__ import annotations

import time
import typing
from dataclasses import dataclass, field
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config
from ..errors import ConfigError
from .demos import Demonstrations
from .envs import make_env, resolve_env_id
from .policies import ActorCritic, mlp
from .ppo import PPOConfig, collect_rollout, evaluate, gae, normalised_return, ppo_update

__all__ = ["GAILConfig", "Discriminator", "discriminator_loss", "gail_reward", "REWARDS", "train_gail", "GAILResult"]


class Discriminator(nn.Module):
    """logit of D(s, a) = P[(s, a) came from the policy]; a tanh MLP on [s, one-hot(a)] (or [s, a] if continuous)."""

    def __init__(self, obs_dim: int, act_dim: int, discrete: bool, hidden: tuple[int, ...] = (64, 64)) -> None:
        super().__init__()
        self.obs_dim, self.act_dim, self.discrete = obs_dim, act_dim, discrete
        self.net = mlp(obs_dim + act_dim, 1, hidden)
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))

    def features(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """[normalised s, one-hot a or a], shape (B, obs_dim + act_dim)."""
        obs = (obs.to(self.obs_mean.device) - self.obs_mean) / self.obs_std
        actions = actions.to(obs.device)
        a = F.one_hot(actions.long(), self.act_dim).to(obs.dtype) if self.discrete else actions.to(obs.dtype)
        return torch.cat([obs, a.reshape(obs.shape[0], -1)], dim=-1)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """logit D(s, a), shape (B,)."""
        return self.net(self.features(obs, actions)).squeeze(-1)


def discriminator_loss(logits_policy: torch.Tensor, logits_expert: torch.Tensor) -> torch.Tensor:
    """-(E_π[log D] + E_πE[log(1 - D)]), the negated inner objective of Ho & Ermon 2016, eq. (16) (Algorithm 1,
    step 4): binary cross-entropy with label 1 for policy pairs and 0 for expert pairs. Inputs are logits (B,)."""
    # -log σ(x) = softplus(-x) and -log(1 - σ(x)) = softplus(x), computed stably
    return F.softplus(-logits_policy).mean() + F.softplus(logits_expert).mean()


RewardKind = Literal["neg_log_d", "logit"]
REWARDS = typing.get_args(RewardKind)


def gail_reward(logits: torch.Tensor, kind: str = "neg_log_d") -> torch.Tensor:
    """The policy's reward from discriminator logits (B,) (logit of D = P[policy]); shape as ``logits``.

    ``"neg_log_d"``: r = -log D(s, a) = softplus(-logit), the negated cost log D(s, a) of Ho & Ermon 2016,
    Algorithm 1, step 5 (see the module docstring for the sign). Non-negative; larger where the pair looks like
    the expert's (D → 0).
    ``"logit"``: r = log(1 - D) - log D = -logit, the same ordering of pairs without a sign (Fu et al. 2018).
    """
    if kind == "neg_log_d":
        return F.softplus(-logits)
    if kind == "logit":
        return -logits
    raise ConfigError(f"unknown GAIL reward {kind!r}; choose one of {', '.join(REWARDS)}")


@dataclass
class GAILConfig(Config):
    """GAIL: demonstrations, the discriminator, and the PPO inner loop (whose ent_coef is the causal-entropy λ)."""

    #: environment (short name or gymnasium id); must match the demonstrations
    env: str = "cartpole"
    #: demonstrations: a shipped name (e.g. "cartpole_demos") or a .safetensors path
    demos: str = "cartpole_demos"
    #: number of expert trajectories to imitate
    n_trajectories: int = 4
    #: keep every k-th state-action pair of each trajectory (20 as in the bc preset: see dlcourse.rl.bc)
    subsample: int = 20
    #: discriminator hidden widths
    disc_hidden: tuple[int, ...] = (64, 64)
    #: discriminator Adam learning rate
    disc_lr: float = 3e-4
    #: discriminator gradient steps per PPO iteration
    disc_steps: int = 4
    #: pairs from each side (policy, expert) per discriminator step
    disc_batch: int = 256
    #: standardise observations in the discriminator with the expert's mean and std
    normalise_obs: bool = False
    #: the policy's reward: "neg_log_d" (-log D, the paper's) or "logit" (log(1 - D) - log D, no survival bonus)
    reward: RewardKind = "neg_log_d"
    #: the policy-gradient inner loop
    ppo: PPOConfig = field(default_factory=lambda: PPOConfig(total_steps=300_000))
    #: evaluate the deterministic policy every this many PPO iterations (0: only at the end)
    eval_every: int = 20
    #: episodes per evaluation
    eval_episodes: int = 10
    #: seed of networks, environments and batches
    seed: int = 0

    def check(self) -> None:
        resolve_env_id(self.env)
        if self.n_trajectories < 1 or self.subsample < 1 or self.disc_steps < 0 or self.disc_batch < 1:
            raise ConfigError("n_trajectories, subsample, disc_batch must be >= 1 and disc_steps >= 0")


@dataclass
class GAILResult:
    policy: ActorCritic
    discriminator: Discriminator
    env_steps: int          #: environment steps taken by the policy
    wall_time: float        #: seconds
    history: list[dict]     #: per iteration: step, time, losses, mean GAIL reward, and evaluations where done


def _discriminator_step(disc: Discriminator, opt: torch.optim.Optimizer, obs_p, act_p, obs_e, act_e) -> dict:
    logits_p, logits_e = disc(obs_p, act_p), disc(obs_e, act_e)
    loss = discriminator_loss(logits_p, logits_e)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    with torch.no_grad():
        acc = 0.5 * ((logits_p > 0).float().mean() + (logits_e < 0).float().mean())
    return {"disc_loss": float(loss.detach()), "disc_acc": float(acc)}


def train_gail(demos: Demonstrations, cfg: GAILConfig, device: torch.device | str | None = None,
               log_every: int = 10, callback: Callable[[int, dict], None] | None = None) -> GAILResult:
    """Ho & Ermon 2016, Algorithm 1 with PPO in place of TRPO: per iteration, roll out π, take ``disc_steps``
    discriminator steps on (policy, expert) batches, relabel the rollout with r = -log D, and update π by PPO."""
    from ..utils import seed_all

    data = demos.take(cfg.n_trajectories, cfg.subsample)
    seed_all(cfg.seed)
    pcfg = cfg.ppo
    env = make_env(cfg.env, pcfg.num_envs, seed=cfg.seed)
    device = torch.device(device or "cpu")
    policy = ActorCritic(env.obs_dim, env.act_dim, env.discrete, pcfg.hidden, pcfg.log_std_init).to(device)
    disc = Discriminator(env.obs_dim, env.act_dim, env.discrete, cfg.disc_hidden).to(device)
    if cfg.normalise_obs:
        disc.obs_mean.copy_(data.obs.mean(0))
        disc.obs_std.copy_(data.obs.std(0).clamp_min(1e-2))
    exp_obs, exp_act = data.obs.to(device), data.actions.to(device)
    opt = torch.optim.Adam(policy.parameters(), lr=pcfg.lr, eps=1e-5)
    dopt = torch.optim.Adam(disc.parameters(), lr=cfg.disc_lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    expert_return = float(demos.meta.get("expert_return", float("nan")))
    random_return = float(demos.meta.get("random_return", float("nan")))
    obs = env.reset()
    batch = pcfg.num_envs * pcfg.n_steps
    iters = max(1, pcfg.total_steps // batch)
    history: list[dict] = []
    t0 = time.perf_counter()
    for it in range(iters):
        if pcfg.anneal_lr:
            opt.param_groups[0]["lr"] = pcfg.lr * (1 - it / iters)
        ro = collect_rollout(env, policy, obs, pcfg.n_steps)
        obs = ro.last_obs
        obs_p, act_p = ro.flat("obs"), ro.flat("actions")  # (T*N, obs_dim), (T*N, ...)
        dstats: dict = {}
        for _ in range(cfg.disc_steps):
            ip = torch.randint(obs_p.shape[0], (cfg.disc_batch,), generator=gen).to(device)
            ie = torch.randint(exp_obs.shape[0], (cfg.disc_batch,), generator=gen).to(device)
            dstats = _discriminator_step(disc, dopt, obs_p[ip], act_p[ip], exp_obs[ie], exp_act[ie])
        with torch.no_grad():
            ro.rewards = gail_reward(disc(obs_p, act_p), cfg.reward).reshape(ro.rewards.shape)  # (T, N)
        adv, ret = gae(ro.rewards, ro.values, ro.next_values, ro.terminated, ro.dones, pcfg.gamma, pcfg.gae_lambda)
        stats = ppo_update(policy, opt, ro, adv, ret, pcfg, gen)
        row = {"step": (it + 1) * batch, "time": time.perf_counter() - t0, "gail_reward": float(ro.rewards.mean()),
               **dstats, **stats}
        if ro.episode_returns:
            row["train_return"] = sum(ro.episode_returns) / len(ro.episode_returns)
        if (cfg.eval_every and (it + 1) % cfg.eval_every == 0) or it == iters - 1:
            rets = evaluate(policy, cfg.env, cfg.eval_episodes, seed=10_000 + cfg.seed)
            row["eval_return"] = sum(rets) / len(rets)
            row["normalised_return"] = normalised_return(row["eval_return"], random_return, expert_return)
        history.append(row)
        if callback is not None:
            callback(it, row)
        if log_every and ((it + 1) % log_every == 0 or "eval_return" in row):
            extra = f"  eval {row['eval_return']:6.1f} ({row['normalised_return']:.3f})" if "eval_return" in row else ""
            print(f"gail {cfg.env}: step {row['step']:>7d}  D loss {row.get('disc_loss', float('nan')):.3f}  "
                  f"acc {row.get('disc_acc', float('nan')):.2f}  reward {row['gail_reward']:.3f}{extra}  "
                  f"{row['time']:.0f}s", flush=True)
    env.close()
    return GAILResult(policy.eval(), disc.eval(), iters * batch, time.perf_counter() - t0, history)
