"""The parts of the CUDA path that a CPU can exercise: bf16 autocast in a short training run of every family
(finite losses, float32 weights and checkpoints), torch.compile on one model per family (the same outputs as
eager), and fused attention against the written-out softmax in bf16 (tolerance stated)."""

from __future__ import annotations

import math

import pytest
import torch

from dlcourse.config import apply_overrides
from dlcourse.registry import family
from dlcourse.train import fit

# (family, preset, overrides) small enough for a few CPU steps; every family that trains through `fit`
TINY = {
    "ncsn": ("toy", ["model.hidden=16", "model.num_blocks=1"]),
    "sde": ("digits", ["width=8", "depth=1", "channel_mults=[1]", "attn_resolutions=[]"]),
    "mdlm": ("toy", ["model.dim=16", "model.n_layers=1", "model.n_heads=2"]),
    "sedd": ("toy", ["model.dim=16", "model.n_layers=1", "model.n_heads=2", "model.cond_dim=8"]),
    "ar": ("toy", ["model.dim=16", "model.n_layers=1", "model.n_heads=2"]),
    "bd3": ("toy", ["model.dim=16", "model.n_layers=1", "model.n_heads=2", "block_size=4"]),
    "classifier": ("fashion", ["data=digits", "channels=[4,8]", "features=16"]),
}
COMMON = ["train.batch_size=8", "train.steps=3", "train.log_every=1", "train.ckpt_every=3", "train.progress=false",
          "train.warmup=0", "eval_windows=0"]


def _tiny(name: str):
    fam = family(name)
    preset, overrides = TINY[name]
    common = [o for o in COMMON if o.split("=")[0].split(".")[0] in {f for f in fam.config.__dataclass_fields__}]
    return fam, apply_overrides(fam.presets.get(preset), overrides + common)


@pytest.mark.parametrize("name", list(TINY))
def test_bf16_autocast_trains_every_family_on_cpu(name, tmp_path):
    fam, cfg = _tiny(name)
    cfg.train.bf16 = True
    torch.manual_seed(0)
    sampler = fam.train_data(cfg)
    cfg = fam.prepare(cfg, sampler)
    model = fam.build_model(cfg)
    # autocast computes in bf16 but leaves every tensor in the dtype it was built with: float32 weights, and
    # float64 statistics where a family keeps them (the classifier's reference feature moments)
    built = {k: v.dtype for k, v in model.state_dict().items()}
    assert torch.float32 in built.values()
    result = fit(model, fam.loss(cfg), sampler, cfg.train, tmp_path / "run", kind=fam.kind, config=cfg, device="cpu")
    assert math.isfinite(result.metrics["loss"])
    assert {k: v.dtype for k, v in result.model.state_dict().items()} == built
    state = torch.load(tmp_path / "run" / "ckpt.pt", weights_only=True)
    for part in ("model", "ema"):
        assert {k: v.dtype for k, v in state[part].items()} == built, part


def _example_batch(name, fam, cfg):
    return fam.train_data(cfg)(torch.Generator().manual_seed(1), 4)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sde", "mdlm", "ncsn", "classifier"])
def test_compiled_model_computes_what_eager_does(name):
    # one model per area (U-Net, transformer, MLP, CNN); inductor on the CPU, the same outputs to float tolerance
    fam, cfg = _tiny(name)
    torch.manual_seed(0)
    model = fam.build_model(cfg).eval()
    batch = _example_batch(name, fam, cfg)
    x = batch[0] if isinstance(batch, tuple) else batch
    if name == "sde":
        args = (x * 2 - 1, torch.full((x.shape[0],), 0.3))
    elif name == "ncsn":
        args = (x, torch.full((x.shape[0],), 0.5))
    elif name == "classifier":
        args = (x,)
    else:
        args = (x,)
    compiled = torch.compile(model)
    with torch.no_grad():
        eager_out, compiled_out = model(*args), compiled(*args)
    assert torch.allclose(eager_out, compiled_out, rtol=1e-4, atol=1e-5)


def test_fused_attention_equals_the_written_out_softmax_in_bf16():
    # bf16 has an 8-bit mantissa: relative error ~ 2^-8 per rounding; softmax and two matmuls over 64 keys keep the
    # result within 2e-2 absolute of the float64 reference for unit-scale inputs (checked here at both paths).
    from dlcourse.nn.transformer import attention, attention_reference

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 64, 16, generator=g, dtype=torch.float64) for _ in range(3))
    ref = attention_reference(q, k, v, causal=True)
    for fused in (True, False):
        out = attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), causal=True, fused=fused)
        assert out.dtype == torch.bfloat16
        assert (out.double() - ref).abs().max() < 2e-2, fused
