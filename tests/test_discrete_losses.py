"""Exact checks of the discrete-diffusion graphs, schedules and losses on spaces small enough to enumerate.

Everything runs in float64, so "exact" means agreement to ~1e-10; the only approximation is none: integrals over t
use Gauss-Legendre rules that are exact for the polynomial integrands involved.
"""

import itertools
import math

import numpy as np
import pytest
import torch

from dlcourse.discrete.graphs import Absorbing, Uniform
from dlcourse.discrete.losses import (denoising_score_entropy, implicit_score_entropy, mdlm_discrete_term,
                                      mdlm_nelbo_integrand, score_entropy, sedd_log_score, subs_log_probs)
from dlcourse.discrete.markov import MarkovChain, TinyDistribution
from dlcourse.discrete.schedules import GeometricSchedule, LogLinearSchedule

F64 = torch.float64


def _masked_versions(x: torch.Tensor, mask_id: int):
    """All 2^L masked copies of one sequence x (L,): (2^L, L) and the number of masks in each (2^L,)."""
    L = len(x)
    masks = torch.tensor(list(itertools.product([0, 1], repeat=L)), dtype=torch.bool)
    z = torch.where(masks, torch.full_like(x, mask_id), x.expand(len(masks), L))
    return z, masks.sum(-1)


@pytest.mark.parametrize("graph_cls", [Absorbing, Uniform])
def test_transition_is_matrix_exponential(graph_cls):
    g = graph_cls(3)
    Q = g.rate_matrix()
    assert torch.allclose(Q.sum(0), torch.zeros(g.num_states, dtype=F64))  # columns of a rate matrix sum to 0
    sb = torch.tensor([0.7], dtype=F64)
    P = torch.linalg.matrix_exp(sb * Q)  # P[y, x] = p(y | x)
    xs = torch.arange(g.num_states).reshape(1, -1)
    assert torch.allclose(g.transition(xs, sb)[0], P.T, atol=1e-12)  # row x: p(· | x)
    assert torch.allclose(g.transp_transition(xs, sb)[0], P, atol=1e-12)  # row a: p(a | ·)
    s = torch.rand(1, g.num_states, g.num_states, dtype=F64)
    d = torch.tensor([0.3], dtype=F64)
    expected = torch.einsum("yx,bax->bay", torch.linalg.matrix_exp(-d * Q), s)
    assert torch.allclose(g.staggered_score(s, d), expected, atol=1e-12)


@pytest.mark.parametrize("graph_cls", [Absorbing, Uniform])
def test_sample_transition_matches_probabilities(graph_cls):
    g = graph_cls(4)
    x = torch.full((20000, 1), 2, dtype=torch.long)
    sb = torch.full((20000,), 0.5)
    xt = g.sample_transition(x, sb, torch.Generator().manual_seed(0))
    freq = torch.bincount(xt[:, 0], minlength=g.num_states).double() / len(xt)
    p = g.transition(x[:1], sb[:1])[0, 0].double()
    assert torch.allclose(freq, p, atol=0.015)  # 4.5 binomial standard errors at n = 20000


@pytest.mark.parametrize("graph_cls", [Absorbing, Uniform])
def test_reverse_rate_and_tweedie_step_are_exact_for_one_token(graph_cls):
    """With the true ratios, the reverse rate is Kelly's time reversal and the Tweedie step gives p(x_s | x_t)."""
    g = graph_cls(3)
    Q = g.rate_matrix()
    p0 = torch.tensor([0.5, 0.3, 0.2] + [0.0] * (g.num_states - 3), dtype=F64)
    sb_t, sb_s = 1.2, 0.5
    pt = torch.linalg.matrix_exp(sb_t * Q) @ p0
    ps = torch.linalg.matrix_exp(sb_s * Q) @ p0
    xt = torch.arange(g.num_states).reshape(-1, 1)  # every state as a one-token sequence, (S, 1)
    score = (pt[None, :] / pt[:, None]).unsqueeze(1)  # (S, 1, S): s(a)_y = p_t(y)/p_t(a)
    rate = g.reverse_rate(xt, score, torch.ones(g.num_states, dtype=F64))[:, 0]  # (S, S): [a, y] = Q̄(y, a)
    expected = (pt[None, :] / pt[:, None]) * Q  # Q̄(y, a) = p(y)/p(a) Q(a, y), stored at [a, y]
    off = ~torch.eye(g.num_states, dtype=torch.bool)
    assert torch.allclose(rate[off], expected[off], atol=1e-12)
    assert torch.allclose(rate.sum(-1), torch.zeros(g.num_states, dtype=F64), atol=1e-12)
    d = torch.full((g.num_states,), sb_t - sb_s, dtype=F64)
    probs = g.staggered_score(score, d) * g.transp_transition(xt, d)  # (S, 1, S)
    bayes = torch.linalg.matrix_exp((sb_t - sb_s) * Q) * ps[None, :] / pt[:, None]  # [a, y] = p(a | y) p_s(y) / p_t(a)
    assert torch.allclose(probs[:, 0], bayes, atol=1e-12)


