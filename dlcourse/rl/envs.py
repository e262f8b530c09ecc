"""Gymnasium environments by short name, stepped in lock-step as one vectorised environment.

    env = make_env("cartpole", num_envs=8, seed=0)
    obs = env.reset()                                    # (N, obs_dim) float32 tensor
    step = env.step(actions)                             # actions (N,) or (N, act_dim)
    step.obs, step.reward, step.terminated, step.truncated, step.final_obs

`VecEnv` resets a sub-environment as soon as its episode ends, in the same step (gymnasium's "same-step"
autoreset): ``step.obs`` is then the first observation of the next episode and ``step.final_obs`` the last one of
the finished episode, which GAE needs to bootstrap a *truncated* episode (time limit) but not a *terminated* one.
Everything that leaves this module is a CPU tensor; policies move it to their own device.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ConfigError

__all__ = ["ENV_IDS", "resolve_env_id", "make_env", "VecEnv", "StepResult", "env_spaces"]

#: short names accepted by ``--env`` -> gymnasium ids (any registered gymnasium id is accepted as well)
ENV_IDS: dict[str, str] = {
    "cartpole": "CartPole-v1",
    "acrobot": "Acrobot-v1",
    "mountaincar": "MountainCar-v0",
    "pendulum": "Pendulum-v1",
    "hopper": "Hopper-v5",
    "halfcheetah": "HalfCheetah-v5",
    "walker2d": "Walker2d-v5",
}


def resolve_env_id(name: str) -> str:
    """``"cartpole"`` -> ``"CartPole-v1"``; a registered gymnasium id passes through; anything else is a ConfigError."""
    import gymnasium as gym

    key = str(name).strip()
    if key.lower() in ENV_IDS:
        return ENV_IDS[key.lower()]
    if key in gym.registry:
        return key
    raise ConfigError(f"unknown env {name!r}; choose one of: {', '.join(ENV_IDS)} (or a gymnasium id such as CartPole-v1)")


def _make_one(env_id: str, render_mode: str | None = None):
    import os

    import gymnasium as gym

    if render_mode == "rgb_array":  # frames are drawn off-screen: SDL needs no window (or display, or XDG dirs)
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    try:
        return gym.make(env_id, render_mode=render_mode)
    except gym.error.DependencyNotInstalled as exc:  # MuJoCo tasks need `pip install "gymnasium[mujoco]"`
        raise ConfigError(f"env {env_id} needs an extra package: {str(exc).splitlines()[0]}") from None


@dataclass
class StepResult:
    obs: torch.Tensor         #: (N, obs_dim) observation after the step (first of a new episode where one ended)
    reward: torch.Tensor      #: (N,) float32 environment reward
    terminated: torch.Tensor  #: (N,) bool, the MDP reached a terminal state (no bootstrapping)
    truncated: torch.Tensor   #: (N,) bool, the episode was cut by a time limit (bootstrap from final_obs)
    final_obs: torch.Tensor   #: (N, obs_dim) the true next observation (differs from obs where an episode ended)
    episode_returns: list[float]  #: returns of the episodes that ended in this step
    episode_lengths: list[int]    #: their lengths


class VecEnv:
    """``num_envs`` copies of one gymnasium environment, stepped together, with same-step autoreset.

    Seeding: sub-environment i is reset with seed ``seed + i`` once; later resets continue its own RNG, so a
    whole run is reproducible from ``seed``.
    """

    def __init__(self, env_id: str, num_envs: int = 1, seed: int = 0, render_mode: str | None = None) -> None:
        if num_envs < 1:
            raise ConfigError(f"num_envs must be at least 1, got {num_envs}")
        self.env_id = resolve_env_id(env_id)
        self.envs = [_make_one(self.env_id, render_mode) for _ in range(num_envs)]
        self.num_envs = num_envs
        self.seed = seed
        self.observation_space = self.envs[0].observation_space
        self.action_space = self.envs[0].action_space
        self.discrete = hasattr(self.action_space, "n")
        self._returns = np.zeros(num_envs)
        self._lengths = np.zeros(num_envs, dtype=np.int64)
        self._obs: torch.Tensor | None = None

    @property
    def obs_dim(self) -> int:
        return int(np.prod(self.observation_space.shape))

    @property
    def act_dim(self) -> int:
        """Number of actions (discrete) or the action vector's size (continuous)."""
        return int(self.action_space.n) if self.discrete else int(np.prod(self.action_space.shape))

    def reset(self) -> torch.Tensor:
        """Reset every sub-environment with its seed; returns obs (N, obs_dim)."""
        obs = [env.reset(seed=self.seed + i)[0] for i, env in enumerate(self.envs)]
        self._returns[:] = 0
        self._lengths[:] = 0
        self._obs = torch.as_tensor(np.stack(obs), dtype=torch.float32).reshape(self.num_envs, -1)
        return self._obs

    def step(self, actions: torch.Tensor) -> StepResult:
        """Step every sub-environment with its action (N,) or (N, act_dim); continuous actions are clipped to the box."""
        a = actions.detach().cpu().numpy()
        if not self.discrete:
            a = np.clip(a, self.action_space.low, self.action_space.high).reshape(self.num_envs, *self.action_space.shape)
        next_obs, final_obs, rewards, terms, truncs, ep_ret, ep_len = [], [], [], [], [], [], []
        for i, env in enumerate(self.envs):
            o, r, term, trunc, _ = env.step(int(a[i]) if self.discrete else a[i])
            self._returns[i] += r
            self._lengths[i] += 1
            final_obs.append(o)
            if term or trunc:
                ep_ret.append(float(self._returns[i]))
                ep_len.append(int(self._lengths[i]))
                self._returns[i] = 0
                self._lengths[i] = 0
                o, _ = env.reset()
            next_obs.append(o)
            rewards.append(r)
            terms.append(term)
            truncs.append(trunc)
        obs = torch.as_tensor(np.stack(next_obs), dtype=torch.float32).reshape(self.num_envs, -1)
        self._obs = obs
        return StepResult(
            obs=obs,
            reward=torch.as_tensor(np.asarray(rewards, dtype=np.float32)),
            terminated=torch.as_tensor(np.asarray(terms, dtype=bool)),
            truncated=torch.as_tensor(np.asarray(truncs, dtype=bool)),
            final_obs=torch.as_tensor(np.stack(final_obs), dtype=torch.float32).reshape(self.num_envs, -1),
            episode_returns=ep_ret,
            episode_lengths=ep_len,
        )

    def render(self, index: int = 0):
        """An RGB frame (H, W, 3) of sub-environment ``index`` (make the env with render_mode="rgb_array")."""
        return self.envs[index].render()

    def close(self) -> None:
        for env in self.envs:
            env.close()


def make_env(name: str, num_envs: int = 1, seed: int = 0, render_mode: str | None = None) -> VecEnv:
    """A `VecEnv` of ``num_envs`` copies of env ``name`` (short name or gymnasium id), seeded from ``seed``."""
    return VecEnv(name, num_envs=num_envs, seed=seed, render_mode=render_mode)


def env_spaces(name: str) -> tuple[int, int, bool]:
    """(obs_dim, act_dim, discrete) of env ``name``, without keeping it open."""
    env = VecEnv(name, 1)
    try:
        return env.obs_dim, env.act_dim, env.discrete
    finally:
        env.close()
