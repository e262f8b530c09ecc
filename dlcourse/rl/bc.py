"""Behavioural cloning: maximum likelihood of the expert's actions, the supervised baseline of GAIL.

Cloning fits π(a|s) to expert state-action pairs only, so its errors compound: a small mistake leads to a state the
expert never visited, where the policy is untrained (Ross & Bagnell 2010: the cost of a cloned policy grows as
O(T²ε) with the horizon T, against O(Tε) for methods that see their own states). GAIL uses the same data but
trains on the policy's own state distribution. Training uses the shared loop `dlcourse.train.fit`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import Config, TrainConfig
from ..errors import ConfigError
from .demos import Demonstrations
from .policies import ActorCritic

__all__ = ["BCConfig", "bc_loss", "train_bc"]


def bc_loss(policy: ActorCritic, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """-E_(s,a)~expert[log π(a|s)]: the negative log-likelihood of the expert's actions (Ho & Ermon 2016,
    Section 6, the behavioural-cloning baseline; Pomerleau 1991). obs (B, obs_dim), actions (B,) or (B, act_dim)."""
    return -policy.log_prob(obs, actions).mean()


@dataclass
class BCConfig(Config):
    """Behavioural cloning from the first ``n_trajectories`` episodes of a demonstrations file."""

    #: environment (short name or gymnasium id); must match the demonstrations
    env: str = "cartpole"
    #: demonstrations: a shipped name (e.g. "cartpole_demos") or a .safetensors path
    demos: str = "cartpole_demos"
    #: number of expert trajectories to learn from
    n_trajectories: int = 1
    #: keep every k-th state-action pair of each trajectory (20: sparse demonstrations, on which cloning's
    #: compounding error shows on CartPole; with every pair of one 500-step episode BC already matches the expert)
    subsample: int = 20
    #: hidden widths of the policy
    hidden: tuple[int, ...] = (64, 64)
    #: standardise observations with the demonstrations' mean and std
    normalise_obs: bool = False
    #: seed of the network's initialisation and the batches
    seed: int = 0
    #: evaluation episodes at the end
    eval_episodes: int = 10
    #: the shared training loop
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=2000, batch_size=64, lr=1e-3, grad_clip=None, ema_decay=None, bf16=False, log_every=200,
        ckpt_every=2000, progress=False))

    def check(self) -> None:
        from .envs import resolve_env_id

        resolve_env_id(self.env)
        if self.n_trajectories < 1 or self.subsample < 1:
            raise ConfigError(f"n_trajectories and subsample must be >= 1, got {self.n_trajectories}, {self.subsample}")


def train_bc(demos: Demonstrations, cfg: BCConfig, out_dir: str | Path | None = None, device=None,
             resume: bool = False, policy: ActorCritic | None = None):
    """Fit a policy to ``cfg.n_trajectories`` expert episodes by maximum likelihood; returns `fit`'s result."""
    from ..train import TensorSampler, fit
    from ..utils import seed_all

    data = demos.take(cfg.n_trajectories, cfg.subsample)
    discrete = not data.actions.is_floating_point()
    seed_all(cfg.seed)
    cfg.train.seed = cfg.seed
    if policy is None:
        act_dim = demos.meta.get("act_dim")
        if act_dim is None:  # files without act_dim: ask the environment (the data may never use the last action)
            from .envs import env_spaces

            act_dim = env_spaces(demos.meta.get("env_id", cfg.env))[1]
        policy = ActorCritic(data.obs.shape[1], int(act_dim), discrete, cfg.hidden)
    if cfg.normalise_obs:
        policy.set_obs_normalisation(data.obs)
    sampler = TensorSampler(data.obs, data.actions)

    def loss_fn(model: ActorCritic, batch) -> torch.Tensor:
        obs, actions = batch
        return bc_loss(model, obs.to(model.obs_mean.device), actions)

    return fit(policy, loss_fn, sampler, cfg.train, out_dir, kind="rl_bc", config=cfg, device=device, resume=resume)