def test_schedules():
    t = torch.linspace(0.01, 0.99, 7, dtype=F64, requires_grad=True)
    for sch in (LogLinearSchedule(1e-3), GeometricSchedule(1e-3, 10.0)):
        (grad,) = torch.autograd.grad(sch.sigma_bar(t).sum(), t)
        assert torch.allclose(grad, sch.sigma(t).detach(), rtol=1e-10)  # σ = dσ̄/dt
    assert torch.allclose(LogLinearSchedule(0.0).alpha(t.detach()), 1 - t.detach())


def _continuous_nelbo(dist: TinyDistribution, x: torch.Tensor, n_nodes: int) -> float:
    """∫₀¹ E_{z_t}[integrand] dt for α_t = 1 - t, exactly: enumerate masks, Gauss-Legendre in t."""
    g = Absorbing(dist.V)
    sch = LogLinearSchedule(0.0)
    z, k = _masked_versions(x, g.mask_id)
    nodes, weights = np.polynomial.legendre.leggauss(n_nodes)
    total = 0.0
    for u, w in zip(nodes, weights):
        t = torch.full((len(z),), (u + 1) / 2, dtype=F64)
        sigma, sigma_bar = sch(t)
        log_probs = subs_log_probs(torch.log(dist.denoiser(z, g.mask_id)), z, g.mask_id).double()
        integrand = mdlm_nelbo_integrand(log_probs, x.expand_as(z), z, sigma, sigma_bar, g.mask_id)
        q = t ** k * (1 - t) ** (len(x) - k)  # q(z_t = z | x): each token masked w.p. 1 - α_t = t
        total += w / 2 * float((q * integrand).sum())
    return total


def test_mdlm_continuous_nelbo_equals_exact_nll():
    """With the exact denoiser the continuous-time NELBO is -log p(x) (each unmasking order is a chain rule)."""
    dist = TinyDistribution.random(num_symbols=3, length=4, seed=1)
    for i in [0, 7, 40, 80]:
        x = dist.seqs[i]
        # integrand · q is a polynomial of degree L - 1 in t, so L / 2 + 1 nodes integrate it exactly
        assert _continuous_nelbo(dist, x, n_nodes=4) == pytest.approx(-math.log(dist.probs[i]), abs=1e-10)


def _discrete_nelbo(dist: TinyDistribution, x: torch.Tensor, T: int) -> float:
    g = Absorbing(dist.V)
    z, k = _masked_versions(x, g.mask_id)
    log_probs = subs_log_probs(torch.log(dist.denoiser(z, g.mask_id)), z, g.mask_id).double()
    total = 0.0
    for i in range(1, T + 1):
        t, s = i / T, (i - 1) / T
        alpha_t, alpha_s = torch.full((len(z),), 1 - t, dtype=F64), torch.full((len(z),), 1 - s, dtype=F64)
        q = t ** k * (1 - t) ** (len(x) - k)
        if t == 1.0:  # at t = 1 every token is masked
            q = (k == len(x)).double()
        total += float((q * mdlm_discrete_term(log_probs, x.expand_as(z), z, alpha_s, alpha_t, g.mask_id)).sum())
    return total


def test_mdlm_discrete_bound_decreases_to_the_entropy():
    dist = TinyDistribution.random(num_symbols=3, length=4, seed=1)
    H = dist.entropy()
    bounds = []
    for T in (1, 2, 4, 8, 16, 64):
        per_x = torch.tensor([_discrete_nelbo(dist, dist.seqs[i], T) for i in range(len(dist.seqs))], dtype=F64)
        bounds.append(float((dist.probs * per_x).sum()))
    gaps = [b - H for b in bounds]
    assert all(g > 0 for g in gaps)
    assert all(a > b for a, b in zip(gaps, gaps[1:]))  # strictly tighter with more steps
    assert gaps[-1] < 0.02 * gaps[0]  # T = 64 has closed almost all of the T = 1 gap


def test_score_entropy_zero_at_true_ratios_positive_elsewhere():
    g = torch.Generator().manual_seed(0)
    p = torch.rand(6, generator=g, dtype=F64)
    p /= p.sum()
    ratio = p[None, :] / p[:, None]  # [x, y] = p(y)/p(x)
    weight = torch.rand(6, 6, generator=g, dtype=F64) * (1 - torch.eye(6, dtype=F64))
    assert torch.allclose(score_entropy(ratio, ratio, weight), torch.zeros(6, dtype=F64), atol=1e-14)
    for _ in range(5):
        s = ratio * torch.exp(0.3 * torch.randn(6, 6, generator=g, dtype=F64))
        assert (score_entropy(s, ratio, weight) > 0).all()


