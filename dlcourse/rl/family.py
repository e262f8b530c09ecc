"""The imitation families: ``expert`` (PPO on the environment's reward), ``bc`` and ``gail``.

    dlcourse train expert --env cartpole --out runs/expert-cartpole \\
        --export cartpole_expert.safetensors --demos cartpole_demos.safetensors
    dlcourse train bc   --env cartpole --set n_trajectories=1
    dlcourse train gail --env cartpole --set n_trajectories=4
    dlcourse eval gail --checkpoint cartpole_gail --episodes 10       # a shipped name or a .safetensors path

A trained policy is written as ``policy.safetensors`` in the run folder (and to ``--export``): the weights of an
`ActorCritic`, with a JSON header holding ``kind = "rl_policy"``, the network ``spec``, ``env_id``, ``algo``, the
run's config and its metrics (evaluation return and normalised return, environment steps, wall time)
(`dlcourse.rl.policies.export_policy` / `load_policy`). ``bc`` trains through the shared loop (so ``--resume`` works); ``expert`` and ``gail`` keep the loop of
`dlcourse.rl.ppo` / `dlcourse.rl.gail` (the `dlcourse.registry` docstring says why) and do not resume.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..checkpoint import record_if_shipped
from ..config import Config, Presets, config_to_dict
from ..errors import CheckpointError, ConfigError
from ..registry import Family
from .bc import BCConfig
from .demos import load_demos
from .envs import env_spaces, resolve_env_id
from .gail import GAILConfig
from .policies import POLICY_KIND, export_policy, load_policy
from .ppo import PPOConfig

__all__ = ["ExpertConfig", "EXPERT", "BC", "GAIL"]


@dataclass
class ExpertConfig(Config):
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

    def check(self) -> None:
        resolve_env_id(self.env)
        if self.n_demos < 0 or self.eval_episodes < 1:
            raise ConfigError(f"n_demos must be >= 0 and eval_episodes >= 1, got {self.n_demos}, {self.eval_episodes}")


def _write_run(out: Path, history: list[dict], config: Any) -> None:
    """metrics.jsonl (one line per iteration) and config.json in the run folder."""
    from ..checkpoint import atomic_write

    out.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(row) + "\n" for row in history)
    atomic_write(out / "metrics.jsonl", lambda tmp: Path(tmp).write_text(lines))
    text = json.dumps(config_to_dict(config), indent=2) + "\n"
    atomic_write(out / "config.json", lambda tmp: Path(tmp).write_text(text))


class PolicyFamily(Family):
    """What the three share: a policy file as the result, rollouts as the evaluation."""

    kind = POLICY_KIND
    aliases = {"env": "env"}
    how = ""

    def load(self, name_or_path, device=None):
        """(policy, header): the header holds env_id, algo, config and metrics."""
        return load_policy(name_or_path, device)

    def _refuse_overwrite(self, run) -> Path:
        out = Path(run.out_dir)
        if (out / "policy.safetensors").exists() and not run.force:
            raise CheckpointError(f"{out / 'policy.safetensors'} exists; choose another --out or pass --force")
        if run.export is not None and Path(run.export).exists() and not run.force:
            raise CheckpointError(f"{run.export} exists; refusing to overwrite it (pass --force)")
        return out

    def _save(self, run, policy, env_id: str, cfg, metrics: dict, data: str) -> None:
        """policy.safetensors in the run folder, and --export (recorded in the manifest if shipped)."""
        out = Path(run.out_dir)
        algo = self.name if self.name != "expert" else "ppo"
        export_policy(out / "policy.safetensors", policy, env_id=env_id, algo=algo, config=cfg, metrics=metrics,
                      command=run.command, overwrite=True)
        if run.export is not None:
            export_policy(run.export, policy, env_id=env_id, algo=algo, config=cfg, metrics=metrics,
                          command=run.command, overwrite=run.force)
            print(f"{self.name}: exported the policy to {run.export}")
            n = sum(p.numel() for p in policy.parameters())
            head = "categorical" if policy.discrete else "diagonal Gaussian"
            what = (f"{env_id} policy trained by {self.how} ({head} actor and value MLPs, tanh "
                    f"{'x'.join(map(str, policy.spec()['hidden']))}, {n} parameters); load with "
                    f"dlcourse.rl.family.load_policy")
            record_if_shipped(run.export, what=what, data=data, command=run.command, metrics=metrics)

    def add_eval_args(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--episodes", type=int, default=10, help="evaluation episodes (default: %(default)s)")
        p.add_argument("--seed", type=int, default=10_000, help="env seed of the first episode (default: %(default)s)")
        p.add_argument("--stochastic", action="store_true", help="sample actions instead of taking the most likely one")

    def evaluate(self, policy, meta, args) -> dict:
        """Roll out the policy and report its return and normalised return. The 1 of the normalised return is the
        expert return recorded with the policy (its own for an expert, the demonstrations' mean for bc and gail);
        the 0 is the random return recorded with it, or, for a policy without one, measured here."""
        from .ppo import evaluate, normalised_return

        if args.episodes < 1:
            raise ConfigError(f"--episodes must be at least 1, got {args.episodes}")
        env_id, metrics = meta["env_id"], meta.get("metrics", {})
        rets = evaluate(policy, env_id, args.episodes, seed=args.seed, deterministic=not args.stochastic)
        rand = [metrics["random_return"]] if "random_return" in metrics else evaluate(None, env_id, args.episodes,
                                                                                        args.seed)
        expert = metrics.get("expert_return", metrics.get("return") if meta.get("algo") == "ppo" else None)
        mean, rmean = sum(rets) / len(rets), sum(rand) / len(rand)
        std = (sum((r - mean) ** 2 for r in rets) / len(rets)) ** 0.5
        out = {"env_id": env_id, "algo": meta.get("algo"), "return": mean, "return_std": std, "random_return": rmean,
               "expert_return": expert, "normalised_return": None}
        if expert is not None and float(expert) != rmean:
            out["normalised_return"] = normalised_return(mean, rmean, float(expert))
        out["episodes"], out["deterministic"] = args.episodes, not args.stochastic
        return out

    def report(self, m: dict) -> str:
        line = (f"{m['algo']} {m['env_id']}: return {m['return']:.1f} ± {m['return_std']:.1f} over {m['episodes']} "
                f"{'deterministic' if m['deterministic'] else 'stochastic'} episodes (random {m['random_return']:.1f}")
        if m["normalised_return"] is None:
            return line + "; no expert return recorded, so no normalised return)"
        return line + f", expert {float(m['expert_return']):.1f}); normalised return {m['normalised_return']:.3f}"


class ExpertFamily(PolicyFamily):
    name = "expert"
    default_checkpoint = "cartpole_expert"
    config = ExpertConfig
    presets = Presets(
        "expert",
        # classic control on a laptop: CartPole reaches 500 in ~40k steps (~10 s on one core); acrobot needs ~100k,
        # pendulum and mountaincar more (`--set ppo.total_steps=...`)
        cpu=ExpertConfig(env="cartpole", ppo=PPOConfig(num_envs=8, n_steps=32, total_steps=100_000, epochs=20,
                                                        minibatch_size=256, lr=1e-3, gamma=0.98, gae_lambda=0.8)),
        # MuJoCo (Hopper-v5): the PPO paper's MuJoCo setting (Schulman et al. 2017, Table 3), 1M steps
        large=ExpertConfig(env="hopper", ppo=PPOConfig(num_envs=1, n_steps=2048, total_steps=1_000_000, epochs=10,
                                                        minibatch_size=64, lr=3e-4, gamma=0.99, gae_lambda=0.95,
                                                        max_grad_norm=0.5, log_std_init=0.0)))
    aliases = {"env": "env", "demos": "demos_out"}
    how = "PPO + GAE on the environment reward"

    def train(self, cfg: ExpertConfig, run) -> dict:
        from .demos import collect_demos
        from .ppo import evaluate, train_ppo

        if run.resume:
            raise ConfigError("expert runs do not resume (about a minute on a CPU); rerun without --resume")
        if cfg.demos_out and cfg.n_demos and Path(cfg.demos_out).exists() and not run.force:
            raise CheckpointError(f"{cfg.demos_out} exists; refusing to overwrite it (pass --force)")
        env_id, out = resolve_env_id(cfg.env), self._refuse_overwrite(run)
        result = train_ppo(env_id, cfg.ppo, seed=cfg.seed, device=run.device, log_every=20)
        policy = result.policy.cpu()
        rets, rand = evaluate(policy, env_id, cfg.eval_episodes), evaluate(None, env_id, 20, seed=30_000 + cfg.seed)
        metrics = {"return": sum(rets) / len(rets), "random_return": sum(rand) / len(rand),
                   "env_steps": result.env_steps, "wall_time_s": round(result.wall_time, 1)}
        print(f"expert {env_id}: return {metrics['return']:.1f} (random {metrics['random_return']:.1f}) after "
              f"{result.env_steps} steps, {result.wall_time:.0f}s")
        _write_run(out, result.history, cfg)
        self._save(run, policy, env_id, cfg, metrics, f"{env_id} interaction, {result.env_steps} environment steps")
        if cfg.n_demos:
            demos = collect_demos(policy, env_id, cfg.n_demos, seed=cfg.demos_seed,
                                  random_return=metrics["random_return"], command=run.command)
            demos.save(out / "demos.safetensors", overwrite=True)
            if cfg.demos_out:
                demos.save(Path(cfg.demos_out), overwrite=run.force)
                print(f"expert: wrote {cfg.n_demos} demonstrations (mean return {demos.meta['expert_return']:.1f}) "
                      f"to {cfg.demos_out}")
                record_if_shipped(
                    cfg.demos_out, command=run.command,
                    what=(f"{cfg.n_demos} {env_id} demonstration episodes of the PPO expert ("
                          f"{'deterministic' if demos.meta['deterministic'] else 'sampled'} actions), format: "
                          f"dlcourse.rl.demos; load with dlcourse.rl.demos.Demonstrations.load"),
                    data=f"{env_id}, episode i from env seed {cfg.demos_seed} + i",
                    metrics={"n_episodes": demos.n_episodes, "pairs": len(demos),
                             "expert_return": demos.meta["expert_return"],
                             "random_return": demos.meta["random_return"]})
        return metrics


class BCFamily(PolicyFamily):
    name = "bc"
    default_checkpoint = "cartpole_bc"
    config = BCConfig
    presets = Presets("bc", cpu=BCConfig(), large=BCConfig(env="hopper", demos="hopper_demos", n_trajectories=4,
                                                          hidden=(256, 256)))
    how = "behavioural cloning"

    def train(self, cfg: BCConfig, run) -> dict:
        from .bc import train_bc
        from .ppo import evaluate, normalised_return

        env_id = resolve_env_id(cfg.env)
        env_spaces(env_id)  # a MuJoCo task without MuJoCo is a one-line error here, before anything is loaded
        demos = load_demos(cfg.demos, cfg.env)
        if run.export is not None and Path(run.export).exists() and not run.force:
            raise CheckpointError(f"{run.export} exists; refusing to overwrite it (pass --force)")
        t0 = time.perf_counter()
        policy = train_bc(demos, cfg, out_dir=run.out_dir, device=run.device, resume=run.resume).model.cpu().eval()
        rets = evaluate(policy, env_id, cfg.eval_episodes)
        ret, meta = sum(rets) / len(rets), demos.meta
        pairs = len(demos.take(cfg.n_trajectories, cfg.subsample))
        metrics = {"return": ret, "normalised_return": normalised_return(ret, meta["random_return"],
                                                                         meta["expert_return"]),
                   "expert_return": meta["expert_return"], "random_return": meta["random_return"],
                   "n_trajectories": cfg.n_trajectories, "pairs": pairs, "env_steps": 0,
                   "wall_time_s": round(time.perf_counter() - t0, 1)}
        print(f"bc {env_id}: return {ret:.1f}, normalised {metrics['normalised_return']:.3f} from "
              f"{cfg.n_trajectories} trajectories ({pairs} pairs)")
        self._save(run, policy, env_id, cfg, metrics, f"the first {cfg.n_trajectories} episode(s) of {cfg.demos}, "
                   f"every {cfg.subsample}-th pair ({pairs} pairs)")
        return metrics


class GAILFamily(PolicyFamily):
    name = "gail"
    default_checkpoint = "cartpole_gail"
    config = GAILConfig
    presets = Presets(
        "gail", cpu=GAILConfig(),
        large=GAILConfig(env="hopper", demos="hopper_demos", n_trajectories=4, normalise_obs=True,
                         disc_hidden=(100, 100), eval_every=50,
                         ppo=PPOConfig(num_envs=1, n_steps=2048, total_steps=3_000_000, epochs=10, minibatch_size=64,
                                       lr=3e-4, gamma=0.99, gae_lambda=0.95)))
    how = "GAIL (Ho & Ermon 2016) with PPO"

    def train(self, cfg: GAILConfig, run) -> dict:
        from ..checkpoint import export_weights
        from .gail import train_gail

        if run.resume:
            raise ConfigError("gail runs do not resume (about a minute on a CPU for CartPole); rerun without --resume")
        env_id = resolve_env_id(cfg.env)
        env_spaces(env_id)
        demos = load_demos(cfg.demos, cfg.env)
        out = self._refuse_overwrite(run)
        result = train_gail(demos, cfg, device=run.device)
        last = result.history[-1]
        metrics = {"return": last["eval_return"], "normalised_return": last["normalised_return"],
                   "expert_return": demos.meta["expert_return"], "random_return": demos.meta["random_return"],
                   "n_trajectories": cfg.n_trajectories, "env_steps": result.env_steps,
                   "wall_time_s": round(result.wall_time, 1)}
        print(f"gail {env_id}: return {metrics['return']:.1f}, normalised {metrics['normalised_return']:.3f} from "
              f"{cfg.n_trajectories} trajectories after {result.env_steps} env steps, {result.wall_time:.0f}s")
        _write_run(out, result.history, cfg)
        self._save(run, result.policy.cpu(), env_id, cfg, metrics,
                   f"the first {cfg.n_trajectories} episode(s) of {cfg.demos}, every {cfg.subsample}-th pair; "
                   f"{result.env_steps} environment steps without the environment reward")
        export_weights(out / "discriminator.safetensors", result.discriminator.cpu().state_dict(),
                       {"kind": "gail_discriminator", "env_id": env_id, "config": config_to_dict(cfg)}, overwrite=True)
        return metrics


EXPERT, BC, GAIL = ExpertFamily(), BCFamily(), GAILFamily()
