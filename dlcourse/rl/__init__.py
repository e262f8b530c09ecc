"""Adversarial imitation: a 2-D GAN warm-up, RL environments, PPO + GAE, behavioural cloning and GAIL.

Modules: `envs` (vectorised gymnasium environments), `policies` (actor-critic MLPs), `ppo` (GAE, PPO, evaluation),
`demos` (demonstrations and their file format), `bc` (behavioural cloning), `gail` (discriminator, reward, loop),
`gan2d` (a GAN on the toy distributions), and the CLI families ``expert``, ``bc``, ``gail`` in `family`.
"""

from .bc import BCConfig, bc_loss, train_bc
from .demos import Demonstrations, collect_demos
from .envs import ENV_IDS, VecEnv, make_env, resolve_env_id
from .gail import Discriminator, GAILConfig, discriminator_loss, gail_reward, train_gail
from .policies import ActorCritic
from .ppo import PPOConfig, evaluate, gae, gae_reference, normalised_return, train_ppo

__all__ = ["BCConfig", "bc_loss", "train_bc", "Demonstrations", "collect_demos", "ENV_IDS", "VecEnv", "make_env",
           "resolve_env_id", "Discriminator", "GAILConfig", "discriminator_loss", "gail_reward", "train_gail",
           "ActorCritic", "PPOConfig", "evaluate", "gae", "gae_reference", "normalised_return", "train_ppo"]