def _dense_neighbour_setup(graph, V=3, L=2, sigma_bar=0.8):
    """Sequences x_t of length L under ``graph`` as a dense state space: p_t, the weight matrix Q(x, y) over
    one-position neighbours, and a map from dense scores to the (B, L, S) per-position layout."""
    dist = TinyDistribution.random(num_symbols=V, length=L, seed=3)
    states, pt = dist.noisy_marginal(graph, sigma_bar)  # (M, L), (M,)
    M, S = len(states), graph.num_states
    powers = S ** torch.arange(L - 1, -1, -1)
    W = torch.zeros(M, M, dtype=F64)
    Qtok = graph.rate_matrix()  # [y, x] = rate x -> y
    for a in range(M):
        for l in range(L):
            for v in range(S):
                if v != states[a, l]:
                    b = int(a + (v - states[a, l]) * powers[l])
                    W[a, b] = Qtok[states[a, l], v]  # w_{x y} = Q(x, y): rate of y -> x
    return dist, states, pt, W, powers


@pytest.mark.parametrize("graph_cls", [Absorbing, Uniform])
def test_denoising_score_entropy_equals_implicit_form_in_expectation(graph_cls):
    graph = graph_cls(3)
    sb = 0.8
    dist, states, pt, W, powers = _dense_neighbour_setup(graph, sigma_bar=sb)
    M, S, L = len(states), graph.num_states, dist.L
    keep = pt > 0
    gen = torch.Generator().manual_seed(0)
    idx = states @ powers  # (M,)
    # neighbour index of (state a, position l, value v)
    nb = idx[:, None, None] + (torch.arange(S)[None, None, :] - states[:, :, None]) * powers[None, :, None]

    # x0 ~ p0, x_t ~ p_{t|0}: the joint weight of (x0, x_t) and the per-position DSE of each pair
    trans = graph.transition(dist.seqs, torch.full((len(dist.seqs),), sb, dtype=F64)).double()  # (V^L, L, S)
    joint = dist.probs[:, None] * trans[:, torch.arange(L)[None, :], states].prod(-1)  # (V^L, M)

    def expected_dse(smat):
        log_score = torch.log(smat[idx[:, None, None].expand_as(nb), nb])  # (M, L, S), s(x_t)_y
        total = 0.0
        for i in range(len(dist.seqs)):
            x0 = dist.seqs[i].expand(M, L)
            d = denoising_score_entropy(graph, log_score, states, x0, torch.full((M,), sb, dtype=F64)).sum(-1)
            total += float((joint[i] * torch.where(joint[i] > 0, d, torch.zeros_like(d))).sum())
        return total

    diffs = []
    for _ in range(3):
        smat = torch.exp(torch.randn(M, M, generator=gen, dtype=F64))
        smat[~keep] = 1.0
        smat[:, ~keep] = 1.0
        p_sub, s_sub, w_sub = pt[keep], smat[keep][:, keep], W[keep][:, keep]
        ise = float(implicit_score_entropy(s_sub, p_sub, w_sub))
        ratio = p_sub[None, :] / p_sub[:, None]
        se = float((p_sub * score_entropy(s_sub, ratio, w_sub)).sum())
        diffs.append((expected_dse(smat) - ise, se - ise))
    # E[DSE] - ISE and SE - ISE do not depend on the score: the three losses differ by θ-free constants
    for a, b in zip(diffs, diffs[1:]):
        assert a[0] == pytest.approx(b[0], abs=1e-10)
        assert a[1] == pytest.approx(b[1], abs=1e-10)
    # and SE - ISE is exactly the constant E_x Σ_y w_xy K(p(y)/p(x))
    r = pt[keep][None, :] / pt[keep][:, None]
    const = float((pt[keep] * (W[keep][:, keep] * (torch.xlogy(r, r) - r)).sum(-1)).sum())
    assert diffs[0][1] == pytest.approx(const, abs=1e-10)


def test_sedd_absorbing_with_normalised_scores_is_the_mdlm_integrand():
    """σ Σ DSE with s = softmax/(e^σ̄ - 1) equals MDLM's weighted cross-entropy (the two bounds coincide)."""
    g = Absorbing(5)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randint(5, (4, 7), generator=gen)
    sb = torch.tensor([0.1, 0.5, 1.0, 3.0], dtype=F64)
    sigma = torch.tensor([0.3, 1.0, 2.0, 0.7], dtype=F64)
    xt = g.sample_transition(x0, sb, gen)
    logits = torch.randn(4, 7, 5, generator=gen, dtype=F64)
    log_score = sedd_log_score(g, torch.log_softmax(logits, -1), xt, sb).double()
    sedd = sigma * denoising_score_entropy(g, log_score, xt, x0, sb).sum(-1)
    mdlm = mdlm_nelbo_integrand(subs_log_probs(logits, xt, g.mask_id).double(), x0, xt, sigma, sb, g.mask_id)
    assert torch.allclose(sedd, mdlm, atol=1e-10)


def test_markov_chain_entropy_and_log_prob():
    m = MarkovChain.random(4, 0.5, seed=0)
    L = 3
    seqs = torch.tensor(list(itertools.product(range(4), repeat=L)))
    lp = m.log_prob(seqs)
    assert float(lp.exp().sum()) == pytest.approx(1.0, abs=1e-10)
    H = float(-(lp.exp() * lp).sum()) / math.log(2) / L
    assert H == pytest.approx(m.window_entropy(L), abs=1e-10)
