"""Samplers of the text models, checked against exact answers on spaces small enough to enumerate: MDLM's ancestral
sampler matches the exact T-step distribution (computed here by a second implementation, a dense Markov chain over
all partially masked sequences), its cache changes nothing, SEDD's Tweedie sampler is exact for one token, infilling
keeps every given character and samples the right conditional, and the AR decoder gives the same samples with and
without its KV cache."""

import itertools
import math

import pytest
import torch

from dlcourse.data.text import MASK_ID
from dlcourse.discrete.graphs import Absorbing, Uniform
from dlcourse.discrete.markov import ExactDenoiser, ExactScore, TinyDistribution
from dlcourse.discrete.samplers import (Condition, apply_condition, ar_sample, confidence_sample, confidence_step,
                                        make_condition, mdlm_sample, sample_categorical, sedd_sample)
from dlcourse.discrete.schedules import GeometricSchedule, LogLinearSchedule
from dlcourse.errors import DlcourseError
from dlcourse.nn.transformer import Transformer

F64 = torch.float64


def _freq(dist: TinyDistribution, x: torch.Tensor) -> torch.Tensor:
    return torch.bincount(dist.index(x), minlength=len(dist.probs)).double() / len(x)


def _tv(p: torch.Tensor, q: torch.Tensor) -> float:
    return 0.5 * float((p - q).abs().sum())


def _tv_tolerance(p: torch.Tensor, n: int) -> float:
    """4x an upper bound on E TV(empirical of n draws, p) = ½ Σ E|p̂ - p| ≤ ½ Σ sqrt(p (1 - p) / n)."""
    return 4 * 0.5 * float(torch.sqrt(p * (1 - p) / n).sum())


def _mdlm_exact_distribution(dist: TinyDistribution, steps: int, schedule) -> torch.Tensor:
    """The exact law of MDLM's T-step ancestral sampler with the exact denoiser: propagate a distribution over all
    (V+1)^L partially masked sequences through the T posterior steps (Sahoo et al. 2024, eq. (7))."""
    V, L = dist.V, dist.L
    states = torch.tensor(list(itertools.product(range(V + 1), repeat=L)))  # (M, L), V = mask
    M = len(states)
    x0 = dist.denoiser(states, V)  # (M, L, V)
    law = torch.zeros(M, dtype=F64)
    law[-1] = 1.0  # all masks
    for k in range(steps, 0, -1):
        a_t = float(schedule.alpha(torch.tensor(k / steps, dtype=F64)))
        a_s = float(schedule.alpha(torch.tensor((k - 1) / steps, dtype=F64)))
        per = torch.cat([x0 * (a_s - a_t) / (1 - a_t), torch.full((M, L, 1), (1 - a_s) / (1 - a_t), dtype=F64)], -1)
        keep = torch.nn.functional.one_hot(states, V + 1).double()  # an unmasked token stays
        per = torch.where((states == V).unsqueeze(-1), per, keep)  # (M, L, V + 1)
        trans = per[:, torch.arange(L)[None, :], states].prod(-1)  # (M, M): [from, to]
        law = law @ trans
    clean = (states < V).all(-1)
    return law[clean]  # ordered like dist.seqs (both are itertools.product)


def test_mdlm_sampler_matches_its_exact_law_and_approaches_p():
    dist = TinyDistribution.random(num_symbols=3, length=4, seed=1)
    graph, schedule = Absorbing(3), LogLinearSchedule(0.0)
    laws = {T: _mdlm_exact_distribution(dist, T, schedule) for T in (1, 2, 8, 64)}
    assert all(float(law.sum()) == pytest.approx(1.0, abs=1e-12) for law in laws.values())
    gaps = [_tv(laws[T], dist.probs) for T in (1, 2, 8, 64)]
    assert all(a > b for a, b in zip(gaps, gaps[1:])) and gaps[-1] < 0.1 * gaps[0]
    n = 20000
    for T in (2, 8):
        out = mdlm_sample(ExactDenoiser(dist, graph.mask_id), schedule, graph, n, 4, T,
                          generator=torch.Generator().manual_seed(T), device="cpu")
        assert out.tokens.shape == (n, 4) and (out.tokens < 3).all()
        assert _tv(_freq(dist, out.tokens), laws[T]) < _tv_tolerance(laws[T], n)


