"""The ``expert`` family (PPO on the environment's reward), and the helpers the ``bc`` and ``gail`` families share.

    dlcourse train expert --env cartpole --out runs/expert-cartpole \\
        --export cartpole_expert.safetensors --demos cartpole_demos.safetensors
    dlcourse train expert --preset large --env hopper                  # MuJoCo, needs gymnasium[mujoco]
    dlcourse train bc   --env cartpole --set n_trajectories=1          # see dlcourse.rl.family_bc
    dlcourse train gail --env cartpole --set n_trajectories=4          # see dlcourse.rl.family_gail

Evaluation (rollouts of a trained policy, with its normalised return: 0 = uniform random actions, 1 = the expert):

    dlcourse eval expert --policy cartpole_expert --episodes 10       # a shipped name or a .safetensors path
    dlcourse eval gail --policy runs/gail-cpu/policy.safetensors --stochastic

A trained policy is written as ``policy.safetensors`` in the run folder (and to ``--export``): the weights of an
`ActorCritic`, with a JSON header holding ``kind = "rl_policy"``, the network ``spec``, ``env_id``, ``algo``, the
run's config and its metrics (evaluation return and normalised return, environment steps, wall time).
RL runs (expert, gail) take about a minute on a CPU and do not resume: ``--resume`` is refused for them.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import record_if_shipped
from ..config import Presets, config_to_dict
from ..errors import CheckpointError, ConfigError
from .envs import resolve_env_id
from .policies import ActorCritic
from .ppo import PPOConfig

__all__ = ["ExpertConfig", "PRESETS", "FAMILY", "POLICY_KIND", "export_policy", "load_policy", "load_demos",
           "add_env_arg", "apply_env_arg", "write_metrics", "train_expert", "add_eval_args", "evaluate_policy_cmd", "evaluate_policy_args",
           "describe_policy"]

POLICY_KIND = "rl_policy"


@dataclass
class ExpertConfig:
    """An expert: PPO with GAE on the environment's own reward, then demonstrations from its deterministic policy."""

    #: environment: cartpole, acrobot, mountaincar, pendulum, hopper, ... or a gymnasium id
    env: str = "cartpole"
    #: seed of networks, environments and batches
    seed: int = 0
    #: number of demonstration episodes written to the run folder (and to demos_out)
    n_demos: int = 10
    #: also write the demonstrations to this .safetensors path ("": only to the run folder); set by --demos
    demos_out: str = ""
    #: first env seed of the demonstration episodes (kept apart from training and evaluation seeds)
    demos_seed: int = 20_000
    #: evaluation episodes of the trained policy
    eval_episodes: int = 10
    #: PPO and its networks
    ppo: PPOConfig = field(default_factory=PPOConfig)

    def __post_init__(self) -> None:
        if self.n_demos < 0 or self.eval_episodes < 1:
            raise ConfigError(f"n_demos must be >= 0 and eval_episodes >= 1, got {self.n_demos}, {self.eval_episodes}")


PRESETS: Presets[ExpertConfig] = Presets(
    "expert",
    # classic control on a laptop: CartPole reaches 500 in ~40k steps (~10 s on one core); acrobot needs ~100k,
    # pendulum and mountaincar more (`--set ppo.total_steps=...`)
    cpu=ExpertConfig(env="cartpole", ppo=PPOConfig(num_envs=8, n_steps=32, total_steps=100_000, epochs=20,
                                                    minibatch_size=256, lr=1e-3, gamma=0.98, gae_lambda=0.8)),
    # MuJoCo (Hopper-v5): the PPO paper's MuJoCo setting (Schulman et al. 2017, Table 3), 1M steps
    large=ExpertConfig(env="hopper", ppo=PPOConfig(num_envs=1, n_steps=2048, total_steps=1_000_000, epochs=10,
                                                    minibatch_size=64, lr=3e-4, gamma=0.99, gae_lambda=0.95,
                                                    max_grad_norm=0.5, log_std_init=0.0)),
)


# ---------------------------------------------------------------------------------------------------------------
# policies and demonstrations on disk
# ---------------------------------------------------------------------------------------------------------------


def export_policy(path: str | Path, policy: ActorCritic, *, env_id: str, algo: str, config: Any,
                  metrics: dict, command: str = "", overwrite: bool = False) -> Path:
    """Write a policy's weights and header (see the module docstring) as safetensors."""
    from ..checkpoint import export_weights

    meta = {"kind": POLICY_KIND, "spec": policy.spec(), "env_id": env_id, "algo": algo,
            "config": config_to_dict(config) if config is not None else {}, "metrics": metrics, "command": command}
    return export_weights(path, policy.state_dict(), meta, overwrite=overwrite)


def _resolve_file(name_or_path: str | Path) -> Path:
    from ..checkpoint import shipped_path

    path = Path(name_or_path)
    if path.exists():
        return path
    if path.suffix or len(path.parts) > 1:
        raise CheckpointError(f"no file at {path}")
    return shipped_path(str(name_or_path))


