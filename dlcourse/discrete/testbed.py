"""An exact test bed for text samplers: a synthetic language over the course's 27 characters whose log-likelihood
of any string is computable, so a sampler's quality is the exact NLL of its samples under the true source.

The source (`TopicLanguage`) is a hidden Markov model with a persistent hidden *topic*:

- K topics, each with its own vocabulary of words over a-z (the vocabularies are disjoint);
- after each word (and its trailing space) the topic stays with probability 1 - ρ, else moves to one of the other
  K - 1 uniformly; the next word is drawn from the topic's word distribution;
- every character is then passed through a typo channel: kept with probability 1 - ε, replaced by a uniform
  character of the 27 with probability ε, so that every string has a finite log-likelihood (a sampler that
  breaks a word pays about log₂(27/ε) bits for it, not infinity).

So a character depends on the rest of its word (spelling) and, through the topic, on words long before it:
dependencies much longer than one character. The hidden state is (topic, word, position in the word), and
`log_prob` is the forward algorithm (Rabiner 1989, eq. (19)-(21)) with a window starting anywhere in the stationary
stream (the initial state distribution is the stationary one, as for windows cut from a long text).

Entropy rate. With ε = 0 the words are recoverable from the characters and the topic from the words, so the rate
is exact: (H(switch) + Σ_k π_k H(W | k)) / E[len(W) + 1] bits per character (`entropy_rate_without_typos`). With
typos, `entropy_rate` estimates the limit on long stationary streams (with its standard error); a test holds the
estimator to the closed form at ε = 0. A perfect sampler of windows of L characters has a
mean NLL of H(X_1..L) / L (`window_nll`), slightly above the rate because a window's first characters are
uncertain about the hidden topic; that is the number a sampler's NLL is compared with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..data.text import ALPHABET, VOCAB_SIZE, encode
from ..errors import ConfigError, ShapeError

__all__ = ["TopicLanguage", "ExactTopicDenoiser", "distinct_ngrams"]

SPACE = 0  # the id of " " in the course's alphabet


@dataclass
class _Tables:
    """The HMM, stored by its structure: inside a word the next state is the next position (s -> s + 1); after a
    word's space state it is the first state of a word drawn from ``word_trans``."""

    emit: torch.Tensor        #: (S,) the intended character of each hidden state
    space: torch.Tensor       #: (M,) the space state of each of the M words (all topics)
    first: torch.Tensor       #: (M,) the first state of each word
    word_of: torch.Tensor     #: (S,) the word a state belongs to
    word_trans: torch.Tensor  #: (M, M) float64 P(next word | current word), rows sum to 1
    init: torch.Tensor        #: (S,) stationary distribution
    emission: torch.Tensor    #: (S, 27) float64 P(character | state) after the typo channel


