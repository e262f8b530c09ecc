"""Expert demonstrations: collection, and a documented file format that loads without unpickling.

File format (``.safetensors``, format version 1), written by `Demonstrations.save`:

=================  ==========================  ====================================================================
tensor             shape, dtype                meaning
=================  ==========================  ====================================================================
``obs``            (N, obs_dim) float32        s_t, every step of every episode, episodes one after another
``actions``        (N,) int64 or               a_t (discrete action index, or continuous action vector)
                   (N, act_dim) float32
``rewards``        (N,) float32                the environment's r_t (kept for inspection; imitation never uses it)
``episode_starts`` (N,) bool                   True at the first step of each episode
=================  ==========================  ====================================================================

The safetensors header holds one JSON string under the key ``"dlcourse"`` with ``kind = "demonstrations"``,
``format = 1``, ``env_id`` (gymnasium id), ``obs_dim``, ``act_dim`` (number of actions, or the action vector's
size), ``discrete``, ``n_episodes``, ``episode_returns`` (list), ``expert_return`` (their
mean), ``random_return`` (mean return of uniform random actions, the 0 of the normalised return), ``seed`` (the
first episode's env seed; episode i used seed + i), ``deterministic`` (whether the expert's mode was used) and
``command``. A file that is truncated, corrupt, of another kind or with inconsistent shapes is a one-line
`CheckpointError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import export_weights, load_weights
from ..errors import CheckpointError, ConfigError
from .envs import make_env
from .policies import ActorCritic

__all__ = ["Demonstrations", "collect_demos", "load_demos", "DEMOS_KIND", "FORMAT_VERSION"]

DEMOS_KIND = "demonstrations"
FORMAT_VERSION = 1


@dataclass
class Demonstrations:
    obs: torch.Tensor             #: (N, obs_dim) float32
    actions: torch.Tensor         #: (N,) int64 or (N, act_dim) float32
    rewards: torch.Tensor         #: (N,) float32
    episode_starts: torch.Tensor  #: (N,) bool
    meta: dict[str, Any] = field(default_factory=dict)  #: the JSON header (see the module docstring)

    def __post_init__(self) -> None:
        n = self.obs.shape[0]
        if self.obs.dim() != 2 or any(t.shape[0] != n for t in (self.actions, self.rewards, self.episode_starts)):
            raise CheckpointError(f"demonstrations have inconsistent shapes: obs {tuple(self.obs.shape)}, actions "
                                  f"{tuple(self.actions.shape)}, rewards {tuple(self.rewards.shape)}, "
                                  f"episode_starts {tuple(self.episode_starts.shape)}")
        if n == 0 or not bool(self.episode_starts[0]):
            raise CheckpointError("demonstrations must be non-empty and begin with an episode start")

    def __len__(self) -> int:
        return self.obs.shape[0]

    @property
    def n_episodes(self) -> int:
        return int(self.episode_starts.sum())

    def episode_bounds(self) -> list[tuple[int, int]]:
        """[(start, end), ...] row ranges of the episodes, in order."""
        starts = torch.nonzero(self.episode_starts).flatten().tolist()
        return list(zip(starts, starts[1:] + [len(self)]))

    def episode_returns(self) -> list[float]:
        return [float(self.rewards[a:b].sum()) for a, b in self.episode_bounds()]

    def take(self, n_episodes: int, subsample: int = 1) -> "Demonstrations":
        """The first ``n_episodes`` episodes, keeping every ``subsample``-th step of each (1: all)."""
        if not 1 <= n_episodes <= self.n_episodes:
            raise ConfigError(f"asked for {n_episodes} expert trajectories; the file has {self.n_episodes}")
        if subsample < 1:
            raise ConfigError(f"subsample must be >= 1, got {subsample}")
        rows = torch.cat([torch.arange(a, b)[::subsample] for a, b in self.episode_bounds()[:n_episodes]])
        starts = torch.zeros(len(rows), dtype=torch.bool)
        offset = 0
        for a, b in self.episode_bounds()[:n_episodes]:
            starts[offset] = True
            offset += len(range(a, b, subsample))
        meta = dict(self.meta, n_episodes=n_episodes, subsample=subsample)
        return Demonstrations(self.obs[rows], self.actions[rows], self.rewards[rows], starts, meta)

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the file format above (atomically)."""
        meta = {"kind": DEMOS_KIND, "format": FORMAT_VERSION, **{k: v for k, v in self.meta.items() if k != "kind"}}
        meta["n_episodes"] = self.n_episodes
        tensors = {"obs": self.obs.float(), "actions": self.actions, "rewards": self.rewards.float(),
                   "episode_starts": self.episode_starts.bool()}
        return export_weights(path, tensors, meta, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | Path) -> "Demonstrations":
        """Read a demonstrations file (safetensors, no pickle); problems are a one-line `CheckpointError`."""
        tensors, meta = load_weights(path, kind=DEMOS_KIND)
        if meta.get("format") != FORMAT_VERSION:
            raise CheckpointError(f"{path}: demonstrations format {meta.get('format')!r}, this dlcourse reads {FORMAT_VERSION}")
        missing = [k for k in ("obs", "actions", "rewards", "episode_starts") if k not in tensors]
        if missing:
            raise CheckpointError(f"{path}: demonstrations file lacks tensor(s) {', '.join(missing)}")
        return cls(tensors["obs"], tensors["actions"], tensors["rewards"], tensors["episode_starts"].bool(), meta)


