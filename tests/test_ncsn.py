"""NCSN: the noise ladder and NCSNv2's rules, the s(x, σ) = net(x, log σ)/σ wrapper, the ``ncsn`` family's config
resolution, and ``dlcourse train/sample ncsn`` end to end on the CPU.

Tolerances: Monte Carlo checks allow 5 standard errors (known in closed form, noted at each test).
"""

import math

import pytest
import torch
from torch import nn

from dlcourse.cli import main
from dlcourse.errors import ConfigError
from dlcourse import load
from dlcourse.score import (NCSN, geometric_sigmas, max_pairwise_distance,
                            ncsnv2_gamma, ncsnv2_num_levels, ncsnv2_ratio_condition, ncsnv2_step_size,
                            ncsnv2_variance_ratio, resolve_config, sample_ncsn, sigmas_of)
from dlcourse.score.config import PRESETS, NCSNConfig, NoiseConfig, SamplerConfig
from dlcourse.score.family import FAMILY

build_model = FAMILY.build_model

# ----------------------------------------------------------------------------------------------------------------
# the ladder and NCSNv2's techniques (Song & Ermon 2020, Section 3)
# ----------------------------------------------------------------------------------------------------------------


def test_geometric_sigmas():
    s = geometric_sigmas(50.0, 0.01, 232)
    assert s.shape == (232,) and s[0].item() == pytest.approx(50.0) and s[-1].item() == pytest.approx(0.01)
    ratios = s[:-1].double() / s[1:].double()
    assert torch.allclose(ratios, torch.full_like(ratios, (50 / 0.01) ** (1 / 231)), rtol=1e-5)
    for bad in [(1.0, 2.0, 10), (1.0, 0.0, 10), (2.0, 1.0, 1)]:
        with pytest.raises(ConfigError):
            geometric_sigmas(*bad)


def test_max_pairwise_distance_is_exact_and_blocked():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(53, 1, 3, 3, generator=g)
    flat = x.reshape(53, -1).double()
    brute = max(torch.dist(flat[i], flat[j]).item() for i in range(53) for j in range(53))
    assert max_pairwise_distance(x) == pytest.approx(brute, rel=1e-12)
    assert max_pairwise_distance(x, chunk=7) == pytest.approx(brute, rel=1e-12)  # blocks straddle the pairs


def test_ratio_rule():
    """Technique 2: the ratio γ solves Φ(√(2D)(γ−1)+3γ) − Φ(√(2D)(γ−1)−3γ) = 1/2; for CIFAR-10 (D = 3072)
    NCSNv2's ladder (232 levels from 50 to 0.01) has γ = 1.0375, just under the rule's value."""
    for dim in [64, 784, 3072]:
        gamma = ncsnv2_gamma(dim)
        assert ncsnv2_ratio_condition(gamma, dim) == pytest.approx(0.5, abs=1e-9)
        assert ncsnv2_ratio_condition(gamma * 0.99, dim) > 0.5 > ncsnv2_ratio_condition(gamma * 1.01, dim)
    gamma = ncsnv2_gamma(3072)
    assert 1.035 < gamma < 1.045
    assert (50 / 0.01) ** (1 / 231) < gamma
    # L: the fewest levels whose ratio does not exceed γ
    n = ncsnv2_num_levels(50.0, 0.01, gamma)
    assert (50 / 0.01) ** (1 / (n - 1)) <= gamma < (50 / 0.01) ** (1 / (n - 2))
    with pytest.raises(ConfigError, match="D >= 5"):
        ncsnv2_gamma(2)


def test_step_size_rule_reproduces_ncsnv2_cifar10():
    """Technique 4 with NCSNv2's CIFAR-10 ladder and T = 5 gives their ε = 6.2e-6 (code convention)."""
    gamma = (50 / 0.01) ** (1 / 231)
    eps = ncsnv2_step_size(gamma, 0.01, 5)
    assert eps == pytest.approx(6.2e-6, rel=0.02)
    assert abs(ncsnv2_variance_ratio(eps, gamma, 0.01, 5) - 1) < abs(ncsnv2_variance_ratio(2 * eps, gamma, 0.01, 5) - 1)
    assert ncsnv2_step_size(gamma, 0.01, 5, convention="paper") == pytest.approx(2 * eps)


def test_variance_ratio_formula_matches_a_simulated_chain():
    """Eq. (4) of NCSNv2: chains at level σ_i for a point mass at 0 (exact score −x/σ_i²), started from
    N(0, σ_{i−1}²) and run T steps of x + α s + √(2α) z with α = ε σ_i²/σ_L². The empirical variance of
    200 000 chains over σ_i² has standard error r √(2/(n−1)) ≈ 0.003 r; 5 of them allowed."""
    n, gamma, sigma_min, sigma_i, T = 200_000, 1.3, 0.1, 0.7, 6
    g = torch.Generator().manual_seed(0)
    for eps in [1e-4, 1e-3, 5e-3]:
        alpha = eps * sigma_i**2 / sigma_min**2
        x = gamma * sigma_i * torch.randn(n, generator=g, dtype=torch.float64)
        for _ in range(T):
            x = x + alpha * (-x / sigma_i**2) + math.sqrt(2 * alpha) * torch.randn(n, generator=g, dtype=torch.float64)
        ratio = ncsnv2_variance_ratio(eps, gamma, sigma_min, T)
        emp = x.var().item() / sigma_i**2
        assert abs(emp - ratio) < 5 * ratio * math.sqrt(2 / (n - 1)), (eps, emp, ratio)


