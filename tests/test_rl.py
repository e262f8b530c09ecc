"""dlcourse.rl: GAE against written-out sums, PPO's surrogate, GAIL's discriminator and reward sign, environments,
demonstrations on disk, behavioural cloning and reproducibility from a seed."""

from __future__ import annotations

import math

import pytest
import torch

from dlcourse.errors import CheckpointError, ConfigError, DlcourseError
from dlcourse.rl import envs as rl_envs
from dlcourse.rl.bc import BCConfig, bc_loss, train_bc
from dlcourse.rl.demos import Demonstrations, collect_demos
from dlcourse.rl.envs import make_env, resolve_env_id
from dlcourse.rl.policies import export_policy, load_policy
from dlcourse.rl.gail import (Discriminator, GAILConfig, _discriminator_step, discriminator_loss, gail_reward,
                              train_gail)
from dlcourse.rl.policies import ActorCritic
from dlcourse.rl.ppo import (PPOConfig, clipped_surrogate, evaluate, gae, gae_reference, normalised_return,
                             train_ppo)



# ---------------------------------------------------------------------------------------------------------------
# GAE
# ---------------------------------------------------------------------------------------------------------------


def _episode_batch(T=7, gamma=0.9):
    """Three environments over T steps: env 0 never ends, env 1 terminates at t=2, env 2 is truncated at t=3."""
    g = torch.Generator().manual_seed(0)
    rewards = torch.randn(T, 3, generator=g, dtype=torch.float64)
    values = torch.randn(T, 3, generator=g, dtype=torch.float64)
    next_values = torch.cat([values[1:], torch.randn(1, 3, generator=g, dtype=torch.float64)])
    # where an episode ended, V(s_{t+1}) is V of the final observation, not of the next episode's first state
    next_values[2, 1] = 123.0   # terminated: must be ignored
    next_values[3, 2] = 0.75    # truncated: must be bootstrapped
    terminated = torch.zeros(T, 3, dtype=torch.bool)
    truncated = torch.zeros(T, 3, dtype=torch.bool)
    terminated[2, 1] = True
    truncated[3, 2] = True
    return rewards, values, next_values, terminated, terminated | truncated


def _segments(T, dones_col):
    """[(start, end)] of the pieces of one environment's column, cut after every done."""
    out, start = [], 0
    for t in range(T):
        if dones_col[t]:
            out.append((start, t + 1))
            start = t + 1
    if start < T:
        out.append((start, T))
    return out


def test_gae_lambda_one_is_discounted_return_minus_value():
    """λ = 1: Â_t = Σ_k γ^(k-t) r_k (+ γ^(end-t) V(s_end) unless terminated) - V(s_t), within the episode."""
    gamma = 0.9
    r, v, nv, term, done = _episode_batch(gamma=gamma)
    adv, ret = gae(r, v, nv, term, done, gamma, 1.0)
    T = r.shape[0]
    expected = torch.zeros_like(r)
    for n in range(3):
        for a, b in _segments(T, done[:, n]):
            tail = 0.0 if term[b - 1, n] else nv[b - 1, n].item()  # bootstrap unless the MDP terminated
            for t in range(a, b):
                disc = sum(gamma ** (k - t) * r[k, n].item() for k in range(t, b))
                expected[t, n] = disc + gamma ** (b - t) * tail - v[t, n].item()
    torch.testing.assert_close(adv, expected)
    torch.testing.assert_close(ret, expected + v)
    # the terminated episode's hand-checked last step: Â = r - V, the 123 never enters
    assert adv[2, 1].item() == pytest.approx(r[2, 1].item() - v[2, 1].item())
    # the truncated one bootstraps from its final observation's value 0.75
    assert adv[3, 2].item() == pytest.approx(r[3, 2].item() + gamma * 0.75 - v[3, 2].item())


