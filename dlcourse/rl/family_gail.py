"""The ``gail`` family: ``dlcourse train gail --env cartpole --set n_trajectories=4 [--export F]``.

Runs `dlcourse.rl.gail.train_gail` (Ho & Ermon 2016, Algorithm 1 with PPO), prints the normalised return of the
deterministic policy (0 = random, 1 = expert), and writes ``policy.safetensors``, ``discriminator.safetensors``,
``metrics.jsonl`` and ``config.json`` in the run folder. Does not resume (about a minute on a CPU for CartPole).
"""

from __future__ import annotations

from pathlib import Path

from ..checkpoint import record_if_shipped
from ..config import Presets
from ..errors import CheckpointError, ConfigError
from .envs import env_spaces, resolve_env_id
from .family import (add_env_arg, add_eval_args, apply_env_arg, describe_policy, evaluate_policy_cmd, export_policy,
                     load_demos, write_metrics)
from .gail import GAILConfig, train_gail
from .ppo import PPOConfig

__all__ = ["PRESETS", "FAMILY", "train"]

PRESETS: Presets[GAILConfig] = Presets(
    "gail",
    cpu=GAILConfig(),
    large=GAILConfig(env="hopper", demos="hopper_demos", n_trajectories=4, normalise_obs=True, disc_hidden=(100, 100),
                     ppo=PPOConfig(num_envs=1, n_steps=2048, total_steps=3_000_000, epochs=10, minibatch_size=64,
                                   lr=3e-4, gamma=0.99, gae_lambda=0.95), eval_every=50),
)


def train(cfg: GAILConfig, run) -> dict:
    """``dlcourse train gail``."""
    from ..checkpoint import export_weights
    from ..config import config_to_dict

    if run.resume:
        raise ConfigError("gail runs do not resume (about a minute on a CPU for CartPole); rerun without --resume")
    env_id = resolve_env_id(cfg.env)
    env_spaces(env_id)  # a MuJoCo task without MuJoCo is a one-line error here, before anything is loaded
    demos = load_demos(cfg.demos, cfg.env)
    out = Path(run.out_dir)
    if (out / "policy.safetensors").exists() and not run.force:
        raise CheckpointError(f"{out / 'policy.safetensors'} exists; choose another --out or pass --force")
    if run.export is not None and Path(run.export).exists() and not run.force:
        raise CheckpointError(f"{run.export} exists; refusing to overwrite it (pass --force)")
    result = train_gail(demos, cfg, device=run.device)
    last = result.history[-1]
    metrics = {"return": last["eval_return"], "normalised_return": last["normalised_return"],
               "expert_return": demos.meta["expert_return"], "random_return": demos.meta["random_return"],
               "n_trajectories": cfg.n_trajectories, "env_steps": result.env_steps,
               "wall_time_s": round(result.wall_time, 1)}
    print(f"gail {env_id}: return {metrics['return']:.1f}, normalised {metrics['normalised_return']:.3f} from "
          f"{cfg.n_trajectories} trajectories after {result.env_steps} env steps, {result.wall_time:.0f}s")
    write_metrics(out, result.history, cfg)
    policy = result.policy.cpu()
    export_policy(out / "policy.safetensors", policy, env_id=env_id, algo="gail", config=cfg, metrics=metrics,
                  command=run.command, overwrite=True)
    export_weights(out / "discriminator.safetensors", result.discriminator.cpu().state_dict(),
                   {"kind": "gail_discriminator", "env_id": env_id, "config": config_to_dict(cfg)}, overwrite=True)
    if run.export is not None:
        export_policy(run.export, policy, env_id=env_id, algo="gail", config=cfg, metrics=metrics,
                      command=run.command, overwrite=run.force)
        print(f"gail: exported the policy to {run.export}")
        record_if_shipped(run.export, what=describe_policy(policy, "GAIL (Ho & Ermon 2016) with PPO", env_id),
                          command=run.command,
                          data=(f"the first {cfg.n_trajectories} episode(s) of {cfg.demos}, every {cfg.subsample}-th "
                                f"pair; {result.env_steps} environment steps without the environment reward"),
                          metrics=metrics)
    return metrics


def _make_family():
    from ..registry import Family

    return Family(name="gail", help="generative adversarial imitation learning (Ho & Ermon 2016) with PPO",
                  presets=PRESETS, train=train, add_train_args=add_env_arg, apply_train_args=apply_env_arg,
                  add_eval_args=lambda p: add_eval_args(p, "cartpole_gail"), evaluate=evaluate_policy_cmd)


FAMILY = _make_family()