def load_policy(name_or_path: str | Path, device: torch.device | str | None = None) -> tuple[ActorCritic, dict]:
    """A trained policy in eval mode and its header, from a shipped name ("cartpole_expert") or a .safetensors path."""
    from ..checkpoint import load_state_into, load_weights

    path = _resolve_file(name_or_path)
    state, meta = load_weights(path, kind=POLICY_KIND)
    policy = ActorCritic.from_spec(meta["spec"])
    load_state_into(policy, state, source=str(path))
    return policy.to(device or "cpu").eval(), meta


def load_demos(name_or_path: str | Path, env: str | None = None):
    """Demonstrations from a shipped name ("cartpole_demos") or a path; checks they are for ``env`` if given."""
    from .demos import Demonstrations

    demos = Demonstrations.load(_resolve_file(name_or_path))
    if env is not None and demos.meta.get("env_id") != resolve_env_id(env):
        raise ConfigError(f"demonstrations {name_or_path} are for {demos.meta.get('env_id')}, not "
                          f"{resolve_env_id(env)}; pass --set demos=PATH with {env} demonstrations")
    return demos


def describe_policy(policy: ActorCritic, algo: str, env_id: str) -> str:
    """The ``what`` line of a policy's manifest entry."""
    n = sum(p.numel() for p in policy.parameters())
    head = "categorical" if policy.discrete else "diagonal Gaussian"
    hidden = "x".join(str(h) for h in policy.spec()["hidden"])
    return (f"{env_id} policy trained by {algo} ({head} actor and value MLPs, tanh {hidden}, {n} parameters); "
            f"load with dlcourse.rl.family.load_policy")


def write_metrics(out_dir: Path, history: list[dict], config: Any) -> None:
    """metrics.jsonl (one line per iteration) and config.json in the run folder."""
    from ..checkpoint import atomic_write

    out_dir.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(row) + "\n" for row in history)
    atomic_write(out_dir / "metrics.jsonl", lambda tmp: Path(tmp).write_text(lines))
    text = json.dumps(config_to_dict(config), indent=2) + "\n"
    atomic_write(out_dir / "config.json", lambda tmp: Path(tmp).write_text(text))


# ---------------------------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------------------------


def train_expert(cfg: ExpertConfig, run) -> dict:
    """``dlcourse train expert``: PPO, evaluation, the policy file, and demonstrations if ``--demos`` was given."""
    from .demos import collect_demos
    from .ppo import evaluate, normalised_return, train_ppo

    if run.resume:
        raise ConfigError("expert runs do not resume (about a minute on a CPU); rerun without --resume")
    env_id = resolve_env_id(cfg.env)
    out = Path(run.out_dir)
    if (out / "policy.safetensors").exists() and not run.force:
        raise CheckpointError(f"{out / 'policy.safetensors'} exists; choose another --out or pass --force")
    result = train_ppo(env_id, cfg.ppo, seed=cfg.seed, device=run.device, log_every=20)
    policy = result.policy.cpu()
    rets = evaluate(policy, env_id, cfg.eval_episodes)
    rand = evaluate(None, env_id, 20, seed=30_000 + cfg.seed)
    metrics = {"return": sum(rets) / len(rets), "random_return": sum(rand) / len(rand),
               "env_steps": result.env_steps, "wall_time_s": round(result.wall_time, 1)}
    print(f"expert {env_id}: return {metrics['return']:.1f} (random {metrics['random_return']:.1f}) after "
          f"{result.env_steps} steps, {result.wall_time:.0f}s")
    write_metrics(out, result.history, cfg)
    export_policy(out / "policy.safetensors", policy, env_id=env_id, algo="ppo", config=cfg, metrics=metrics,
                  command=run.command, overwrite=True)
    if run.export is not None:
        export_policy(run.export, policy, env_id=env_id, algo="ppo", config=cfg, metrics=metrics,
                      command=run.command, overwrite=run.force)
        print(f"expert: exported the policy to {run.export}")
        record_if_shipped(run.export, what=describe_policy(policy, "PPO + GAE on the environment reward", env_id),
                          data=f"{env_id} interaction, {result.env_steps} environment steps", command=run.command,
                          metrics=metrics)
    demos_path = Path(cfg.demos_out) if cfg.demos_out else None
    if cfg.n_demos:
        demos = collect_demos(policy, env_id, cfg.n_demos, seed=cfg.demos_seed,
                              random_return=metrics["random_return"], command=run.command)
        demos.save(out / "demos.safetensors", overwrite=True)
        if demos_path is not None:
            demos.save(demos_path, overwrite=run.force)
            print(f"expert: wrote {cfg.n_demos} demonstrations (mean return {demos.meta['expert_return']:.1f}) "
                  f"to {demos_path}")
            record_if_shipped(
                demos_path, command=run.command,
                what=(f"{cfg.n_demos} {env_id} demonstration episodes of the PPO expert ("
                      f"{'deterministic' if demos.meta['deterministic'] else 'sampled'} actions), format: "
                      f"dlcourse.rl.demos; load with dlcourse.rl.demos.Demonstrations.load"),
                data=f"{env_id}, episode i from env seed {cfg.demos_seed} + i",
                metrics={"n_episodes": demos.n_episodes, "pairs": len(demos),
                         "expert_return": demos.meta["expert_return"], "random_return": demos.meta["random_return"]})
    return metrics