@pytest.mark.parametrize("rule", [{"steps": 4}, {"threshold": 1.0}])
def test_confidence_decoding_one_token_per_step_is_exact(rule):
    # With the exact denoiser, unmasking one position per step (chosen by a function of x_θ alone) samples p exactly:
    # TV of n = 20000 draws within 4x its expected size under p.
    dist = TinyDistribution.random(num_symbols=3, length=4, seed=5)
    model, graph = ExactDenoiser(dist, 3), Absorbing(3)
    out = confidence_sample(model, LogLinearSchedule(), graph, 20000, 4, generator=torch.Generator().manual_seed(0),
                            device="cpu", **rule)
    assert out.nfe == 4 and (out.tokens != 3).all()
    assert _tv(_freq(dist, out.tokens), dist.probs) < _tv_tolerance(dist.probs, 20000)


def test_confidence_decoding_in_parallel_breaks_dependent_tokens():
    # Two positions per step, each drawn from its own marginal: the product of marginals is not p (the curse of
    # parallel decoding), and the error is far outside the sampling noise; all four at once is the product of the
    # four marginals, further still.
    dist = TinyDistribution.random(num_symbols=3, length=4, seed=5, concentration=0.3)
    model, graph = ExactDenoiser(dist, 3), Absorbing(3)
    tol = _tv_tolerance(dist.probs, 20000)
    tvs = [_tv(_freq(dist, confidence_sample(model, LogLinearSchedule(), graph, 20000, 4, steps=steps, device="cpu",
                                             generator=torch.Generator().manual_seed(1)).tokens), dist.probs)
           for steps in (4, 2, 1)]
    assert tvs[0] < tol < 3 * tol < tvs[1] < tvs[2], (tvs, tol)


def test_confidence_step_picks_the_most_confident_masked_positions():
    x = torch.tensor([[3, 1, 3, 3]])  # id 3 = mask
    logits = torch.log(torch.tensor([[[0.5, 0.3, 0.2], [1.0, 0.0, 0.0], [0.9, 0.05, 0.05], [0.4, 0.4, 0.2]]]))
    one = confidence_step(x, logits, 3, n_unmask=torch.tensor([1]), greedy=True)
    assert one.tolist() == [[3, 1, 0, 3]]  # position 2 (0.9) beats 0 (0.5) and 3 (0.4); position 1 is not masked
    thr = confidence_step(x, logits, 3, threshold=0.45, greedy=True)
    assert thr.tolist() == [[0, 1, 0, 3]]
    none = confidence_step(x, logits, 3, threshold=0.99, greedy=True)
    assert none.tolist() == [[3, 1, 0, 3]]  # nothing above the threshold: the most confident anyway


def test_mdlm_cache_reuses_outputs_without_changing_samples():
    dist = TinyDistribution.random(num_symbols=3, length=4, seed=2)
    graph, schedule = Absorbing(3), LogLinearSchedule(1e-3)
    model = ExactDenoiser(dist, graph.mask_id)
    runs = [mdlm_sample(model, schedule, graph, 8, 4, 200, generator=torch.Generator().manual_seed(0),
                        device="cpu", cache=cache, record=True) for cache in (False, True)]
    assert torch.equal(runs[0].tokens, runs[1].tokens)
    assert runs[0].nfe == 200 and runs[1].nfe <= 4 * 8 + 1  # at most one evaluation per change of the state
    assert len(runs[1].trajectory) == 201 and (runs[1].trajectory[0] == graph.mask_id).all()
    masks = [int((x == graph.mask_id).sum()) for x in runs[1].trajectory]
    assert all(a >= b for a, b in zip(masks, masks[1:])) and masks[-1] == 0  # tokens are only ever unmasked


@pytest.mark.parametrize("graph_cls,schedule", [(Absorbing, LogLinearSchedule(1e-4)),
                                                (Uniform, GeometricSchedule(1e-4, 20.0))])
