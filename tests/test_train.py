"""The shared training loop: exact resume, NaN detection, EMA, logging, refusal to overwrite."""

import json
import math

import pytest
import torch
from torch import nn

from dlcourse.config import TrainConfig
from dlcourse.errors import CheckpointError, NonFiniteLossError
from dlcourse.train import EMA, TensorSampler, fit, read_metrics


def _problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 3, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.1 * torch.randn(256, 1, generator=g)
    return TensorSampler(x, y)


def _model():
    torch.manual_seed(123)
    return nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Dropout(0.1), nn.Linear(16, 1))


def _loss(model, batch):
    x, y = batch
    # the noise makes the loss depend on the global RNG, which resume must restore
    pred = model(x + 0.01 * torch.randn_like(x))
    return ((pred - y) ** 2).mean(), {"abs_err": (pred - y).abs().mean()}


def _cfg(**kw):
    base = dict(steps=30, batch_size=16, lr=1e-2, warmup=5, ema_decay=0.9, log_every=4, ckpt_every=7, progress=False)
    base.update(kw)
    return TrainConfig(**base)


def test_resume_is_exact(tmp_path):
    full = fit(_model(), _loss, _problem(), _cfg(), tmp_path / "full")

    part = fit(_model(), _loss, _problem(), _cfg(), tmp_path / "part", stop_after=13)
    assert part.step == 13
    resumed = fit(_model(), _loss, _problem(), _cfg(), tmp_path / "part", resume=True)
    assert resumed.step == 30
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), f"weights differ after resume: {k}"
    for a, b in zip(full.ema_model.state_dict().values(), resumed.ema_model.state_dict().values()):
        assert torch.equal(a, b)
    # The metric log of the resumed run equals the uninterrupted one (timing aside), except the line written at
    # the interruption (13) and the next one (14, a checkpoint), which averages over step 14 alone, not 13-14.
    strip = lambda rows: [{k: v for k, v in r.items() if k != "steps_per_s"} for r in rows if r["step"] not in (13, 14)]
    assert strip(read_metrics(tmp_path / "full")) == strip(read_metrics(tmp_path / "part"))


def test_keyboard_interrupt_saves_and_resumes_exactly(tmp_path):
    full = fit(_model(), _loss, _problem(), _cfg(), tmp_path / "full")
    calls = {"n": 0}

    def interrupting_loss(model, batch):
        calls["n"] += 1
        if calls["n"] == 18:  # Ctrl-C while computing step 18
            raise KeyboardInterrupt
        return _loss(model, batch)

    with pytest.raises(KeyboardInterrupt):
        fit(_model(), interrupting_loss, _problem(), _cfg(), tmp_path / "run")
    state = torch.load(tmp_path / "run" / "ckpt.pt", weights_only=True)
    assert state["step"] == 17
    resumed = fit(_model(), _loss, _problem(), _cfg(), tmp_path / "run", resume=True)
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def test_nan_loss_names_the_step_and_keeps_last_good_checkpoint(tmp_path):
    calls = {"n": 0}

    def exploding_loss(model, batch):
        calls["n"] += 1
        loss, extra = _loss(model, batch)
        return (loss * float("nan") if calls["n"] == 10 else loss), extra

    with pytest.raises(NonFiniteLossError, match=r"nan at step 10\b"):
        fit(_model(), exploding_loss, _problem(), _cfg(ckpt_every=7, log_every=4), tmp_path / "run")
    state = torch.load(tmp_path / "run" / "ckpt.pt", weights_only=True)
    assert state["step"] == 7
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_inf_loss_detected(tmp_path):
    def inf_loss(model, batch):
        loss, _ = _loss(model, batch)
        return loss + float("inf")

    with pytest.raises(NonFiniteLossError, match="inf at step 1"):
        fit(_model(), inf_loss, _problem(), _cfg(), None)


def test_refuses_to_overwrite_a_run_and_resume_needs_a_checkpoint(tmp_path):
    fit(_model(), _loss, _problem(), _cfg(steps=3), tmp_path / "run")
    before = (tmp_path / "run" / "ckpt.pt").read_bytes()
    with pytest.raises(CheckpointError, match="--resume"):
        fit(_model(), _loss, _problem(), _cfg(steps=3), tmp_path / "run")
    assert (tmp_path / "run" / "ckpt.pt").read_bytes() == before
    with pytest.raises(CheckpointError, match="no checkpoint"):
        fit(_model(), _loss, _problem(), _cfg(steps=3), tmp_path / "other", resume=True)