# ----------------------------------------------------------------------------------------------------------------
# the model
# ----------------------------------------------------------------------------------------------------------------


class _Recorder(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(2.0))
        self.c = None

    def forward(self, x, c):
        self.c = c
        return self.w * x


def test_ncsn_divides_by_sigma_and_conditions_on_log_sigma():
    net = _Recorder()
    model = NCSN(net)
    x = torch.ones(3, 2)
    sigma = torch.tensor([0.5, 1.0, 4.0])
    out = model(x, sigma)
    assert torch.allclose(out, 2 * x / sigma[:, None])
    assert torch.allclose(net.c, sigma.log())
    assert torch.allclose(model(x, 2.0), x)  # a float σ is broadcast to the batch
    unconditional = NCSN(net, conditional=False)
    unconditional(x, sigma)
    assert torch.equal(net.c, torch.zeros(3))  # NCSNv2's s(x)/σ: the net never sees σ


# ----------------------------------------------------------------------------------------------------------------
# the family: presets, resolution of null fields, sampling
# ----------------------------------------------------------------------------------------------------------------


def test_resolve_config_uses_ncsnv2_techniques_on_digits():
    from dlcourse.data.images import load_images

    cfg = PRESETS.get("digits")
    assert cfg.noise.sigma_max is None and cfg.noise.num_levels is None and cfg.sampler.eps is None
    data, _ = load_images("digits", "train")
    res = resolve_config(cfg, data)
    assert res.noise.sigma_max == pytest.approx(max_pairwise_distance(data[:5000]), abs=1e-4)  # technique 1
    gamma = ncsnv2_gamma(64)
    assert res.noise.num_levels == ncsnv2_num_levels(res.noise.sigma_max, 0.01, gamma)  # technique 2
    ratio = (res.noise.sigma_max / 0.01) ** (1 / (res.noise.num_levels - 1))
    assert res.sampler.eps == pytest.approx(ncsnv2_step_size(ratio, 0.01, res.sampler.n_steps_each), rel=1e-3)
    assert cfg.noise.sigma_max is None  # the input config is not modified
    s = sigmas_of(res)
    assert s[0].item() == pytest.approx(res.noise.sigma_max) and len(s) == res.noise.num_levels
    with pytest.raises(ConfigError, match="not resolved"):
        sigmas_of(cfg)


def test_cifar10_preset_is_ncsnv2_scale():
    cfg = PRESETS.get("cifar10")
    res = resolve_config(cfg)  # every field explicit: no data needed
    assert (res.noise.sigma_max, res.noise.sigma_min, res.noise.num_levels) == (50.0, 0.01, 232)
    assert (res.sampler.n_steps_each, res.sampler.eps, res.sampler.convention) == (5, 6.2e-6, "code")
    assert res.train.batch_size == 128 and res.train.steps == 300_000 and res.train.ema_decay == 0.999
    nparams = sum(p.numel() for p in build_model(cfg).parameters())
    assert 30e6 < nparams < 40e6  # DDPM's CIFAR-10 U-Net: 35.7M


def test_every_preset_builds_and_runs():
    for name in PRESETS.names():
        cfg = PRESETS.get(name)
        if name in ("gpu", "cifar10"):
            continue  # 35M parameters: built above
        model = build_model(cfg)
        shape = (2,) if cfg.data == "toy" else (1, 8, 8)  # the image presets also run on 8x8 digits
        if cfg.data != "toy":
            cfg.data = "digits"
            model = build_model(cfg)
        x = torch.rand(3, *shape)
        assert model(x, torch.tensor([1.0, 0.5, 0.1])).shape == x.shape


def test_sample_ncsn_shapes_record_and_overrides():
    cfg = resolve_config(NCSNConfig(data="toy", noise=NoiseConfig(sigma_max=5.0, sigma_min=0.5, num_levels=4),
                                    sampler=SamplerConfig(n_steps_each=3, eps=0.01, convention="paper")))
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    out = sample_ncsn(model, cfg, 16, generator=torch.Generator().manual_seed(0))
    assert out.shape == (16, 2)
    again, frames = sample_ncsn(model, cfg, 16, generator=torch.Generator().manual_seed(0), record_every=1)
    assert torch.equal(out, again) and frames.shape == (1 + 4 * 3 + 1, 16, 2)  # + the denoised output
    # init_low/high: the chains start uniform in that box
    assert frames[0].min() >= 0 and frames[0].max() <= 1
    fewer, frames = sample_ncsn(model, cfg, 16, generator=torch.Generator().manual_seed(0), record_every=1,
                                n_steps_each=2, denoise=False)
    assert frames.shape == (1 + 4 * 2, 16, 2)