def test_sedd_tweedie_sampler_is_exact_for_one_token(graph_cls, schedule):
    """With one position the Tweedie step is the exact reverse transition (SEDD Theorem 4.2), at any step count."""
    dist = TinyDistribution(torch.tensor([0.6, 0.25, 0.1, 0.05], dtype=F64), 4, 1)
    graph, n = graph_cls(4), 20000
    out = sedd_sample(ExactScore(dist, graph), schedule, graph, n, 1, 3, "tweedie",
                      generator=torch.Generator().manual_seed(0), device="cpu")
    # the start is all-mask / uniform, not p_1: off by 1e-4 (absorbing) and e^-20 (uniform) in total variation
    assert _tv(_freq(dist, out.tokens), dist.probs) < _tv_tolerance(dist.probs, n)


@pytest.mark.parametrize("method", ["tweedie", "euler"])
@pytest.mark.parametrize("graph_cls,schedule", [(Absorbing, LogLinearSchedule(1e-3)),
                                                (Uniform, GeometricSchedule(1e-4, 20.0))])
def test_sedd_samplers_with_exact_scores_approach_p(method, graph_cls, schedule):
    dist = TinyDistribution.random(num_symbols=3, length=3, seed=4)
    graph, n = graph_cls(3), 4000
    out = sedd_sample(ExactScore(dist, graph), schedule, graph, n, 3, 64, method,
                      generator=torch.Generator().manual_seed(1), device="cpu", record=True)
    assert out.tokens.shape == (n, 3) and (out.tokens < 3).all() and out.nfe == 64 and len(out.trajectory) == 65
    marginals = torch.stack([torch.nn.functional.one_hot(dist.seqs[:, l], 3).double().T @ dist.probs
                             for l in range(3)])  # (L, V)
    product = marginals[0][dist.seqs[:, 0]] * marginals[1][dist.seqs[:, 1]] * marginals[2][dist.seqs[:, 2]]
    # 64 steps of the factorised reverse process land within sampling noise (+ a small discretisation error) of p,
    # far closer than the product of marginals that a one-step sampler would give
    tv = _tv(_freq(dist, out.tokens), dist.probs)
    assert tv < _tv_tolerance(dist.probs, n) + 0.03
    assert tv < 0.5 * _tv(product, dist.probs)


def test_infilling_keeps_given_characters_and_samples_the_conditional():
    dist = TinyDistribution.random(num_symbols=3, length=4, seed=1)
    graph, n = Absorbing(3), 6000
    cond = Condition(given=torch.tensor([[2, graph.mask_id, graph.mask_id, 0]]).expand(n, 4),
                     known=torch.tensor([[True, False, False, True]]).expand(n, 4))
    for name, sample in [
        ("mdlm", lambda: mdlm_sample(ExactDenoiser(dist, graph.mask_id), LogLinearSchedule(0.0), graph, n, 4, 32,
                                     cond, torch.Generator().manual_seed(0), device="cpu")),
        ("sedd", lambda: sedd_sample(ExactScore(dist, graph), LogLinearSchedule(1e-3), graph, n, 4, 32, "tweedie",
                                     cond, torch.Generator().manual_seed(0), device="cpu")),
    ]:
        x = sample().tokens
        assert (x[:, 0] == 2).all() and (x[:, 3] == 0).all() and (x < 3).all(), name
        fits = (dist.seqs[:, 0] == 2) & (dist.seqs[:, 3] == 0)
        target = torch.where(fits, dist.probs, torch.zeros_like(dist.probs))
        target /= target.sum()
        assert _tv(_freq(dist, x), target) < _tv_tolerance(target[fits], n) + (0.03 if name == "sedd" else 0), name


def _tiny_net(causal: bool, time_conditioning: bool) -> Transformer:
    torch.manual_seed(0)
    net = Transformer(28, 27, dim=32, n_layers=1, n_heads=2, causal=causal, time_conditioning=time_conditioning,
                      cond_dim=16).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return net


