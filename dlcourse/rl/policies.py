"""Policies π(a|s) and value functions V(s) as small MLPs, for discrete and continuous actions.

    policy = ActorCritic(obs_dim=4, act_dim=2, discrete=True)
    dist = policy.dist(obs)            # a torch.distributions object over actions, batch shape (B,)
    a = policy.act(obs)                # (B,) sampled; policy.act(obs, deterministic=True) for the mode
    v = policy.value(obs)              # (B,)

The actor and the critic are separate networks (no shared trunk), as in the PPO paper's MuJoCo setting
(Schulman et al. 2017, Section 6.1) and in GAIL's experiments, so the value loss never disturbs the policy.
Continuous actions use a diagonal Gaussian with a state-independent log standard deviation. Nothing here picks a
device: move the module, and observations follow it.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import Categorical, Independent, Normal

from ..errors import ShapeError

__all__ = ["mlp", "ActorCritic", "POLICY_KIND", "export_policy", "load_policy"]

POLICY_KIND = "rl_policy"


def mlp(in_dim: int, out_dim: int, hidden: tuple[int, ...] = (64, 64), out_gain: float = 1.0) -> nn.Sequential:
    """tanh MLP with orthogonal initialisation (gain √2 inside, ``out_gain`` on the last layer)."""
    layers: list[nn.Module] = []
    dims = (in_dim, *hidden)
    for a, b in zip(dims[:-1], dims[1:]):
        lin = nn.Linear(a, b)
        nn.init.orthogonal_(lin.weight, math.sqrt(2))
        nn.init.zeros_(lin.bias)
        layers += [lin, nn.Tanh()]
    last = nn.Linear(dims[-1], out_dim)
    nn.init.orthogonal_(last.weight, out_gain)
    nn.init.zeros_(last.bias)
    layers.append(last)
    return nn.Sequential(*layers)


class ActorCritic(nn.Module):
    """π_θ(a|s) (categorical or diagonal Gaussian) and V_φ(s), with fixed observation normalisation buffers.

    Args:
        obs_dim: size of the (flattened) observation.
        act_dim: number of discrete actions, or size of the continuous action vector.
        discrete: categorical policy if True, Gaussian otherwise.
        hidden: hidden widths of both networks.
        log_std_init: initial log σ of the Gaussian policy.
    """

    def __init__(self, obs_dim: int, act_dim: int, discrete: bool, hidden: tuple[int, ...] = (64, 64),
                 log_std_init: float = 0.0) -> None:
        super().__init__()
        self.obs_dim, self.act_dim, self.discrete = obs_dim, act_dim, discrete
        self.actor = mlp(obs_dim, act_dim, hidden, out_gain=0.01)
        self.critic = mlp(obs_dim, 1, hidden, out_gain=1.0)
        if not discrete:
            self.log_std = nn.Parameter(torch.full((act_dim,), float(log_std_init)))
        # (s - mean) / std before both networks; identity unless set (e.g. from demonstrations)
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))

    def set_obs_normalisation(self, obs: torch.Tensor, eps: float = 1e-3) -> None:
        """Normalise inputs with the mean and std of ``obs`` (N, obs_dim) from now on."""
        self.obs_mean.copy_(obs.mean(0))
        self.obs_std.copy_(obs.std(0).clamp_min(eps))

    def _norm(self, obs: torch.Tensor) -> torch.Tensor:
        if obs.dim() != 2 or obs.shape[1] != self.obs_dim:
            raise ShapeError(f"policy expects observations of shape (B, {self.obs_dim}), got {tuple(obs.shape)}")
        obs = obs.to(self.obs_mean.device, self.obs_mean.dtype)
        return (obs - self.obs_mean) / self.obs_std  # (B, obs_dim)

    def dist(self, obs: torch.Tensor) -> torch.distributions.Distribution:
        """π(·|s) for a batch of observations (B, obs_dim); batch shape (B,)."""
        out = self.actor(self._norm(obs))  # (B, act_dim): logits or means
        if self.discrete:
            return Categorical(logits=out)
        return Independent(Normal(out, self.log_std.exp().expand_as(out)), 1)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """V(s), shape (B,)."""
        return self.critic(self._norm(obs)).squeeze(-1)

    def log_prob(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """log π(a|s), shape (B,); actions (B,) integers or (B, act_dim) floats."""
        return self.dist(obs).log_prob(actions.to(self.obs_mean.device))

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """Actions for observations (B, obs_dim): a sample, or the mode (argmax / mean) if ``deterministic``."""
        d = self.dist(obs)
        if deterministic:
            return d.probs.argmax(-1) if self.discrete else d.base_dist.loc
        return d.sample()

    def spec(self) -> dict:
        """The constructor arguments, stored in exported weights so `ActorCritic.from_spec` can rebuild it."""
        return {"obs_dim": self.obs_dim, "act_dim": self.act_dim, "discrete": self.discrete,
                "hidden": [m.out_features for m in self.actor if isinstance(m, nn.Linear)][:-1]}

    @classmethod
    def from_spec(cls, spec: dict) -> "ActorCritic":
        return cls(int(spec["obs_dim"]), int(spec["act_dim"]), bool(spec["discrete"]), tuple(spec["hidden"]))


def export_policy(path, policy: ActorCritic, *, env_id: str, algo: str, config, metrics: dict, command: str = "",
                  overwrite: bool = False):
    """Write a policy's weights as safetensors with a header: ``kind = "rl_policy"``, the network ``spec``,
    ``env_id``, ``algo``, the run's config, its metrics and the command that made it."""
    from ..checkpoint import export_weights
    from ..config import config_to_dict

    meta = {"kind": POLICY_KIND, "spec": policy.spec(), "env_id": env_id, "algo": algo,
            "config": config_to_dict(config) if config is not None else {}, "metrics": metrics, "command": command}
    return export_weights(path, policy.state_dict(), meta, overwrite=overwrite)


def load_policy(name_or_path, device=None) -> tuple[ActorCritic, dict]:
    """A trained policy in eval mode and its header, from a shipped name ("cartpole_expert") or a .safetensors path."""
    from ..checkpoint import load_state_into, load_weights, resolve_path

    path = resolve_path(name_or_path)
    state, meta = load_weights(path, kind=POLICY_KIND)
    policy = ActorCritic.from_spec(meta["spec"])
    load_state_into(policy, state, source=str(path))
    return policy.to(device or "cpu").eval(), meta