def test_gae_lambda_zero_is_td_error():
    gamma = 0.9
    r, v, nv, term, done = _episode_batch(gamma=gamma)
    adv, _ = gae(r, v, nv, term, done, gamma, 0.0)
    td = r + gamma * (~term).double() * nv - v  # δ_t, GAE eq. (10)
    torch.testing.assert_close(adv, td)


@pytest.mark.parametrize("lam", [0.0, 0.5, 0.95, 1.0])
def test_gae_equals_sum_of_td_errors_and_reference(lam):
    """Â_t = Σ_l (γλ)^l δ_(t+l) inside the episode (GAE eq. 16), and the lecture's per-env Python loop agrees."""
    gamma = 0.97
    r, v, nv, term, done = _episode_batch(T=9, gamma=gamma)
    adv, ret = gae(r, v, nv, term, done, gamma, lam)
    delta = r + gamma * (~term).double() * nv - v
    expected = torch.zeros_like(r)
    for n in range(3):
        for a, b in _segments(r.shape[0], done[:, n]):
            for t in range(a, b):
                expected[t, n] = sum((gamma * lam) ** (k - t) * delta[k, n] for k in range(t, b))
    torch.testing.assert_close(adv, expected)
    ref_adv, ref_ret = gae_reference(r, v, nv, term, done, gamma, lam)
    torch.testing.assert_close(adv, torch.tensor(ref_adv, dtype=torch.float64))
    torch.testing.assert_close(ret, torch.tensor(ref_ret, dtype=torch.float64))


# ---------------------------------------------------------------------------------------------------------------
# PPO pieces
# ---------------------------------------------------------------------------------------------------------------


def test_clipped_surrogate_by_hand():
    """PPO eq. (7) on single transitions: the clip only ever removes the incentive to move further."""
    cases = [(1.5, 1.0, 1.2), (1.5, -1.0, -1.5), (0.5, 1.0, 0.5), (0.5, -1.0, -0.8), (1.1, 2.0, 2.2)]
    for ratio, adv, want in cases:
        got = clipped_surrogate(torch.tensor([ratio]), torch.tensor([adv]), 0.2)
        assert got.item() == pytest.approx(want)


def test_ppo_config_rejects_bad_values():
    with pytest.raises(ConfigError):
        PPOConfig(gamma=1.5)
    with pytest.raises(ConfigError):
        PPOConfig(num_envs=0)


def test_normalised_return_closed_form():
    assert normalised_return(22.0, 22.0, 500.0) == 0.0
    assert normalised_return(500.0, 22.0, 500.0) == 1.0
    assert normalised_return(261.0, 22.0, 500.0) == pytest.approx(0.5)
    assert normalised_return(-300.0, -1500.0, -200.0) == pytest.approx(1200 / 1300)  # negative-reward tasks
    with pytest.raises(ValueError):
        normalised_return(1.0, 3.0, 3.0)


def test_train_ppo_reproducible_with_seed():
    cfg = PPOConfig(num_envs=2, n_steps=16, total_steps=64, epochs=2, minibatch_size=16, hidden=(16,))
    a = train_ppo("cartpole", cfg, seed=3, log_every=0).policy.state_dict()
    b = train_ppo("cartpole", cfg, seed=3, log_every=0).policy.state_dict()
    c = train_ppo("cartpole", cfg, seed=4, log_every=0).policy.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_train_ppo_continuous_actions_run():
    """Pendulum: Gaussian policy, truncation-only episodes, clipped actions; the update moves log σ."""
    cfg = PPOConfig(num_envs=2, n_steps=16, total_steps=32, epochs=1, minibatch_size=16, hidden=(8,))
    res = train_ppo("pendulum", cfg, seed=0, log_every=0)
    assert res.env_steps == 32 and not res.policy.discrete
    assert not torch.equal(res.policy.log_std.detach(), torch.zeros(1))


# ---------------------------------------------------------------------------------------------------------------
# environments and policies
# ---------------------------------------------------------------------------------------------------------------