def test_prefix_suffix_and_positions_with_a_network():
    net = _tiny_net(False, True)
    graph = Absorbing(27)
    cond = make_condition(20, prefix="the ", suffix=" end", positions={9: "q", -6: 1}, batch=3)
    for out in (mdlm_sample(net, LogLinearSchedule(), graph, 3, 20, 16, cond, torch.Generator().manual_seed(0)),
                sedd_sample(net, LogLinearSchedule(), graph, 3, 20, 16, "euler", cond,
                            torch.Generator().manual_seed(0)),
                sedd_sample(net, GeometricSchedule(), Uniform(27), 3, 20, 16, "tweedie", cond,
                            torch.Generator().manual_seed(0))):
        x = out.tokens
        assert x.shape == (3, 20) and x.dtype == torch.long and x.device.type == "cpu"
        assert torch.equal(apply_condition(x, cond), x)  # every given character is in place
        assert (x < 27).all()  # and nothing is left masked


def test_make_condition_rejects_what_does_not_fit():
    with pytest.raises(DlcourseError, match="does not fit"):
        make_condition(3, prefix="abcd")
    with pytest.raises(DlcourseError, match="outside"):
        make_condition(3, positions={5: "a"})
    with pytest.raises(DlcourseError, match="encode"):
        make_condition(5, prefix="A!")


@pytest.mark.parametrize("prefix", [None, "ab"])
def test_ar_sampler_with_and_without_kv_cache_draw_the_same_text(prefix):
    net = _tiny_net(True, False)
    outs = [ar_sample(net, 3, 12, prefix=prefix, generator=torch.Generator().manual_seed(0), use_cache=c, record=True)
            for c in (True, False)]
    assert torch.equal(outs[0].tokens, outs[1].tokens)
    assert outs[0].tokens.shape == (3, 12) and (outs[0].tokens < 27).all()
    if prefix:
        assert (outs[0].tokens[:, :2] == torch.tensor([1, 2])).all()
    assert outs[0].nfe == 12 - (len(prefix) if prefix else 0)
    assert len(outs[0].trajectory) == outs[0].nfe and (outs[0].trajectory[-1] != MASK_ID).all()


def test_sample_categorical_frequencies():
    probs = torch.tensor([[0.0, 2.0, 1.0, 1.0]]).expand(40000, 4)  # unnormalised
    draws = sample_categorical(probs, torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=4).double() / len(draws)
    p = torch.tensor([0.0, 0.5, 0.25, 0.25], dtype=F64)
    assert freq[0] == 0 and _tv(freq, p) < _tv_tolerance(p, 40000)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_samplers_follow_the_model_device():
    net = _tiny_net(False, True).cuda()
    g = torch.Generator(device="cuda").manual_seed(0)
    cond = make_condition(16, prefix="ab", batch=2, device="cuda")
    assert mdlm_sample(net, LogLinearSchedule(), Absorbing(27), 2, 16, 8, cond, g).tokens.device.type == "cuda"
    assert sedd_sample(net, LogLinearSchedule(), Absorbing(27), 2, 16, 8, "tweedie", cond, g).tokens.is_cuda
    ar = _tiny_net(True, False).cuda()
    assert ar_sample(ar, 2, 16, prefix="ab", generator=g).tokens.is_cuda


def test_euler_equals_tweedie_on_the_absorbing_graph_with_log_linear_noise():
    """e^{σ̄_t - σ̄_s} - 1 = σ(t)(t - s) exactly for the log-linear schedule, so on the absorbing graph the two
    SEDD steps are one distribution, while on the uniform graph they differ."""
    dist = TinyDistribution.random(num_symbols=3, length=3, seed=4)
    for graph, schedule, same in [(Absorbing(3), LogLinearSchedule(1e-3), True),
                                  (Uniform(3), GeometricSchedule(1e-4, 20.0), False)]:
        outs = [sedd_sample(ExactScore(dist, graph), schedule, graph, 200, 3, 8, method,
                            generator=torch.Generator().manual_seed(0), device="cpu").tokens
                for method in ("euler", "tweedie")]
        assert torch.equal(outs[0], outs[1]) == same
