"""The exact test bed (dlcourse.discrete.testbed): its forward-algorithm likelihood against brute force, its sampler
against its likelihood, its entropy rate against the closed form. Monte Carlo tolerances: 5 standard errors."""

import itertools
import math

import pytest
import torch

from dlcourse.data.text import VOCAB_SIZE, encode
from dlcourse.discrete.testbed import TopicLanguage, distinct_ngrams
from dlcourse.errors import ConfigError, ShapeError

F64 = torch.float64


def _tiny(typo=0.1):
    return TopicLanguage([["ab", "c"], ["d", "ef"]], [[0.7, 0.3], [0.4, 0.6]], switch=0.3, typo=typo)


def _brute_force(lang: TopicLanguage, x: list[int]) -> float:
    """p(x) as a sum over every hidden path, from the definition (no forward algorithm)."""
    states = []  # (topic, word, position, intended char)
    for k, vocab in enumerate(lang.vocabularies):
        for w, word in enumerate(vocab):
            states += [(k, w, i, int(encode(word[i])[0]) if i < len(word) else 0) for i in range(len(word) + 1)]
    mean_len = sum(float(p[w]) * (len(v[w]) + 1) for v, p in zip(lang.vocabularies, lang.word_probs)
                   for w in range(len(v))) / lang.K

    def init(s):
        k, w, _, _ = states[s]
        return float(lang.word_probs[k][w]) / lang.K / mean_len

    def step(a, b):
        k, w, i, _ = states[a]
        k2, w2, i2, _ = states[b]
        if i < len(lang.vocabularies[k][w]):
            return 1.0 if (k2, w2, i2) == (k, w, i + 1) else 0.0
        if i2 != 0:
            return 0.0
        topic = 1 - lang.switch if k2 == k else lang.switch / (lang.K - 1)
        return topic * float(lang.word_probs[k2][w2])

    def emit(s, c):
        return (1 - lang.typo) * (states[s][3] == c) + lang.typo / VOCAB_SIZE

    total = 0.0
    for path in itertools.product(range(len(states)), repeat=len(x)):
        p = init(path[0]) * emit(path[0], x[0])
        for a, b, c in zip(path, path[1:], x[1:]):
            p *= step(a, b) * emit(b, c)
        total += p
    return total


def test_forward_algorithm_equals_the_sum_over_hidden_paths():
    lang = _tiny()
    for text in ["ab ", " c ", "ad", "zzz", "e f"]:
        x = encode(text, return_tensor=True)[None]
        assert math.isclose(float(lang.log_prob(x).exp()), _brute_force(lang, x[0].tolist()), rel_tol=1e-10)


def test_probabilities_of_all_strings_sum_to_one():
    lang = _tiny()
    x = torch.tensor(list(itertools.product(range(VOCAB_SIZE), repeat=3)))  # all 19683 strings of length 3
    assert math.isclose(float(lang.log_prob(x).exp().sum()), 1.0, rel_tol=1e-10)


def test_samples_follow_the_likelihood():
    # windows of 2 characters: empirical frequencies of the 30 likeliest strings against p (5 SE each), and the
    # total variation over all strings below the sampling noise of n = 100000 (about sqrt(K / n))
    lang, n = _tiny(typo=0.05), 100_000
    x = lang.sample(n, 2, torch.Generator().manual_seed(0))
    grid = torch.tensor(list(itertools.product(range(VOCAB_SIZE), repeat=2)))
    p = lang.log_prob(grid).exp()
    counts = torch.zeros(VOCAB_SIZE ** 2, dtype=F64).index_add_(0, x[:, 0] * VOCAB_SIZE + x[:, 1],
                                                                  torch.ones(n, dtype=F64))
    top = p.argsort(descending=True)[:30]
    se = (p[top] * (1 - p[top]) / n).sqrt()
    assert ((counts[top] / n - p[top]).abs() < 5 * se + 1e-12).all()
    assert 0.5 * (counts / n - p).abs().sum() < 0.03


def test_entropy_rate_estimate_matches_the_closed_form_without_typos():
    lang = TopicLanguage.random(n_topics=3, n_words=6, switch=0.2, typo=0.0, seed=2)
    est, se = lang.entropy_rate(n_streams=48, length=600)
    assert abs(est - lang.entropy_rate_without_typos()) < 5 * se + 1e-3, (est, se, lang.entropy_rate_without_typos())


def test_window_nll_is_above_the_entropy_rate_and_falls_with_length():
    # a window's first characters are uncertain about the topic: H(X_1..L) / L decreases towards the rate
    lang = TopicLanguage.random(n_topics=3, n_words=6, switch=0.1, typo=0.0, seed=3)
    rate = lang.entropy_rate_without_typos()
    short, se_s = lang.window_nll(8, n=4000)
    long_, se_l = lang.window_nll(64, n=4000)
    assert long_ > rate - 5 * se_l and short > long_ + 5 * math.hypot(se_s, se_l)


def test_a_broken_word_costs_about_log_27_over_eps_bits():
    lang = TopicLanguage([["abc"], ["de"]], [[1.0], [1.0]], switch=0.5, typo=0.01)
    good = encode("abc de abc", return_tensor=True)[None]
    bad = encode("abd de abc", return_tensor=True)[None]
    extra = float(lang.log_prob(good) - lang.log_prob(bad)) / math.log(2)
    assert abs(extra - math.log2((1 - 0.01 + 0.01 / 27) / (0.01 / 27))) < 0.5


def test_diversity_figure_catches_a_collapsed_sampler():
    lang = TopicLanguage.random(seed=0)
    real = lang.sample(64, 64, torch.Generator().manual_seed(1))
    collapsed = real[:1].expand(64, -1)
    assert distinct_ngrams(real) > 10 * distinct_ngrams(collapsed)


def test_exact_denoiser_equals_enumeration_of_completions():
    # p(x_i = c | visible) from the forward-backward pass against summing p over every completion of the masks
    lang = _tiny(typo=0.1)
    z = torch.tensor([[1, 27, 0, 27], [27, 27, 3, 0]])  # id 27 = mask; "a_ _" and "__c "
    got = lang.denoiser(z, 27)
    for row in range(2):
        masks = (z[row] == 27).nonzero().flatten().tolist()
        fills = torch.tensor(list(itertools.product(range(VOCAB_SIZE), repeat=len(masks))))
        full = z[row].expand(len(fills), -1).clone()
        full[:, masks] = fills
        p = lang.log_prob(full).exp()
        for j, pos in enumerate(masks):
            marginal = torch.zeros(VOCAB_SIZE, dtype=F64).index_add_(0, fills[:, j], p)
            assert torch.allclose(got[row, pos], marginal / marginal.sum(), atol=1e-12)
        visible = [i for i in range(4) if i not in masks]
        assert torch.equal(got[row, visible].argmax(-1), z[row, visible])


def test_bad_input_is_one_line():
    with pytest.raises(ConfigError, match="disjoint"):
        TopicLanguage([["ab"], ["ab"]], [[1.0], [1.0]])
    with pytest.raises(ShapeError):
        _tiny().log_prob(torch.tensor([[0, 40]]))
