"""Bits-per-character estimates with exact models: the diffusion bounds' Monte Carlo estimates are unbiased for
-log p(x) when the denoiser / concrete score is exact (so their mean over data is the entropy), and the AR value is
the chain rule, exactly."""

import math

import pytest
import torch

from dlcourse.discrete.evaluate import ar_bpc, diffusion_bpc, generative_perplexity, tokens_per_second
from dlcourse.discrete.graphs import Absorbing, Uniform
from dlcourse.discrete.markov import ExactDenoiser, ExactMarkovAR, ExactScore, MarkovChain, TinyDistribution
from dlcourse.discrete.samplers import ar_sample
from dlcourse.discrete.schedules import GeometricSchedule, LogLinearSchedule


def _data(dist: TinyDistribution, n: int, seed: int) -> torch.Tensor:
    idx = torch.multinomial(dist.probs, n, replacement=True, generator=torch.Generator().manual_seed(seed))
    return dist.seqs[idx]


@pytest.mark.parametrize("kind,graph,schedule", [
    ("mdlm", Absorbing(3), LogLinearSchedule(0.0)),
    ("sedd", Absorbing(3), LogLinearSchedule(0.0)),
    ("sedd", Uniform(3), GeometricSchedule(1e-4, 20.0)),
])
def test_diffusion_bound_of_an_exact_model_is_the_entropy(kind, graph, schedule):
    dist = TinyDistribution.random(num_symbols=3, length=3, seed=5)
    model = ExactDenoiser(dist, graph.mask_id) if kind == "mdlm" else ExactScore(dist, graph)
    data = _data(dist, 256, seed=0)
    gen = torch.Generator().manual_seed(0)
    res = diffusion_bpc(model, kind, data, schedule, graph, batch_size=128, n_times=4, generator=gen, device="cpu")
    target = float(-torch.log(dist.probs[dist.index(data)]).mean()) / (3 * math.log(2))  # -log₂ p(x) / L
    # unbiased for each x (Sahoo et al. 2024 eq. (11) / Lou et al. 2024 Thm 3.6 are equalities for exact models, up
    # to the uniform graph's e^-20 prior mismatch and σ̄(0) = 1e-4): within 4 Monte Carlo standard errors
    assert abs(res["bpc"] - target) < 4 * res["stderr"] + 1e-3, res
    assert res["stderr"] < 0.15
    assert res["prior_bpc"] < 1e-6


def test_diffusion_bound_of_a_wrong_model_is_larger():
    dist = TinyDistribution.random(num_symbols=3, length=3, seed=5)
    graph = Absorbing(3)
    data = _data(dist, 256, seed=0)
    uniform = lambda z, sb: torch.zeros(*z.shape, 3, dtype=torch.float64)  # noqa: E731 -- predicts 1/3 everywhere
    res = diffusion_bpc(uniform, "mdlm", data, LogLinearSchedule(0.0), graph, n_times=4,
                        generator=torch.Generator().manual_seed(0), device="cpu")
    # a uniform denoiser pays log₂ 3 for every token: its bound is exactly log₂ 3 per character
    assert res["bpc"] == pytest.approx(math.log2(3), abs=4 * res["stderr"] + 1e-9)


def test_ar_bpc_is_the_chain_rule_exactly():
    chain = MarkovChain.random(5, 0.5, seed=1)
    x = chain.sample(64, 12, torch.Generator().manual_seed(0))
    model = ExactMarkovAR(chain, bos_id=27)
    expected = float(-chain.log_prob(x).sum()) / x.numel() / math.log(2)
    assert ar_bpc(model, x, 27, batch_size=16, device="cpu") == pytest.approx(expected, abs=1e-10)


def test_generative_perplexity_of_true_samples_is_the_entropy_rate():
    chain = MarkovChain.random(5, 0.5, seed=1)
    model = ExactMarkovAR(chain, bos_id=27)
    out = ar_sample(model, 400, 40, generator=torch.Generator().manual_seed(0), device="cpu", use_cache=False)
    ppl = generative_perplexity(model, out.tokens, 27)
    # samples of the exact model judged by itself: E[-log₂ p] = the window entropy (a 40-character window of
    # 400 samples: the standard error of the mean log-probability is about 0.01 bits)
    assert math.log2(ppl) == pytest.approx(chain.window_entropy(40), abs=0.05)


def test_tokens_per_second_counts_generated_characters():
    rate, out = tokens_per_second(lambda: torch.zeros(4, 16, dtype=torch.long), repeats=2)
    assert out.shape == (4, 16) and rate > 0
