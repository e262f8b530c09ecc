"""GAIL vs behavioural cloning on a classic-control task: normalised return against the number of expert
trajectories, with environment steps and wall time, and the environment's steps per second.

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/gail_bench.py --json runs/gail_bench.json \\
        --plot runs/gail_bench.png
    ... --quick            # 1 seed, trajectories 1 and 4, 100k GAIL steps (a few minutes)

The claim checked (Ho & Ermon 2016, Section 6 and Figure 1, classic control): GAIL reaches at least 0.95 of the
expert's return from at most 4 expert trajectories, where behavioural cloning from 1 trajectory falls short.
Normalised return = (R - R_random) / (R_expert - R_random), R of the deterministic policy over 10 episodes
(env seeds 10000 + seed + i), R_random and R_expert from the demonstrations file.

CartPole (the default) uses the shipped expert's demonstrations (``cartpole_demos``: 10 deterministic episodes of
500 steps), keeping every ``--subsample``-th pair (default 20, i.e. 25 pairs per trajectory): with all 500 pairs
of one episode BC already matches this expert on CartPole-v1, which the ``--bc-full`` rows show. Two controls at
4 trajectories (``--controls``) ask what GAIL's success rests on: the sign-free reward -logit (no survival bonus)
and a discriminator that is never trained (disc_steps=0, so the reward is a fixed positive function of (s, a)).
Also reported: the fraction of the expert's states on which the policy's most likely action is the expert's.

Any other task needs an expert and its demonstrations first (``--train-expert DIR`` trains one with
``dlcourse train expert`` into DIR, or reuses the one there)::

    nice -n 19 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/gail_bench.py --env acrobot \\
        --train-expert runs/bench-acrobot/expert --subsample 1 --rewards neg_log_d logit --normalise-obs \\
        --no-controls --no-bc-full --gail-steps 200000 --trajectories 1 4 --json runs/bench-acrobot/gail_bench.json \\
        --plot runs/bench-acrobot/gail_bench.png

Acrobot's expert *ends* its episodes (it swings up in about 80 steps; the episode terminates there), so the
paper's reward -log D >= 0, which pays for every step survived, pulls the other way; ``--rewards`` runs GAIL with
each reward given, ``logit`` being -logit D = log(1 - D) - log D, which has no such bias.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from dlcourse.rl.bc import BCConfig, train_bc
from dlcourse.rl.envs import make_env, resolve_env_id
from dlcourse.rl.demos import load_demos
from dlcourse.rl.policies import load_policy
from dlcourse.rl.gail import GAILConfig, train_gail
from dlcourse.rl.policies import ActorCritic
from dlcourse.rl.ppo import collect_rollout, evaluate, normalised_return


def agreement(policy: ActorCritic, demos) -> float:
    """Fraction of expert states where argmax π(·|s) is the expert's action."""
    with torch.no_grad():
        return float((policy.act(demos.obs, deterministic=True).cpu() == demos.actions).float().mean())