class TopicLanguage:
    """The source described in the module docstring. ``vocabularies[k]`` are topic k's words, ``word_probs[k]``
    their probabilities; ``switch`` is ρ, ``typo`` is ε."""

    def __init__(self, vocabularies: list[list[str]], word_probs: list[list[float]], switch: float = 0.1,
                 typo: float = 0.01) -> None:
        if len(vocabularies) < 2 or len(vocabularies) != len(word_probs):
            raise ConfigError("a topic language needs at least two topics, one word distribution per topic")
        words = [w for vocab in vocabularies for w in vocab]
        if len(set(words)) != len(words) or any(not w or set(w) - set(ALPHABET[1:]) for w in words):
            raise ConfigError("topic vocabularies must be disjoint, non-empty words over a-z")
        if not 0.0 <= switch <= 1.0 or not 0.0 <= typo < 1.0:
            raise ConfigError(f"need 0 <= switch <= 1 and 0 <= typo < 1, got {switch} and {typo}")
        self.vocabularies = [list(v) for v in vocabularies]
        self.word_probs = [torch.tensor(p, dtype=torch.float64) / sum(p) for p in word_probs]
        self.switch, self.typo = float(switch), float(typo)
        self.K = len(vocabularies)
        self._tables = self._build()

    @classmethod
    def random(cls, n_topics: int = 4, n_words: int = 16, min_len: int = 2, max_len: int = 6, switch: float = 0.1,
               typo: float = 0.01, concentration: float = 1.0, seed: int = 0) -> "TopicLanguage":
        """Random disjoint vocabularies (word lengths uniform in [min_len, max_len]) with Dirichlet word weights."""
        g = torch.Generator().manual_seed(seed)
        seen: set[str] = set()
        vocabularies, probs = [], []
        for _ in range(n_topics):
            vocab: list[str] = []
            while len(vocab) < n_words:
                n = int(torch.randint(min_len, max_len + 1, (1,), generator=g))
                w = "".join(ALPHABET[1 + int(i)] for i in torch.randint(26, (n,), generator=g))
                if w not in seen:
                    seen.add(w)
                    vocab.append(w)
            vocabularies.append(vocab)
            gamma = torch._standard_gamma(torch.full((n_words,), float(concentration), dtype=torch.float64),
                                          generator=g)
            probs.append((gamma / gamma.sum()).tolist())
        return cls(vocabularies, probs, switch, typo)

    # ---- the hidden Markov model ----
    def _build(self) -> _Tables:
        words = [(k, w) for k, vocab in enumerate(self.vocabularies) for w in range(len(vocab))]  # M words
        emit, word_of, first, space = [], [], [], []
        for m, (k, w) in enumerate(words):
            first.append(len(emit))
            emit += [int(c) for c in encode(self.vocabularies[k][w])] + [SPACE]
            word_of += [m] * (len(self.vocabularies[k][w]) + 1)
            space.append(len(emit) - 1)
        stay, move = 1.0 - self.switch, self.switch / (self.K - 1)
        topic_of = torch.tensor([k for k, _ in words])
        p_word = torch.cat(self.word_probs)  # (M,) p(word | its topic)
        same = topic_of[:, None] == topic_of[None, :]  # (M, M)
        word_trans = torch.where(same, stay, move).double() * p_word[None, :]  # P(k' | k) p(w' | k')
        word_of_t = torch.tensor(word_of)
        # stationary: the topic is uniform (symmetric switching) and each position of a word weighs p(word)
        init = p_word[word_of_t] / self.K
        init = init / init.sum()
        emit_t = torch.tensor(emit, dtype=torch.long)
        emission = torch.full((len(emit), VOCAB_SIZE), self.typo / VOCAB_SIZE, dtype=torch.float64)
        emission[torch.arange(len(emit)), emit_t] += 1.0 - self.typo
        return _Tables(emit_t, torch.tensor(space), torch.tensor(first), word_of_t, word_trans, init, emission)

    def _advance(self, alpha: torch.Tensor) -> torch.Tensor:
        """alpha (B, S) times the transition matrix, using its structure (module docstring of `_Tables`)."""
        t = self._tables
        nxt = torch.empty_like(alpha)
        nxt[:, 1:] = alpha[:, :-1]  # s -> s + 1 inside a word; the state after a space is a word's first state,
        nxt[:, t.first] = alpha[:, t.space] @ t.word_trans  # ... which the next word's choice overwrites
        return nxt

    @property
    def num_states(self) -> int:
        return len(self._tables.emit)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log p(x) in nats of windows x (B, L) of character ids (a window starts anywhere in the stationary
        stream), by the scaled forward algorithm; (B,) float64."""
        if x.dim() != 2 or x.is_floating_point() or (x.numel() and (x.min() < 0 or x.max() >= VOCAB_SIZE)):
            raise ShapeError(f"log_prob takes character ids in [0, 27) of shape (B, L), got {tuple(x.shape)}")
        t = self._tables
        x = x.cpu()
        emission = t.emission.T.contiguous()  # (27, S): a row per character
        alpha = t.init[None, :] * emission[x[:, 0]]  # (B, S)
        logp = torch.zeros(x.shape[0], dtype=torch.float64)
        for i in range(x.shape[1]):
            if i > 0:
                alpha = self._advance(alpha) * emission[x[:, i]]
            norm = alpha.sum(1)  # (B,)
            logp += torch.log(norm)
            alpha = alpha / norm[:, None]
        return logp

    def _retreat(self, beta: torch.Tensor) -> torch.Tensor:
        """The transition matrix times beta (B, S): the backward step of `_advance`."""
        t = self._tables
        out = torch.empty_like(beta)
        out[:, :-1] = beta[:, 1:]  # s -> s + 1 inside a word ...
        out[:, t.space] = beta[:, t.first] @ t.word_trans.T  # ... and a space -> the first state of the next word
        return out

    def denoiser(self, z: torch.Tensor, mask_id: int) -> torch.Tensor:
        """The exact masked-diffusion denoiser of the source: p(x_i = c | the unmasked characters of z) at every
        position (B, L, 27) (one-hot where unmasked), by the forward-backward algorithm (Rabiner 1989, eq. (27))
        with every emission of a masked position set to 1. The network a perfectly trained MDLM would be."""
        t = self._tables
        z = z.cpu()
        masked = z == mask_id  # (B, L)
        emission = t.emission.T.contiguous()  # (27, S)
        obs = torch.where(masked.unsqueeze(-1), torch.ones(()), emission[z.clamp(max=VOCAB_SIZE - 1)].double())
        B, L = z.shape
        alphas = torch.empty(B, L, self.num_states, dtype=torch.float64)
        alpha = t.init[None, :] * obs[:, 0]
        for i in range(L):
            if i > 0:
                alpha = self._advance(alpha) * obs[:, i]
            alpha = alpha / alpha.sum(1, keepdim=True)
            alphas[:, i] = alpha
        beta = torch.ones(B, self.num_states, dtype=torch.float64)
        post = torch.empty_like(alphas)
        for i in range(L - 1, -1, -1):
            if i < L - 1:
                beta = self._retreat(obs[:, i + 1] * beta)
                beta = beta / beta.sum(1, keepdim=True)
            gamma = alphas[:, i] * beta
            post[:, i] = gamma / gamma.sum(1, keepdim=True)
        probs = post @ t.emission  # (B, L, 27): p(character | visible)
        onehot = torch.nn.functional.one_hot(z.clamp(max=VOCAB_SIZE - 1), VOCAB_SIZE).double()
        return torch.where(masked.unsqueeze(-1), probs, onehot)

    def sample(self, n: int, length: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` windows of ``length`` characters from the stationary stream, int64 (n, L)."""
        t = self._tables
        state = torch.multinomial(t.init.expand(n, -1), 1, generator=generator)[:, 0]  # (n,)
        out = torch.empty(n, length, dtype=torch.long)
        for i in range(length):
            if i > 0:
                at_space = t.emit[state] == SPACE
                nxt_word = torch.multinomial(t.word_trans[t.word_of[state]], 1, generator=generator)[:, 0]
                state = torch.where(at_space & (state == t.space[t.word_of[state]]), t.first[nxt_word], state + 1)
            char = t.emit[state]
            typo = torch.rand(n, generator=generator, dtype=torch.float64) < self.typo
            out[:, i] = torch.where(typo, torch.randint(VOCAB_SIZE, (n,), generator=generator), char)
        return out

    # ---- entropies ----
    def entropy_rate_without_typos(self) -> float:
        """The exact entropy rate of the source with ε = 0, bits per character (module docstring)."""
        stay, move = 1.0 - self.switch, self.switch / (self.K - 1)
        h_switch = -sum(p * math.log2(p) for p in [stay] + [move] * (self.K - 1) if p > 0)
        h_word = sum(float(-(p * torch.log2(p)).sum()) for p in self.word_probs) / self.K
        mean_len = sum(float((p * torch.tensor([len(w) + 1.0 for w in v], dtype=torch.float64)).sum())
                       for p, v in zip(self.word_probs, self.vocabularies)) / self.K
        return (h_switch + h_word) / mean_len

    def entropy_rate(self, n_streams: int = 64, length: int = 2000, seed: int = 0) -> tuple[float, float]:
        """(estimate, standard error) of the entropy rate in bits per character: over ``n_streams`` independent
        stationary streams, the NLL of each stream's second half given its first half,
        -log₂ p(x_{N/2+1..N} | x_{1..N/2}) / (N/2), which has no window-start excess (the topic is forgotten
        within a few words, far less than N/2 characters)."""
        x = self.sample(n_streams, length, torch.Generator().manual_seed(seed))
        full = -self.log_prob(x) / math.log(2)
        half = -self.log_prob(x[:, : length // 2]) / math.log(2)
        rates = (full - half) / (length - length // 2)  # (n_streams,)
        return float(rates.mean()), float(rates.std() / math.sqrt(n_streams))

    def window_nll(self, length: int, n: int = 4000, seed: int = 1) -> tuple[float, float]:
        """(mean, standard error) of the exact NLL in bits per character of true windows of ``length``: the value a
        perfect sampler of such windows has (the floor of the test bed's quality figure)."""
        x = self.sample(n, length, torch.Generator().manual_seed(seed))
        nll = -self.log_prob(x) / (math.log(2) * length)
        return float(nll.mean()), float(nll.std() / math.sqrt(n))

    def window_entropy(self, length: int) -> float:
        """`window_nll`'s mean: H(X_1..L) / L in bits per character (the interface of `MarkovChain.window_entropy`)."""
        return self.window_nll(length)[0]

    def nll(self, x: torch.Tensor) -> float:
        """Mean exact NLL of windows x (B, L) in bits per character."""
        return float((-self.log_prob(x) / (math.log(2) * x.shape[1])).mean())


class ExactTopicDenoiser:
    """`TopicLanguage.denoiser` as an MDLM network: ``model(z, σ̄)`` returns log p(x_i | visible) (B, L, 27); like
    MDLM's network it ignores σ̄. With it, every error of a sampler is the sampler's own."""

    time_conditioning = False

    def __init__(self, lang: TopicLanguage, mask_id: int) -> None:
        self.lang, self.mask_id = lang, mask_id

    def __call__(self, z: torch.Tensor, sigma_bar: torch.Tensor | None = None) -> torch.Tensor:
        return torch.log(self.lang.denoiser(z, self.mask_id).clamp_min(1e-300)).to(z.device)


def distinct_ngrams(x: torch.Tensor, n: int = 4) -> float:
    """The fraction of distinct n-grams among all n-grams of the windows x (B, L): 1 when nothing repeats, near 0
    for a sampler that writes the same few strings (a collapsed sampler can have a low NLL and no diversity)."""
    if x.shape[1] < n:
        raise ShapeError(f"windows of {x.shape[1]} characters have no {n}-grams")
    grams = x.unfold(1, n, 1).reshape(-1, n)  # (B (L - n + 1), n)
    return len({tuple(g) for g in grams.tolist()}) / grams.shape[0]