# ---------------------------------------------------------------------------------------------------------------
# CLI hooks (shared by the three families)
# ---------------------------------------------------------------------------------------------------------------


def add_env_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--env", default=None, metavar="ENV",
                   help="environment: cartpole, acrobot, mountaincar, pendulum, hopper, ... or a gymnasium id "
                        "(default: the preset's)")


def apply_env_arg(cfg, args: argparse.Namespace):
    if getattr(args, "env", None) is None:
        return cfg
    resolve_env_id(args.env)  # an unknown env is a one-line ConfigError here, before anything runs
    cfg.env = args.env
    return cfg


def _add_expert_args(p: argparse.ArgumentParser) -> None:
    add_env_arg(p)
    p.add_argument("--demos", type=Path, default=None, metavar="FILE",
                   help="also write n_demos demonstration episodes to this .safetensors file")


def _apply_expert_args(cfg: ExpertConfig, args: argparse.Namespace) -> ExpertConfig:
    cfg = apply_env_arg(cfg, args)
    if getattr(args, "demos", None) is not None:
        cfg.demos_out = str(args.demos)
    return cfg


def _train(cfg: ExpertConfig, run) -> dict:
    if cfg.demos_out and cfg.n_demos and Path(cfg.demos_out).exists() and not run.force:
        raise CheckpointError(f"{cfg.demos_out} exists; refusing to overwrite it (pass --force)")
    return train_expert(cfg, run)


def add_eval_args(p: argparse.ArgumentParser, default_policy: str) -> None:
    """Flags of ``dlcourse eval expert|bc|gail``: evaluate a trained policy."""
    p.add_argument("--policy", default=default_policy,
                   help="a shipped policy name or a policy.safetensors path (default: %(default)s)")
    p.add_argument("--episodes", type=int, default=10, help="evaluation episodes (default: %(default)s)")
    p.add_argument("--seed", type=int, default=10_000, help="env seed of the first episode (default: %(default)s)")
    p.add_argument("--stochastic", action="store_true", help="sample actions instead of taking the most likely one")


def evaluate_policy_cmd(args: argparse.Namespace) -> int:
    """``dlcourse eval expert|bc|gail``: `evaluate_policy_args`, exit status 0."""
    evaluate_policy_args(args)
    return 0


def evaluate_policy_args(args: argparse.Namespace) -> dict:
    """Roll out the trained policy ``args.policy`` and print (and return) its return and normalised return.

    The 1 of the normalised return is the expert return recorded with the policy (its own return for an expert,
    the demonstrations' mean return for bc and gail); the 0 is the random return recorded with it (uniform random
    actions, 20 episodes), or, for a policy without one, measured here over the evaluation's seeds.
    """
    from ..utils import get_device
    from .ppo import evaluate, normalised_return

    if args.episodes < 1:
        raise ConfigError(f"--episodes must be at least 1, got {args.episodes}")
    policy, meta = load_policy(args.policy, get_device(getattr(args, "device", None)))
    env_id = meta["env_id"]
    rets = evaluate(policy, env_id, args.episodes, seed=args.seed, deterministic=not args.stochastic)
    metrics = meta.get("metrics", {})
    rand = [metrics["random_return"]] if "random_return" in metrics else evaluate(None, env_id, args.episodes, args.seed)
    expert = metrics.get("expert_return", metrics.get("return") if meta.get("algo") == "ppo" else None)
    mean, rmean = sum(rets) / len(rets), sum(rand) / len(rand)
    std = (sum((r - mean) ** 2 for r in rets) / len(rets)) ** 0.5
    out = {"env_id": env_id, "algo": meta.get("algo"), "return": mean, "return_std": std, "random_return": rmean,
           "expert_return": expert, "normalised_return": None}
    line = (f"{meta.get('algo')} {env_id}: return {mean:.1f} ± {std:.1f} over {args.episodes} "
            f"{'stochastic' if args.stochastic else 'deterministic'} episodes (random {rmean:.1f}")
    if expert is not None and float(expert) != rmean:
        out["normalised_return"] = normalised_return(mean, rmean, float(expert))
        line += f", expert {float(expert):.1f}); normalised return {out['normalised_return']:.3f}"
    else:
        line += "; no expert return recorded, so no normalised return)"
    print(line)
    return out


def _make_family():
    from ..registry import Family

    return Family(name="expert", help="an RL expert by PPO + GAE, and its demonstrations (for bc and gail)",
                  presets=PRESETS, train=_train, add_train_args=_add_expert_args,
                  apply_train_args=_apply_expert_args,
                  add_eval_args=lambda p: add_eval_args(p, "cartpole_expert"), evaluate=evaluate_policy_cmd)


FAMILY = _make_family()