def env_steps_per_second(env_name: str, num_envs: int, steps: int = 20_000) -> float:
    """Raw VecEnv throughput with uniform random actions (no policy)."""
    env = make_env(env_name, num_envs, seed=0)
    env.reset()
    g = torch.Generator().manual_seed(0)
    n_iter = max(1, steps // num_envs)
    t0 = time.perf_counter()
    for _ in range(n_iter):
        env.step(torch.randint(env.act_dim, (num_envs,), generator=g))
    dt = time.perf_counter() - t0
    env.close()
    return n_iter * num_envs / dt


def rollout_steps_per_second(env_name: str, num_envs: int, device: str, steps: int = 8192) -> float:
    """Throughput of `collect_rollout` (policy forward on ``device`` + environment) as PPO and GAIL use it."""
    env = make_env(env_name, num_envs, seed=0)
    torch.manual_seed(0)
    pol = ActorCritic(env.obs_dim, env.act_dim, env.discrete).to(device)
    obs = env.reset()
    collect_rollout(env, pol, obs, 8)  # warm-up
    n_steps = max(1, steps // num_envs)
    t0 = time.perf_counter()
    collect_rollout(env, pol, obs, n_steps)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    env.close()
    return n_steps * num_envs / dt


def run_bc(demos, n: int, seed: int, subsample: int, args) -> dict:
    cfg = BCConfig(env=args.env, n_trajectories=n, subsample=subsample, seed=seed)
    cfg.train.steps = args.bc_steps
    cfg.train.log_every = args.bc_steps
    t0 = time.perf_counter()
    policy = train_bc(demos, cfg, device=args.device).model.cpu().eval()
    wall = time.perf_counter() - t0
    rets = evaluate(policy, args.env, args.eval_episodes, seed=10_000 + seed)
    ret = sum(rets) / len(rets)
    return {"algo": f"bc(subsample={subsample})", "n": n, "seed": seed, "return": ret,
            "normalised": normalised_return(ret, demos.meta["random_return"], demos.meta["expert_return"]),
            "agreement": agreement(policy, demos), "env_steps": 0, "wall_s": wall,
            "pairs": len(demos.take(n, subsample))}


def train_expert(env: str, out: Path, steps: int) -> tuple[str, str]:
    """(policy, demonstrations) paths of a PPO expert in ``out``, trained there by the command line if missing."""
    import subprocess
    import sys

    policy, demos = out / "policy.safetensors", out / "demos.safetensors"
    if not (policy.exists() and demos.exists()):
        cmd = [sys.executable, "-m", "dlcourse.cli", "train", "expert", "--env", env, "--preset", "cpu",
               "--set", f"ppo.total_steps={steps}", "--out", str(out)]
        print("# training the expert:", " ".join(cmd[2:]), flush=True)
        subprocess.run(cmd, check=True)
    return str(policy), str(demos)


def run_gail(demos, n: int, seed: int, args, label: str = "gail", **overrides) -> dict:
    overrides.setdefault("normalise_obs", args.normalise_obs)
    cfg = GAILConfig(env=args.env, n_trajectories=n, subsample=args.subsample, seed=seed,
                     eval_episodes=args.eval_episodes, eval_every=args.eval_every, **overrides)
    cfg.ppo = replace(cfg.ppo, total_steps=args.gail_steps)
    res = train_gail(demos, cfg, device=args.device, log_every=0)
    evals = [(r["step"], r["time"], r["normalised_return"]) for r in res.history if "normalised_return" in r]
    first = next(((s, t) for s, t, v in evals if v >= 0.95), (None, None))
    last = res.history[-1]
    return {"algo": label, "n": n, "seed": seed, "return": last["eval_return"], "normalised": last["normalised_return"],
            "agreement": agreement(res.policy.cpu(), demos), "env_steps": res.env_steps, "wall_s": res.wall_time,
            "steps_to_095": first[0], "time_to_095_s": first[1], "pairs": len(demos.take(n, args.subsample)),
            "eval_curve": evals}


def _mean_sd(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "n/a"
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.mean(xs):.3f} ± {sd:.3f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="cartpole")
    p.add_argument("--demos", default=None, help="shipped name or .safetensors path (default: <env>_demos)")
    p.add_argument("--expert", default=None, help="shipped name or .safetensors path (default: <env>_expert)")
    p.add_argument("--train-expert", type=Path, default=None, metavar="DIR",
                   help="train a PPO expert and its demonstrations into DIR (reused if DIR/policy.safetensors exists)")
    p.add_argument("--expert-steps", type=int, default=200_000, help="PPO steps of --train-expert")
    p.add_argument("--rewards", nargs="+", default=["neg_log_d"], choices=["neg_log_d", "logit"],
                   help="GAIL's reward(s): one GAIL row per reward")
    p.add_argument("--normalise-obs", action="store_true", help="GAIL: standardise the discriminator's inputs")
    p.add_argument("--trajectories", type=int, nargs="+", default=[1, 4, 10])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--subsample", type=int, default=20)
    p.add_argument("--gail-steps", type=int, default=300_000)
    p.add_argument("--bc-steps", type=int, default=2000)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--eval-every", type=int, default=40, help="GAIL: evaluate every this many PPO iterations")
    p.add_argument("--no-controls", dest="controls", action="store_false", help="skip the two GAIL controls")
    p.add_argument("--no-bc-full", dest="bc_full", action="store_false", help="skip BC on every pair")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="1 seed, trajectories 1 and 4, 100k GAIL steps")
    p.add_argument("--json", type=Path, default=None, help="write every run's numbers here")
    p.add_argument("--plot", type=Path, default=None, help="write the normalised-return figure (PNG) here")
    args = p.parse_args()
    if args.quick:
        args.seeds, args.trajectories, args.gail_steps = [0], [1, 4], 100_000
    if args.train_expert is not None:
        args.expert, args.demos = train_expert(args.env, args.train_expert, args.expert_steps)
    args.demos = args.demos or f"{args.env}_demos"
    args.expert = args.expert or f"{args.env}_expert"
    env_id = resolve_env_id(args.env)
    torch.set_num_threads(1)
    t_start = time.perf_counter()

    print(f"# gail_bench: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s), device {args.device}")
    speed = {f"vecenv_random_N{n}": env_steps_per_second(args.env, n) for n in (1, 8, 32)}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for dev in devices:
        speed[f"rollout_policy_N8_{dev}"] = rollout_steps_per_second(args.env, 8, dev)
    print(f"\n## environment steps per second ({env_id})")
    for k, v in speed.items():
        print(f"  {k:<24s} {v:10.0f} steps/s")

    demos = load_demos(args.demos, args.env)
    expert, emeta = load_policy(args.expert)
    rexp = evaluate(expert, args.env, args.eval_episodes, seed=10_000)
    print(f"\n## expert {emeta['env_id']}: return {sum(rexp) / len(rexp):.1f} (demos mean "
          f"{demos.meta['expert_return']:.1f}, random {demos.meta['random_return']:.2f}); trained by PPO in "
          f"{emeta['metrics'].get('env_steps')} env steps, {emeta['metrics'].get('wall_time_s')} s")

    runs: list[dict] = []

    def log(r):
        runs.append(r)
        extra = (f"  first >=0.95 at {r['steps_to_095']} steps ({r['time_to_095_s']:.0f}s)"
                 if r.get("steps_to_095") is not None else ("  never >=0.95" if "steps_to_095" in r else ""))
        print(f"  {r['algo']:<22s} n={r['n']:<2d} seed={r['seed']}  pairs={r['pairs']:<4d} return {r['return']:6.1f}"
              f"  normalised {r['normalised']:.3f}  agreement {r['agreement']:.3f}  env steps {r['env_steps']:>7d}"
              f"  wall {r['wall_s']:6.1f}s{extra}", flush=True)

    print(f"\n## runs (every {args.subsample}-th pair unless stated)")
    for n in args.trajectories:
        for seed in args.seeds:
            log(run_bc(demos, n, seed, args.subsample, args))
            if args.bc_full:
                log(run_bc(demos, n, seed, 1, args))
            for reward in args.rewards:
                log(run_gail(demos, n, seed, args, label="gail" if reward == "neg_log_d" else f"gail(reward={reward})",
                             reward=reward))
    if args.controls:
        n = 4 if 4 in args.trajectories else args.trajectories[0]
        log(run_gail(demos, n, args.seeds[0], args, label="gail(reward=-logit)", reward="logit"))
        log(run_gail(demos, n, args.seeds[0], args, label="gail(disc_steps=0)", disc_steps=0))

    print("\n## normalised return vs expert trajectories (mean ± sd over seeds)")
    algos = list(dict.fromkeys(r["algo"] for r in runs))
    print(f"  {'algo':<22s} " + "  ".join(f"n={n:<15d}" for n in args.trajectories))
    summary: dict[str, dict[int, dict]] = {}
    for a in algos:
        cells = []
        for n in args.trajectories:
            rs = [r for r in runs if r["algo"] == a and r["n"] == n]
            summary.setdefault(a, {})[n] = {"normalised": [r["normalised"] for r in rs],
                                            "env_steps": [r["env_steps"] for r in rs],
                                            "wall_s": [r["wall_s"] for r in rs]}
            cells.append(f"{_mean_sd([r['normalised'] for r in rs]) if rs else '-':<17s}")
        print(f"  {a:<22s} " + " ".join(cells))
    gail_rows = [r for r in runs if r["algo"].startswith("gail") and r["algo"] != "gail(disc_steps=0)"
                 and r["algo"] != "gail(reward=-logit)"]
    if gail_rows:
        print(f"  gail: {gail_rows[0]['env_steps']} env steps per run, wall {_mean_sd([r['wall_s'] for r in gail_rows])}"
              f" s; env steps to first reach 0.95: {[r['steps_to_095'] for r in gail_rows]}")

    print("\n## the claim")
    bc1 = [r["normalised"] for r in runs if r["algo"] == f"bc(subsample={args.subsample})" and r["n"] == 1]
    ok_g = False
    for reward in args.rewards:
        label = "gail" if reward == "neg_log_d" else f"gail(reward={reward})"
        g4 = [r["normalised"] for r in runs if r["algo"] == label and r["n"] <= 4]
        ok = bool(g4) and min(g4) >= 0.95
        ok_g = ok_g or ok
        print(f"  {label + ' >= 0.95 from <= 4 trajectories (every seed):':<58s} {'yes' if ok else 'NO'} "
              f"(min {min(g4, default=math.nan):.3f})")
    ok_b = bool(bc1) and max(bc1) < 0.95
    print(f"  {'BC from 1 trajectory < 0.95 (every seed):':<58s} {'yes' if ok_b else 'NO'} (max {max(bc1, default=math.nan):.3f})")
    total = time.perf_counter() - t_start
    print(f"\ntotal wall time {total:.0f}s")

    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"speed_steps_per_s": speed, "runs": runs, "claim": {"gail": ok_g, "bc": ok_b},
                                         "args": {k: (str(v) if isinstance(v, Path) else v)
                                                  for k, v in vars(args).items()}, "total_s": total}, indent=1))
    if args.plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.4), dpi=100)
        for a in algos:
            ns = [n for n in args.trajectories if summary[a][n]["normalised"]]
            if len(ns) < 2:
                continue
            m = [statistics.mean(summary[a][n]["normalised"]) for n in ns]
            lo = [min(summary[a][n]["normalised"]) for n in ns]
            hi = [max(summary[a][n]["normalised"]) for n in ns]
            ax.errorbar(ns, m, yerr=[[x - y for x, y in zip(m, lo)], [y - x for x, y in zip(m, hi)]], marker="o",
                        capsize=3, label=a)
        ax.axhline(0.95, color="gray", lw=0.8, ls="--")
        ax.set_xlabel("expert trajectories")
        ax.set_ylabel("normalised return")
        ax.set_title(f"{env_id}: GAIL vs behavioural cloning", fontsize=10)
        ax.legend(fontsize=8)
        fig.tight_layout()
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
