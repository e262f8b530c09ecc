"""`dlcourse train expert|bc|gail` and `dlcourse eval expert|bc|gail` end to end, with tiny budgets."""

from __future__ import annotations

import json

import pytest
import torch

from dlcourse.cli import main
from dlcourse.rl.demos import Demonstrations
from dlcourse.rl.policies import load_policy



TINY_PPO = ["--set", "ppo.num_envs=2", "--set", "ppo.n_steps=32", "--set", "ppo.total_steps=128",
            "--set", "ppo.epochs=1", "--set", "ppo.minibatch_size=32", "--set", "eval_episodes=2"]


@pytest.fixture(scope="module")
def expert_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rl_cli")
    rc = main(["train", "expert", "--env", "cartpole", "--out", str(tmp / "expert"), "--demos",
               str(tmp / "demos.safetensors"), "--export", str(tmp / "expert.safetensors"), "--set", "n_demos=3",
               *TINY_PPO])
    assert rc == 0
    return tmp


def test_expert_writes_policy_metrics_and_demos(expert_run):
    tmp = expert_run
    policy, meta = load_policy(tmp / "expert.safetensors")
    assert meta["algo"] == "ppo" and meta["env_id"] == "CartPole-v1" and meta["command"].startswith("dlcourse ")
    assert meta["metrics"]["env_steps"] == 128
    rows = [json.loads(line) for line in (tmp / "expert" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and rows[-1]["step"] == 128
    demos = Demonstrations.load(tmp / "demos.safetensors")
    assert demos.n_episodes == 3 and demos.meta["random_return"] == meta["metrics"]["random_return"]
    assert torch.equal(demos.obs, Demonstrations.load(tmp / "expert" / "demos.safetensors").obs)


def test_bc_and_gail_from_the_demos_then_evaluate(expert_run, capsys):
    tmp = expert_run
    demos = str(tmp / "demos.safetensors")
    assert main(["train", "bc", "--out", str(tmp / "bc"), "--set", f"demos={demos}", "--set", "train.steps=20",
                 "--set", "eval_episodes=2"]) == 0
    assert main(["train", "gail", "--out", str(tmp / "gail"), "--set", f"demos={demos}", "--set", "n_trajectories=2",
                 "--set", "eval_every=0", *TINY_PPO]) == 0
    out = capsys.readouterr().out
    assert "bc CartPole-v1: return" in out and "gail CartPole-v1: return" in out
    for algo in ("bc", "gail"):
        _, meta = load_policy(tmp / algo / "policy.safetensors")
        assert meta["algo"] == algo and "normalised_return" in meta["metrics"]
    assert (tmp / "gail" / "discriminator.safetensors").exists()
    assert main(["eval", "gail", "--policy", str(tmp / "gail" / "policy.safetensors"), "--episodes", "2"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("gail CartPole-v1: return") and "normalised return" in line


@pytest.mark.parametrize("argv, needle", [
    (["train", "gail", "--resume"], "do not resume"),
    (["train", "expert", "--env", "cartpol"], "unknown env"),
    (["train", "bc", "--set", "demos=/nonexistent/demos.safetensors"], "no file"),
    (["eval", "expert", "--policy", "/nonexistent/p.safetensors"], "no file"),
    (["train", "gail", "--set", "reward=positive"], "reward must be one of 'neg_log_d', 'logit'"),
])
def test_cli_errors_are_one_line(argv, needle, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path / "run")] if argv[0] == "train" else argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and needle in err


def test_bc_refuses_demos_of_another_env(expert_run, capsys):
    demos = str(expert_run / "demos.safetensors")
    assert main(["train", "bc", "--env", "acrobot", "--set", f"demos={demos}", "--out",
                 str(expert_run / "bc-acrobot")]) == 2
    assert "are for CartPole-v1, not Acrobot-v1" in capsys.readouterr().err