@torch.no_grad()
def collect_demos(policy: ActorCritic, env_name: str, n_episodes: int, seed: int = 0, deterministic: bool = True,
                  random_return: float | None = None, command: str = "") -> Demonstrations:
    """Roll out ``policy`` for ``n_episodes`` whole episodes (episode i in an env seeded ``seed + i``)."""
    from .ppo import evaluate

    env = make_env(env_name, num_envs=n_episodes, seed=seed)
    obs = env.reset()
    per_env: list[list[tuple]] = [[] for _ in range(n_episodes)]
    finished = [False] * n_episodes
    while not all(finished):
        a = policy.act(obs, deterministic=deterministic).cpu()
        step = env.step(a)
        for i in range(n_episodes):
            if not finished[i]:
                per_env[i].append((obs[i], a[i], step.reward[i]))
                if step.terminated[i] or step.truncated[i]:
                    finished[i] = True
        obs = step.obs
    env.close()
    o = torch.stack([s for ep in per_env for s, _, _ in ep])
    acts = torch.stack([x for ep in per_env for _, x, _ in ep])
    rews = torch.stack([r for ep in per_env for _, _, r in ep])
    starts = torch.zeros(len(o), dtype=torch.bool)
    starts[torch.tensor([0] + [len(ep) for ep in per_env[:-1]]).cumsum(0)] = True
    returns = [float(sum(float(r) for _, _, r in ep)) for ep in per_env]
    if random_return is None:
        rr = evaluate(None, env_name, n_episodes=20, seed=seed + 50_000)
        random_return = sum(rr) / len(rr)
    meta = {"env_id": env.env_id, "obs_dim": env.obs_dim, "act_dim": env.act_dim, "discrete": env.discrete,
            "episode_returns": returns, "expert_return": sum(returns) / len(returns),
            "random_return": float(random_return), "seed": seed, "deterministic": deterministic, "command": command}
    return Demonstrations(o, acts.long() if policy.discrete else acts.float(), rews.float(), starts, meta)


def load_demos(name_or_path, env: str | None = None) -> Demonstrations:
    """Demonstrations from a shipped name ("cartpole_demos") or a path; checks they are for ``env`` if given."""
    from ..checkpoint import resolve_path
    from .envs import resolve_env_id

    demos = Demonstrations.load(resolve_path(name_or_path))
    if env is not None and demos.meta.get("env_id") != resolve_env_id(env):
        raise ConfigError(f"demonstrations {name_or_path} are for {demos.meta.get('env_id')}, not "
                          f"{resolve_env_id(env)}; pass --set demos=PATH with {env} demonstrations")
    return demos