def test_resolve_env_ids():
    assert resolve_env_id("cartpole") == "CartPole-v1"
    assert resolve_env_id("MountainCar") == "MountainCar-v0"
    assert resolve_env_id("Acrobot-v1") == "Acrobot-v1"
    with pytest.raises(ConfigError, match="unknown env"):
        resolve_env_id("cartpol")


def test_mujoco_task_without_mujoco_is_one_line():
    pytest.importorskip("gymnasium")
    try:
        import mujoco  # noqa: F401
        pytest.skip("MuJoCo is installed")
    except ImportError:
        pass
    with pytest.raises(ConfigError) as err:
        make_env("hopper")
    assert "\n" not in str(err.value) and "mujoco" in str(err.value).lower()


def test_vecenv_termination_autoreset():
    """CartPole under one fixed action falls: the step that ends it reports terminated, the episode's return and
    length, a final observation that differs from the new episode's first one."""
    env = make_env("cartpole", num_envs=2, seed=5)
    obs = env.reset()
    assert obs.shape == (2, 4) and obs.dtype == torch.float32
    for t in range(1, 200):
        step = env.step(torch.zeros(2, dtype=torch.long))
        if step.terminated.any():
            break
    i = int(torch.nonzero(step.terminated)[0])
    assert not step.truncated[i]
    assert t in step.episode_lengths and float(t) in step.episode_returns  # CartPole pays 1 per step
    assert not torch.equal(step.obs[i], step.final_obs[i])
    assert step.final_obs[i].abs().max() > step.obs[i].abs().max()  # fallen pole vs a fresh near-zero start
    env.close()


def test_vecenv_truncation_pendulum():
    env = make_env("pendulum", num_envs=1, seed=0)
    env.reset()
    for t in range(200):
        step = env.step(torch.zeros(1, 1))
        assert bool(step.truncated) == (t == 199) and not step.terminated.any()
    assert not torch.equal(step.obs, step.final_obs)
    env.close()


def test_vecenv_same_seed_same_observations():
    a, b = make_env("acrobot", 2, seed=1), make_env("acrobot", 2, seed=1)
    assert torch.equal(a.reset(), b.reset())
    acts = torch.tensor([0, 2])
    assert torch.equal(a.step(acts).obs, b.step(acts).obs)


def test_policy_shapes_and_deterministic_action():
    torch.manual_seed(0)
    pol = ActorCritic(4, 3, discrete=True, hidden=(8,))
    obs = torch.randn(5, 4)
    assert pol.act(obs).shape == (5,) and pol.value(obs).shape == (5,)
    torch.testing.assert_close(pol.act(obs, deterministic=True), pol.dist(obs).probs.argmax(-1))
    cont = ActorCritic(3, 2, discrete=False, hidden=(8,))
    assert cont.act(torch.randn(5, 3)).shape == (5, 2)
    with pytest.raises(DlcourseError):
        pol.value(torch.randn(5, 3))


def test_policy_export_round_trip(tmp_path):
    torch.manual_seed(0)
    pol = ActorCritic(4, 2, discrete=True, hidden=(8, 8))
    pol.set_obs_normalisation(torch.randn(50, 4) * 3 + 1)
    path = export_policy(tmp_path / "p.safetensors", pol, env_id="CartPole-v1", algo="ppo", config=None,
                         metrics={"return": 1.0})
    back, meta = load_policy(path)
    obs = torch.randn(6, 4)
    torch.testing.assert_close(back.dist(obs).logits, pol.dist(obs).logits)
    assert meta["env_id"] == "CartPole-v1" and meta["spec"]["hidden"] == [8, 8]


def test_random_policy_evaluation_is_seeded():
    a = evaluate(None, "cartpole", n_episodes=4, seed=7)
    b = evaluate(None, "cartpole", n_episodes=4, seed=7)
    assert a == b and all(8 <= r <= 200 for r in a)


# ---------------------------------------------------------------------------------------------------------------
# GAIL: discriminator and reward
# ---------------------------------------------------------------------------------------------------------------