def test_resume_with_another_model_is_one_clear_error(tmp_path):
    fit(_model(), _loss, _problem(), _cfg(steps=3), tmp_path / "run", kind="regressor")
    with pytest.raises(CheckpointError, match="holds a 'regressor' model, not 'ncsn'"):
        fit(_model(), _loss, _problem(), _cfg(steps=5), tmp_path / "run", kind="ncsn", resume=True)
    wider = nn.Sequential(nn.Linear(3, 32), nn.Tanh(), nn.Dropout(0.1), nn.Linear(32, 1))
    with pytest.raises(CheckpointError, match="does not fit this model"):
        fit(wider, _loss, _problem(), _cfg(steps=5), tmp_path / "run", kind="regressor", resume=True)


def test_training_reduces_loss_and_logs(tmp_path):
    res = fit(_model(), _loss, _problem(), _cfg(steps=200, log_every=50, ckpt_every=100), tmp_path / "run")
    rows = read_metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == [50, 100, 150, 200]
    assert rows[-1]["loss"] < 0.2 * rows[0]["loss"]
    assert {"loss", "grad_norm", "lr", "abs_err", "steps_per_s"} <= set(rows[0])
    assert json.loads((tmp_path / "run" / "config.json").read_text())["config"]["steps"] == 200
    assert res.metrics["step"] == 200


def test_ema_matches_its_definition():
    model = nn.Linear(2, 1)
    ema = EMA(model, decay=0.9)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    expected = 0.9 * start["weight"] + 0.1 * model.weight
    assert torch.allclose(ema.state["weight"], expected)



def test_ema_warmup_is_the_weighted_average_it_claims():
    """With warm-up, update n uses d_n = min(d, (1+n)/(10+n)); after N updates of weights θ_1..θ_N the average is
    Π d_n · θ_0 + Σ_n (1 - d_n) Π_{m>n} d_m · θ_n (written out here in float64), and the share of the initial
    weights is Π d_n: 0.999 ** 3000 = 5% without warm-up, below 1e-6 with it."""
    model = nn.Linear(3, 1).double()
    ema = EMA(model, decay=0.999, warmup=True)
    theta = [model.weight.detach().clone()]
    g = torch.Generator().manual_seed(0)
    for n in range(300):
        with torch.no_grad():
            model.weight.copy_(torch.randn(1, 3, generator=g, dtype=torch.float64))
        theta.append(model.weight.detach().clone())
        ema.update(model, n)
    decays = [min(0.999, (1 + n) / (10 + n)) for n in range(300)]
    expected = math.prod(decays) * theta[0]
    for n in range(300):
        expected = expected + (1 - decays[n]) * math.prod(decays[n + 1:]) * theta[n + 1]
    assert torch.allclose(ema.state["weight"], expected, atol=1e-12)
    share = lambda warm: math.prod(EMA(model, 0.999, warm).decay_at(n) for n in range(3000))
    assert share(False) == pytest.approx(0.999 ** 3000) and 0.04 < share(False) < 0.06
    assert share(True) < 1e-6


def test_resume_is_exact_with_ema_warmup(tmp_path):
    full = fit(_model(), _loss, _problem(), _cfg(ema_warmup=True), tmp_path / "full")
    fit(_model(), _loss, _problem(), _cfg(ema_warmup=True), tmp_path / "part", stop_after=13)
    resumed = fit(_model(), _loss, _problem(), _cfg(ema_warmup=True), tmp_path / "part", resume=True)
    for a, b in zip(full.ema_model.state_dict().values(), resumed.ema_model.state_dict().values()):
        assert torch.equal(a, b)
    plain = fit(_model(), _loss, _problem(), _cfg(), tmp_path / "plain")
    assert not torch.equal(plain.ema_model[0].weight, full.ema_model[0].weight)  # the warm-up changed something

def test_warmup_and_clipping(tmp_path):
    seen = []

    def loss(model, batch):
        x, y = batch
        return 1e6 * ((model(x) - y) ** 2).mean()

    res = fit(_model(), loss, _problem(), _cfg(steps=4, warmup=4, grad_clip=0.5, log_every=1), tmp_path / "r")
    rows = read_metrics(tmp_path / "r")
    assert [r["lr"] for r in rows] == pytest.approx([2.5e-3, 5e-3, 7.5e-3, 1e-2])
    assert all(r["grad_norm"] > 0.5 for r in rows)  # reported norm is before clipping
    assert res.step == 4 and not math.isnan(rows[-1]["loss"])