# ----------------------------------------------------------------------------------------------------------------
# the command line
# ----------------------------------------------------------------------------------------------------------------


def test_cli_train_export_load_and_sample(tmp_path, capsys):
    export = tmp_path / "toy.safetensors"
    rc = main(["train", "ncsn", "--preset", "toy", "--set", "train.steps=20", "--set", "train.progress=false",
               "--out", str(tmp_path / "run"), "--export", str(export), "--device", "cpu"])
    assert rc == 0 and export.exists()
    assert "recorded" not in capsys.readouterr().out  # only exports into dlcourse/checkpoints/ enter the manifest
    model, cfg = load(export)
    assert cfg.data == "toy" and cfg.noise.num_levels == 20 and not model.training
    model2, _ = load(tmp_path / "run")  # a run folder: its ckpt.pt's EMA weights, the same as the export
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), model2.state_dict().values()))

    png = tmp_path / "s.png"
    args = ["sample", "ncsn", "--checkpoint", str(export), "--n", "16", "--steps-each", "2", "--out", str(png)]
    assert main(args) == 0 and png.stat().st_size > 0
    first = png.read_bytes()
    assert main(args) == 2  # never overwrites without --force
    assert "exists" in capsys.readouterr().err
    assert png.read_bytes() == first
    assert main(args + ["--force", "--seed", "1"]) == 0
    pt = tmp_path / "s.pt"
    assert main(["sample", "ncsn", "--checkpoint", str(export), "--n", "5", "--steps-each", "1", "--out", str(pt)]) == 0
    assert torch.load(pt).shape == (5, 2)


def test_cli_image_training_runs_on_digits(tmp_path):
    run = tmp_path / "run"
    rc = main(["train", "ncsn", "--preset", "cpu", "--data", "digits", "--set", "train.steps=2",
               "--set", "train.batch_size=8", "--set", "train.progress=false", "--set", "model.channels=8",
               "--set", "sampler.n_steps_each=1", "--out", str(run), "--device", "cpu"])
    assert rc == 0
    png = tmp_path / "grid.png"
    assert main(["sample", "ncsn", "--checkpoint", str(run), "--n", "4", "--out", str(png)]) == 0
    from PIL import Image

    assert Image.open(png).size == (4 * (2 * 9 + 1), 4 * (2 * 9 + 1))  # 2x2 grid of 8x8 with 1-pixel gaps, x4


def test_cli_errors_are_one_line(tmp_path, monkeypatch, capsys):
    import functools

    import dlcourse.data.images as images

    # never download in a test: the missing-data message is the one a user without the files sees
    monkeypatch.setattr(images, "load_images", functools.partial(images.load_images, download=False))
    monkeypatch.setenv("DLCOURSE_DATA", str(tmp_path / "empty"))
    for data, preset in [("mnist", "cpu"), ("fashion-mnist", "cpu"), ("cifar10", "cifar10")]:
        assert main(["train", "ncsn", "--preset", preset, "--data", data, "--out", str(tmp_path / data)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and len(err.splitlines()) == 1 and str(tmp_path / "empty") in err
    assert main(["train", "ncsn", "--preset", "toy", "--data", "mnist"]) == 2
    assert "needs model.arch='unet'" in capsys.readouterr().err
    assert main(["train", "ncsn", "--preset", "cpu", "--data", "svhn"]) == 2
    assert "data must be one of 'toy', 'digits'" in capsys.readouterr().err
    assert main(["sample", "ncsn", "--checkpoint", "ncsn_nothing", "--out", str(tmp_path / "x.png")]) == 2
    assert "no shipped checkpoint named" in capsys.readouterr().err
    assert main(["sample", "ncsn", "--checkpoint", "ncsn_toy", "--out", str(tmp_path / "x.jpg")]) == 2
    assert ".png or .pt" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_samplers_run_on_cuda_and_match_the_cpu():
    from dlcourse.data.toy2d import two_gaussians
    from dlcourse.score import annealed_langevin_dynamics, langevin_dynamics

    x0 = 16 * torch.rand(512, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) - 8
    sigmas = geometric_sigmas(20.0, 1.0, 5).double()
    outs = {}
    for dev in ["cpu", "cuda"]:
        mix = two_gaussians(dtype=torch.float64, device=dev)
        # a CPU generator drives both chains with the same numbers
        outs[dev] = annealed_langevin_dynamics(lambda x, s: mix.score(x, sigma=s), x0.to(dev), sigmas.to(dev), 0.1,
                                               10, denoise=True, generator=torch.Generator().manual_seed(1))
        assert outs[dev].device.type == dev
    assert torch.allclose(outs["cpu"], outs["cuda"].cpu(), atol=1e-8)
    out = langevin_dynamics(lambda x: -x, x0.cuda(), 0.1, 5, generator=torch.Generator(device="cuda").manual_seed(0))
    assert out.device.type == "cuda"