def test_discriminator_loss_is_bce_with_policy_label_one():
    g = torch.Generator().manual_seed(0)
    lp, le = torch.randn(10, generator=g), torch.randn(7, generator=g)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    want = bce(lp, torch.ones(10)) + bce(le, torch.zeros(7))
    torch.testing.assert_close(discriminator_loss(lp, le), want)
    assert discriminator_loss(torch.zeros(3), torch.zeros(3)).item() == pytest.approx(2 * math.log(2))


def test_gail_reward_sign_convention():
    """r = -log D with D = σ(logit) = P[policy]: non-negative, falling in D; the "logit" variant is -logit."""
    logits = torch.linspace(-6, 6, 25)
    r = gail_reward(logits)
    torch.testing.assert_close(r, -torch.log(torch.sigmoid(logits)))
    assert (r >= 0).all() and (r.diff() < 0).all()
    torch.testing.assert_close(gail_reward(logits, "logit"),
                               torch.log1p(-torch.sigmoid(logits)) - torch.log(torch.sigmoid(logits)))
    with pytest.raises(ConfigError):
        gail_reward(logits, "log_d")
    with pytest.raises(ConfigError):
        GAILConfig(reward="positive")


def _fixed_pairs(n=512, seed=0):
    """'Expert' pairs: s ~ N(+1, I), a = 1[s_0 > 1]; 'policy' pairs: s ~ N(-1, I), uniform a."""
    g = torch.Generator().manual_seed(seed)
    obs_e = torch.randn(n, 3, generator=g) + 1
    act_e = (obs_e[:, 0] > 1).long()
    obs_p = torch.randn(n, 3, generator=g) - 1
    act_p = torch.randint(2, (n,), generator=g)
    return obs_p, act_p, obs_e, act_e


def test_discriminator_loss_falls_and_reward_prefers_expert_pairs():
    torch.manual_seed(0)
    obs_p, act_p, obs_e, act_e = _fixed_pairs()
    disc = Discriminator(3, 2, discrete=True, hidden=(32, 32))
    opt = torch.optim.Adam(disc.parameters(), lr=3e-3)
    with torch.no_grad():
        before = discriminator_loss(disc(obs_p, act_p), disc(obs_e, act_e)).item()
    for _ in range(150):
        stats = _discriminator_step(disc, opt, obs_p, act_p, obs_e, act_e)
    with torch.no_grad():
        after = discriminator_loss(disc(obs_p, act_p), disc(obs_e, act_e)).item()
        r_p, r_e = gail_reward(disc(obs_p, act_p)), gail_reward(disc(obs_e, act_e))
    assert after < 0.5 * before and after < 0.3 and stats["disc_acc"] > 0.9
    assert r_e.mean() > r_p.mean() + 1.0  # the documented sign: expert-like pairs earn more


def test_optimal_discriminator_matches_occupancy_ratio():
    """One state, two actions: the policy takes action 0 w.p. 0.8, the expert w.p. 0.2. Full-batch training of eq.
    (16)'s inner max reaches D*(s,a) = ρ_π(s,a) / (ρ_π(s,a) + ρ_E(s,a)): 0.8 for a=0, 0.2 for a=1 (Goodfellow
    et al. 2014, Prop. 1, applied to occupancy measures); the reward -log D* is then log 1.25 and log 5."""
    torch.manual_seed(0)
    obs = torch.zeros(10, 2)
    act_p = torch.tensor([0] * 8 + [1] * 2)
    act_e = torch.tensor([0] * 2 + [1] * 8)
    disc = Discriminator(2, 2, discrete=True, hidden=(8,))
    opt = torch.optim.Adam(disc.parameters(), lr=2e-2)
    for _ in range(400):
        _discriminator_step(disc, opt, obs, act_p, obs, act_e)
    with torch.no_grad():
        d = torch.sigmoid(disc(obs[:2], torch.tensor([0, 1])))
        r = gail_reward(disc(obs[:2], torch.tensor([0, 1])))
    torch.testing.assert_close(d, torch.tensor([0.8, 0.2]), atol=5e-3, rtol=0)
    torch.testing.assert_close(r, torch.tensor([math.log(1.25), math.log(5.0)]), atol=2e-2, rtol=0)


