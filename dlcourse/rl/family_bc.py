"""The ``bc`` family: ``dlcourse train bc --env cartpole --set n_trajectories=1 [--export F]``.

Trains by `dlcourse.rl.bc.train_bc` (the shared loop, so ``--resume`` works), evaluates the deterministic policy and
prints its normalised return (0 = random, 1 = the expert that made the demonstrations); the policy is written as
``policy.safetensors`` in the run folder (format: `dlcourse.rl.family`).
"""

from __future__ import annotations

import time
from pathlib import Path

from ..checkpoint import record_if_shipped
from ..config import Presets
from ..errors import CheckpointError
from .bc import BCConfig, train_bc
from .envs import env_spaces, resolve_env_id
from .family import (add_env_arg, add_eval_args, apply_env_arg, describe_policy, evaluate_policy_cmd, export_policy,
                     load_demos)

__all__ = ["PRESETS", "FAMILY", "train"]

PRESETS: Presets[BCConfig] = Presets("bc", cpu=BCConfig(), large=BCConfig(env="hopper", demos="hopper_demos",
                                                                          n_trajectories=4, hidden=(256, 256)))


def train(cfg: BCConfig, run) -> dict:
    """``dlcourse train bc``."""
    from .ppo import evaluate, normalised_return

    env_id = resolve_env_id(cfg.env)
    env_spaces(env_id)  # a MuJoCo task without MuJoCo is a one-line error here, before anything is loaded
    demos = load_demos(cfg.demos, cfg.env)
    out = Path(run.out_dir)
    t0 = time.perf_counter()
    result = train_bc(demos, cfg, out_dir=out, device=run.device, resume=run.resume)
    wall = time.perf_counter() - t0
    policy = result.model.cpu().eval()
    rets = evaluate(policy, env_id, cfg.eval_episodes)
    ret = sum(rets) / len(rets)
    metrics = {"return": ret, "normalised_return": normalised_return(ret, demos.meta["random_return"],
                                                                     demos.meta["expert_return"]),
               "expert_return": demos.meta["expert_return"], "random_return": demos.meta["random_return"],
               "n_trajectories": cfg.n_trajectories, "pairs": len(demos.take(cfg.n_trajectories, cfg.subsample)),
               "env_steps": 0, "wall_time_s": round(wall, 1)}
    print(f"bc {env_id}: return {ret:.1f}, normalised {metrics['normalised_return']:.3f} from "
          f"{cfg.n_trajectories} trajectories ({metrics['pairs']} pairs)")
    export_policy(out / "policy.safetensors", policy, env_id=env_id, algo="bc", config=cfg, metrics=metrics,
                  command=run.command, overwrite=True)
    if run.export is not None:
        if Path(run.export).exists() and not run.force:
            raise CheckpointError(f"{run.export} exists; refusing to overwrite it (pass --force)")
        export_policy(run.export, policy, env_id=env_id, algo="bc", config=cfg, metrics=metrics,
                      command=run.command, overwrite=run.force)
        record_if_shipped(run.export, what=describe_policy(policy, "behavioural cloning", env_id), command=run.command,
                          data=(f"the first {cfg.n_trajectories} episode(s) of {cfg.demos}, every {cfg.subsample}-th "
                                f"pair ({metrics['pairs']} pairs)"), metrics=metrics)
    return metrics


def _make_family():
    from ..registry import Family

    return Family(name="bc", help="behavioural cloning from expert demonstrations (the GAIL baseline)",
                  presets=PRESETS, train=train, add_train_args=add_env_arg, apply_train_args=apply_env_arg,
                  add_eval_args=lambda p: add_eval_args(p, "cartpole_bc"), evaluate=evaluate_policy_cmd)


FAMILY = _make_family()
