"""The roofline of `dlcourse.discrete.frontier`: FLOPs per call against PyTorch's own count, the calls each sampler
makes against the samplers' measured call counts, and the fit of time per call."""

import math

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from dlcourse import load
from dlcourse.discrete.frontier import Call, Roofline, SamplerSpec, call_flops, calibrate, sampler_calls
from dlcourse.nn.transformer import KVCache, Transformer


def _counted(net, *args, **kw) -> int:
    """FLOPs PyTorch counts for one forward; the math attention backend, so that attention is matmuls it counts."""
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, torch.no_grad():
        net(*args, **kw)
    return counter.get_total_flops()


def _matmul_params(net) -> int:
    # embeddings, norms and biases cost no matmul FLOPs; call_flops' P is the weight matrices' size
    return sum(m.weight.numel() for m in net.modules() if isinstance(m, torch.nn.Linear))


@pytest.mark.parametrize("batch,tokens", [(1, 1), (1, 16), (4, 64), (2, 256)])
def test_call_flops_equal_pytorchs_count_for_a_whole_sequence(batch, tokens):
    net = Transformer(28, 27, dim=64, n_layers=2, n_heads=4, time_conditioning=False).eval()
    got = call_flops(Call(batch * tokens, tokens, batch), _matmul_params(net), 2, 64)
    assert got == _counted(net, torch.randint(27, (batch, tokens)))


@pytest.mark.parametrize("context", [1, 9, 40])
def test_call_flops_equal_pytorchs_count_for_a_kv_cached_step(context):
    net = Transformer(28, 27, dim=32, n_layers=3, n_heads=4, causal=True, time_conditioning=False).eval()
    cache = KVCache(net.n_layers)
    with torch.no_grad():
        if context > 1:
            net(torch.randint(27, (2, context - 1)), cache=cache)
    got = call_flops(Call(2, context, 2), _matmul_params(net), 3, 32)
    assert got == _counted(net, torch.randint(27, (2, 1)), cache=cache)


@pytest.mark.parametrize("name,spec", [
    ("ar_topics", SamplerSpec("ar", "ar")),
    ("mdlm_topics", SamplerSpec("mdlm", "mdlm", {"steps": 16, "confidence": True})),
    ("bd3_topics_b4", SamplerSpec("bd3", "bd3-b4", {"steps": 2, "confidence": True})),
    ("bd3_topics_b4", SamplerSpec("bd3", "bd3-b4", {"steps": 4, "confidence": True})),
    ("sedd_topics", SamplerSpec("sedd", "sedd", {"steps": 16, "method": "tweedie"})),
])
def test_sampler_calls_are_the_calls_the_sampler_makes(name, spec):
    from dlcourse.discrete.frontier import _family_of

    model, cfg = load(name)
    out = _family_of(spec.kind).generate(model, cfg, 2, cfg.seq_len, generator=torch.Generator().manual_seed(0),
                                         **spec.options)
    calls = sampler_calls(spec, cfg.seq_len, 2)
    assert len(calls) == out.nfe
    assert sum(c.positions for c in calls) >= 2 * cfg.seq_len  # every generated position is computed at least once
    if spec.kind == "ar":
        assert [c.context for c in calls] == list(range(1, cfg.seq_len + 1))


def test_roofline_fit_recovers_the_overhead_of_small_calls():
    # calls as `calibrate` makes them; times from a known a + b FLOPs with +-4% multiplicative noise, the spread of
    # repeated timings here. In absolute least squares the 4% of the largest call (~ 60 a) lands on the intercept.
    params, layers, dim = 6e5, 3, 128
    roof = Roofline(params, layers, dim)
    sizes = ((1, 1), (1, 16), (1, 64), (4, 64), (16, 64), (16, 16), (64, 64))
    calls = [Call(b * n, n, b) for b, n in sizes]
    a, b = 4e-4, 1 / 30e9
    noise = [0.04 * (-1) ** i for i in range(len(calls))]
    noise[-1] = 0.04  # the largest call measured slow
    secs = [(a + b * call_flops(c, params, layers, dim)) * (1 + e) for c, e in zip(calls, noise)]
    roof.fit(calls, secs)
    assert roof.a == pytest.approx(a, rel=0.1)
    assert roof.b == pytest.approx(b, rel=0.1)
    for c, t in zip(calls, secs):  # every call predicted within its noise and a little
        assert roof.cpu_seconds(c) == pytest.approx(t, rel=0.1)


def test_roofline_tokens_per_second_sums_the_calls():
    roof = Roofline(1e5, 2, 64, a=1e-3, b=1e-9)
    spec = SamplerSpec("ar", "ar")
    total = sum(1e-3 + 1e-9 * call_flops(Call(3, i, 3), 1e5, 2, 64) for i in range(1, 9))
    assert roof.tokens_per_second(spec, 8, 3) == pytest.approx(3 * 8 / total)
    # a GPU call: launch overhead per layer, then the larger of compute and memory time
    tiny = roof.gpu_seconds(Call(1, 1, 1), "H100")
    # memory-bound: the bf16 weights read once, and one query's keys and values in each layer
    assert tiny == pytest.approx(2 * 12 * 6e-6 + 2 * (1e5 + 2 * 2 * 64) / 3.35e12, rel=1e-9)
    big = Call(4096 * 256, 256, 4096)
    compute = call_flops(big, 1e5, 2, 64) / (0.5 * 989e12)
    assert roof.gpu_seconds(big, "H100") == pytest.approx(2 * 12 * 6e-6 + compute, rel=1e-6)


def test_calibrate_measures_every_size_once():
    net = Transformer(28, 27, dim=32, n_layers=1, n_heads=2, time_conditioning=False).eval()
    calls, secs = calibrate(net, 16, sizes=((1, 1), (2, 8)), repeats=3)
    assert calls == [Call(1, 1, 1), Call(16, 8, 2)]
    assert all(s > 0 and math.isfinite(s) for s in secs)


def test_a_point_reports_the_calls_of_the_run_it_times():
    # a threshold sampler's call count varies from run to run: the rate and the count must come from the same run
    from dlcourse.discrete.frontier import measure_point

    model, cfg = load("mdlm_topics")
    row = measure_point(SamplerSpec("t", "mdlm", {"threshold": 0.8}), model, cfg, batch=1, n_quality=2,
                        score=lambda tokens: {"n": len(tokens)})
    assert len(row["tokens_per_s_runs"]) == len(row["nfe_runs"]) == 5
    fastest = max(range(5), key=row["tokens_per_s_runs"].__getitem__)
    assert row["tokens_per_s"] == row["tokens_per_s_runs"][fastest]
    assert row["nfe"] == row["nfe_runs"][fastest] and 1 <= row["nfe"] <= cfg.seq_len
    assert row["n"] == 2