# ---------------------------------------------------------------------------------------------------------------
# demonstrations
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def random_demos():
    torch.manual_seed(0)
    pol = ActorCritic(4, 2, discrete=True, hidden=(8,))
    return collect_demos(pol, "cartpole", n_episodes=3, seed=11, random_return=20.0, command="test")


def test_collect_demos_layout(random_demos):
    d = random_demos
    assert d.n_episodes == 3 and d.obs.shape == (len(d), 4) and d.actions.dtype == torch.int64
    assert d.meta["act_dim"] == 2 and d.meta["discrete"] is True and d.meta["env_id"] == "CartPole-v1"
    lengths = [b - a for a, b in d.episode_bounds()]
    assert sum(lengths) == len(d)
    assert d.episode_returns() == d.meta["episode_returns"] == [float(n) for n in lengths]
    # episode i starts from the env seeded seed + i
    env = make_env("cartpole", 1, seed=12)
    torch.testing.assert_close(d.obs[d.episode_bounds()[1][0]], env.reset()[0])


def test_demos_round_trip(tmp_path, random_demos):
    path = random_demos.save(tmp_path / "demos.safetensors")
    back = Demonstrations.load(path)
    for name in ("obs", "actions", "rewards", "episode_starts"):
        assert torch.equal(getattr(back, name), getattr(random_demos, name))
    assert back.meta["kind"] == "demonstrations" and back.meta["format"] == 1
    assert back.meta["episode_returns"] == random_demos.meta["episode_returns"]
    with pytest.raises(CheckpointError, match="exists"):
        random_demos.save(path)


def test_demos_take_subsample(random_demos):
    d = random_demos
    part = d.take(2, subsample=3)
    (a0, b0), (a1, b1) = d.episode_bounds()[:2]
    assert len(part) == len(range(a0, b0, 3)) + len(range(a1, b1, 3)) and part.n_episodes == 2
    assert torch.equal(part.obs[0], d.obs[a0]) and torch.equal(part.obs[1], d.obs[a0 + 3])
    with pytest.raises(ConfigError, match="has 3"):
        d.take(4)


def _one_line_error(exc_info):
    msg = str(exc_info.value)
    assert msg and "\n" not in msg
    return msg


def test_corrupt_demos_file_is_one_line_error(tmp_path, random_demos):
    path = random_demos.save(tmp_path / "demos.safetensors")
    data = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as err:
        Demonstrations.load(tmp_path / "cut.safetensors")
    assert "corrupt or truncated" in _one_line_error(err)
    (tmp_path / "junk.safetensors").write_bytes(b"\x00\x01not a safetensors file" * 10)
    with pytest.raises(CheckpointError) as err:
        Demonstrations.load(tmp_path / "junk.safetensors")
    _one_line_error(err)
    with pytest.raises(CheckpointError) as err:
        Demonstrations.load(tmp_path / "missing.safetensors")
    _one_line_error(err)


def test_demos_file_of_another_kind_or_shape(tmp_path, random_demos):
    pol = ActorCritic(4, 2, discrete=True, hidden=(8,))
    p = export_policy(tmp_path / "pol.safetensors", pol, env_id="CartPole-v1", algo="ppo", config=None, metrics={})
    with pytest.raises(CheckpointError, match="not 'demonstrations'"):
        Demonstrations.load(p)
    d = random_demos
    with pytest.raises(CheckpointError, match="inconsistent shapes"):
        Demonstrations(d.obs, d.actions[:-1], d.rewards, d.episode_starts)
    with pytest.raises(CheckpointError, match="episode start"):
        Demonstrations(d.obs, d.actions, d.rewards, torch.zeros_like(d.episode_starts))


