"""`dlcourse train / sample / eval sde` end to end on a tiny run, and its one-line errors."""

import subprocess
import sys

import pytest
import torch

from dlcourse import load
from dlcourse.sde.family import FAMILY, PRESETS, ScoreModel
from dlcourse.sde import VPSDE


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "dlcourse", *args], capture_output=True, text=True, cwd=cwd,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})


def test_score_model_divides_the_network_by_the_kernel_std():
    class Ones(torch.nn.Module):
        def forward(self, x, t):
            return torch.ones_like(x)

    sde = VPSDE()
    model = ScoreModel(Ones(), sde)
    t = torch.tensor([0.1, 0.9])
    _, std = sde.marginal_coeffs(t)
    assert torch.allclose(model(torch.zeros(2, 2), t), (1 / std)[:, None].expand(2, 2))


def test_every_preset_builds():
    for name in PRESETS.names():
        cfg = PRESETS.get(name)
        model = FAMILY.build_model(cfg)
        assert sum(p.numel() for p in model.parameters()) > 0


def test_train_sample_eval_round_trip(tmp_path):
    out = tmp_path / "run"
    r = run("train", "sde", "--preset", "toy", "--set", "train.steps=20", "--set", "train.progress=false",
            "--set", "train.batch_size=64", "--out", str(out))
    assert r.returncode == 0, r.stderr
    model, cfg = load(out)
    assert cfg.sde == "vp" and isinstance(model, ScoreModel)
    png = tmp_path / "s.png"
    r = run("sample", "sde", "--checkpoint", str(out), "--n", "50", "--steps", "10", "--out", str(png))
    assert r.returncode == 0, r.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "NFE 21" in r.stdout  # 10 predictor + 10 corrector steps + the final denoising
    before = png.read_bytes()
    r = run("sample", "sde", "--checkpoint", str(out), "--n", "5", "--steps", "2", "--out", str(png))
    assert r.returncode == 2 and "refusing to overwrite" in r.stderr and png.read_bytes() == before
    r = run("eval", "sde", "--checkpoint", str(out), "--bpd", "--n", "20")
    assert r.returncode == 0, r.stderr
    assert "nll_nats" in r.stdout and "true_nll_nats" in r.stdout


@pytest.mark.parametrize("args,msg", [
    (["train", "sde", "--preset", "nope"], "unknown preset"),
    (["train", "sde", "--preset", "toy", "--data", "digits"], "needs arch='unet'"),
    (["sample", "sde", "--checkpoint", "missing/ckpt.pt", "--out", "x.png"], "no checkpoint"),
    (["sample", "sde", "--checkpoint", "ncsn_toy", "--out", "x.png"], "not 'sde'"),
])
def test_bad_input_gives_one_line(tmp_path, args, msg):
    r = run(*args, cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_shipped_toy_model_likelihood_and_weights():
    # The shipped VP model of 0.8 N((5,5), I) + 0.2 N((-5,-5), I): its probability-flow NLL on 300 fresh points is
    # within 0.05 nats of the true NLL (measured gap 0.004 on 1000 points; the 300-point Monte Carlo noise cancels
    # because both are averaged over the same points), and PC sampling recovers the 0.8 weight (n = 2000:
    # 5 SE = 0.045).
    from dlcourse.sde.family import evaluate_bpd, sample_sde

    model, cfg = load("sde_toy")
    metrics = evaluate_bpd(model, cfg, n=300, seed=1)
    assert abs(metrics["nll_nats"] - metrics["true_nll_nats"]) < 0.05, metrics
    res = sample_sde(model, cfg, 2000, sampler="pc", steps=200, generator=torch.Generator().manual_seed(0))
    weight = float((res.x.sum(1) > 0).float().mean())
    assert abs(weight - 0.8) < 0.045, weight


@pytest.mark.parametrize("name", ["sde_fashion_ve", "sde_fashion_vp", "sde_fashion_subvp"])
def test_shipped_28x28_models_predict_pure_noise_at_t_1(name):
    """At t = 1 the data is drowned (VP's signal coefficient is 0.007, VE's noise std 50), so x_t is the kernel's
    noise std x z and the optimal network output is -z exactly: no data needed. Measured relative error 0.003 for VP
    at 500 steps; a model whose EMA still holds 37% of its zero-initialised output layer (the plain EMA at 1000
    steps of decay 0.999) scores 0.18, so the bound 0.02 catches a shrunken score."""
    model, _ = load(name)
    z = torch.randn(32, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    t = torch.ones(32)
    _, std = model.sde.marginal_coeffs(t)
    with torch.no_grad():
        out = model.net(std.view(-1, 1, 1, 1) * z, t)
    rel = float(((out + z) ** 2).mean() / (z ** 2).mean())
    assert rel < 0.02, f"{name}: relative error {rel:.3f} of the predicted noise at t = 1"


def test_image_bpd_per_image_is_paired_by_seed(monkeypatch):
    """``per_image=True`` gives the figures whose mean and standard error are ``test_bpd`` and ``test_bpd_se``; and
    the seed fixes every random draw whatever the model: two different models (another network scale, hence other
    adaptive ODE steps) consume the generator identically (same state after each batch), so they see the same
    images, dequantisation noise and probes, which is what makes image_bench's VP / sub-VP difference a paired one.
    Drawing a probe per ODE step, or per NFE, would fail this."""
    import dlcourse.sde.family as family

    states = []
    inner = family.image_bits_per_dim

    def spy(*args, generator=None, **kwargs):
        out = inner(*args, generator=generator, **kwargs)
        states.append(generator.get_state())
        return out

    monkeypatch.setattr(family, "image_bits_per_dim", spy)
    model, cfg = load("sde_digits")
    a = family.evaluate_bpd(model, cfg, n=2, seed=0, per_image=True, batch_size=1)
    with torch.no_grad():
        for p in model.net.parameters():
            p.mul_(0.9)
    b = family.evaluate_bpd(model, cfg, n=2, seed=0, per_image=True, batch_size=1)
    assert a["per_image"].shape == (2,) and a["nfe"] != b["nfe"]
    assert abs(float(a["per_image"].mean()) - a["test_bpd"]) < 1e-6
    assert abs(float(a["per_image"].std() / 2 ** 0.5) - a["test_bpd_se"]) < 1e-6
    assert len(states) == 4 and all(torch.equal(x, y) for x, y in zip(states[:2], states[2:]))
    assert float((a["per_image"] - b["per_image"]).abs().min()) > 0
    assert "per_image" not in family.evaluate_bpd(model, cfg, n=2, seed=0)