# ---------------------------------------------------------------------------------------------------------------
# behavioural cloning and GAIL end to end (tiny)
# ---------------------------------------------------------------------------------------------------------------


def test_bc_loss_is_nll():
    torch.manual_seed(0)
    pol = ActorCritic(4, 3, discrete=True, hidden=(8,))
    obs, acts = torch.randn(6, 4), torch.tensor([0, 1, 2, 2, 1, 0])
    logp = torch.log_softmax(pol.actor(obs), -1)[torch.arange(6), acts]
    torch.testing.assert_close(bc_loss(pol, obs, acts), -logp.mean())


def _rule_demos():
    """A synthetic 'expert' on CartPole observations: push right iff the pole leans right (s_2 + s_3 > 0)."""
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(400, 4, generator=g) * 0.1
    acts = (obs[:, 2] + obs[:, 3] > 0).long()
    starts = torch.zeros(400, dtype=torch.bool)
    starts[::100] = True
    meta = {"env_id": "CartPole-v1", "act_dim": 2, "expert_return": 500.0, "random_return": 20.0}
    return Demonstrations(obs, acts, torch.ones(400), starts, meta)


def test_bc_fits_the_expert_rule_and_is_reproducible():
    demos = _rule_demos()
    cfg = BCConfig(n_trajectories=4, subsample=1, seed=0, hidden=(32,))
    cfg.train.steps = 300
    cfg.train.log_every = 1000
    pol = train_bc(demos, cfg).model
    with torch.no_grad():
        acc = (pol.act(demos.obs, deterministic=True) == demos.actions).float().mean().item()
    assert acc > 0.9
    cfg2 = BCConfig(n_trajectories=4, subsample=1, seed=0, hidden=(32,))
    cfg2.train.steps = 300
    cfg2.train.log_every = 1000
    again = train_bc(demos, cfg2).model.state_dict()
    assert all(torch.equal(v, again[k]) for k, v in pol.state_dict().items())


def test_train_gail_reproducible_and_logs(capsys):
    demos = _rule_demos()
    ppo = PPOConfig(num_envs=2, n_steps=16, total_steps=64, epochs=1, minibatch_size=16, hidden=(16,))
    cfg = GAILConfig(n_trajectories=2, disc_hidden=(16,), disc_batch=32, ppo=ppo, eval_every=0, eval_episodes=2,
                     seed=1)
    a = train_gail(demos, cfg, log_every=1)
    b = train_gail(demos, cfg, log_every=0)
    assert a.env_steps == 64 and len(a.history) == 2
    last = a.history[-1]
    assert {"disc_loss", "gail_reward", "eval_return", "normalised_return"} <= set(last)
    assert last["normalised_return"] == pytest.approx((last["eval_return"] - 20.0) / 480.0)
    for m_a, m_b in ((a.policy, b.policy), (a.discriminator, b.discriminator)):
        sa, sb = m_a.state_dict(), m_b.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert "gail cartpole" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------------------------
# shipped checkpoints
# ---------------------------------------------------------------------------------------------------------------


def test_shipped_cartpole_expert_demos_and_gail():
    """The manifest's files load by name (sha256 checked), the demos are the expert's, and the expert and the GAIL
    policy keep the expert's return on fresh episodes."""
    from dlcourse.rl.demos import load_demos

    demos = load_demos("cartpole_demos", "cartpole")
    assert demos.n_episodes == 10 and demos.meta["expert_return"] == 500.0 and demos.meta["act_dim"] == 2
    for name in ("cartpole_expert", "cartpole_gail"):
        policy, meta = load_policy(name)
        assert meta["env_id"] == "CartPole-v1"
        rets = evaluate(policy, "cartpole", n_episodes=3, seed=777)
        norm = normalised_return(sum(rets) / 3, demos.meta["random_return"], demos.meta["expert_return"])
        assert norm >= 0.95, (name, rets)
    _, meta = load_policy("cartpole_gail")
    assert meta["algo"] == "gail" and meta["config"]["n_trajectories"] <= 4
