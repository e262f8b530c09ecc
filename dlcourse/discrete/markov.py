"""Text with known statistics, for tests and lectures: a character Markov chain with a known entropy rate, and tiny
distributions over short sequences that can be enumerated, with their exact denoiser and exact concrete score.

A stationary first-order chain with transition matrix P and stationary law π has entropy rate
h = -Σ_i π_i Σ_j P_ij log₂ P_ij bits per character (Cover & Thomas, "Elements of Information Theory", Theorem 4.2.4),
and a window of L characters has entropy H(π) + (L - 1) h exactly, so the best possible bits per character on
L-character windows is (H(π) + (L - 1) h) / L: every model's bpc on such data is at least that.
"""

from __future__ import annotations

import itertools
import math

import torch

__all__ = ["MarkovChain", "TinyDistribution", "ExactDenoiser", "ExactScore", "ExactMarkovAR"]


class MarkovChain:
    """A stationary character Markov chain over K symbols, emitted as token ids ``tokens[0..K-1]``.

    ``MarkovChain.random(K, concentration, seed)`` draws each row of P from a Dirichlet(concentration); a small
    concentration gives peaked rows and a low entropy rate.
    """

    def __init__(self, transition: torch.Tensor, tokens: torch.Tensor | None = None) -> None:
        p = torch.as_tensor(transition, dtype=torch.float64)
        if p.dim() != 2 or p.shape[0] != p.shape[1] or (p < 0).any() or not torch.allclose(p.sum(1), torch.ones(len(p), dtype=p.dtype)):
            raise ValueError("transition must be a square row-stochastic matrix")
        self.P = p  # (K, K), P[i, j] = p(next = j | current = i)
        self.tokens = torch.arange(len(p)) if tokens is None else torch.as_tensor(tokens, dtype=torch.long)
        evals, evecs = torch.linalg.eig(p.T)
        v = evecs[:, torch.argmin((evals - 1).abs())].real
        self.pi = v / v.sum()  # (K,), stationary: π P = π

    @classmethod
    def random(cls, num_symbols: int = 8, concentration: float = 0.3, seed: int = 0) -> "MarkovChain":
        """Rows of P drawn from Dirichlet(concentration) (NumPy's fixed RandomState stream), floored at 1e-3."""
        import numpy as np

        rows = np.random.RandomState(seed).dirichlet(np.full(num_symbols, concentration), size=num_symbols) + 1e-3
        return cls(torch.from_numpy(rows / rows.sum(1, keepdims=True)))

    @property
    def num_symbols(self) -> int:
        return len(self.P)

    def entropy_rate(self) -> float:
        """h = -Σ_i π_i Σ_j P_ij log₂ P_ij, bits per character."""
        return float(-(self.pi[:, None] * torch.xlogy(self.P, self.P)).sum() / math.log(2))

    def window_entropy(self, length: int) -> float:
        """H(x_1..x_L) / L in bits per character for a window of a stationary chain: (H(π) + (L - 1) h) / L."""
        h_pi = float(-torch.xlogy(self.pi, self.pi).sum() / math.log(2))
        return (h_pi + (length - 1) * self.entropy_rate()) / length

    def sample(self, num: int, length: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``num`` stationary windows of ``length`` characters as token ids (num, length)."""
        states = torch.empty(num, length, dtype=torch.long)
        states[:, 0] = torch.multinomial(self.pi.float().expand(num, -1), 1, generator=generator).squeeze(1)
        P = self.P.float()
        for i in range(1, length):
            states[:, i] = torch.multinomial(P[states[:, i - 1]], 1, generator=generator).squeeze(1)
        return self.tokens[states]

    def stream(self, n: int, seed: int = 0) -> torch.Tensor:
        """One long stationary sequence of ``n`` token ids (n,), for `dlcourse.data.text.ChunkSampler`."""
        return self.sample(1, n, torch.Generator().manual_seed(seed))[0]

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) in nats of token windows (B, L) -> (B,)."""
        lookup = torch.full((int(self.tokens.max()) + 1,), -1, dtype=torch.long)
        lookup[self.tokens] = torch.arange(self.num_symbols)
        s = lookup[x]
        lp = torch.log(self.pi)[s[:, 0]]
        return lp + torch.log(self.P[s[:, :-1], s[:, 1:]]).sum(-1)


class TinyDistribution:
    """An explicit distribution over all V^L sequences (V symbols, length L), small enough to enumerate (V^L ≲ 10⁴).

    Gives what a perfectly trained network would output: the masked-diffusion denoiser p(x^ℓ | unmasked tokens)
    and the concrete score p_t(y)/p_t(x) under any `Graph`, so losses and bounds can be checked exactly.
    """

    def __init__(self, probs: torch.Tensor, num_symbols: int, length: int) -> None:
        self.V, self.L = int(num_symbols), int(length)
        self.probs = torch.as_tensor(probs, dtype=torch.float64)  # (V^L,)
        if self.probs.shape != (self.V ** self.L,):
            raise ValueError(f"probs must have V^L = {self.V ** self.L} entries")
        self.seqs = torch.tensor(list(itertools.product(range(self.V), repeat=self.L)), dtype=torch.long)  # (V^L, L)

    @classmethod
    def random(cls, num_symbols: int = 3, length: int = 4, seed: int = 0, concentration: float = 0.5):
        g = torch.Generator().manual_seed(seed)
        w = (-torch.log(torch.rand(num_symbols ** length, generator=g, dtype=torch.float64))) ** (1 / concentration)
        return cls(w / w.sum(), num_symbols, length)

    def entropy(self) -> float:
        """H(p) in nats."""
        return float(-torch.xlogy(self.probs, self.probs).sum())

    def index(self, x: torch.Tensor) -> torch.Tensor:
        """Row of each sequence (B, L) in ``seqs``."""
        powers = self.V ** torch.arange(self.L - 1, -1, -1)
        return (x * powers).sum(-1)

    def denoiser(self, z: torch.Tensor, mask_id: int) -> torch.Tensor:
        """The exact x_θ(z) (B, L, V): p(x^ℓ = v | the unmasked tokens of z) at every position (one-hot where
        unmasked). z (B, L) over V symbols plus ``mask_id``."""
        visible = z != mask_id  # (B, L)
        agree = ((self.seqs[None] == z[:, None]) | ~visible[:, None]).all(-1)  # (B, V^L)
        w = self.probs[None] * agree  # (B, V^L)
        onehot = torch.nn.functional.one_hot(self.seqs, self.V).to(w)  # (V^L, L, V)
        post = torch.einsum("bn,nlv->blv", w, onehot)
        return post / post.sum(-1, keepdim=True)

    def noisy_marginal(self, graph, sigma_bar: float) -> tuple[torch.Tensor, torch.Tensor]:
        """All noisy sequences under ``graph`` (S^L, L) and their probabilities p_t (S^L,) at total noise σ̄."""
        S = graph.num_states
        states = torch.tensor(list(itertools.product(range(S), repeat=self.L)), dtype=torch.long)  # (S^L, L)
        trans = graph.transition(self.seqs, torch.full((len(self.seqs),), float(sigma_bar), dtype=torch.float64))
        trans = trans.to(torch.float64)  # (V^L, L, S)
        # p_t(z) = Σ_x p(x) Π_ℓ trans[x, ℓ, z_ℓ]
        per = trans[:, torch.arange(self.L)[None, :], states]  # (V^L, S^L, L)
        return states, (self.probs[:, None] * per.prod(-1)).sum(0)

    def concrete_score(self, graph, sigma_bar: float, x_t: torch.Tensor) -> torch.Tensor:
        """The exact concrete score p_t(y)/p_t(x_t) (B, L, S) for y = x_t with position ℓ set to each state."""
        states, pt = self.noisy_marginal(graph, sigma_bar)
        S = graph.num_states
        powers = S ** torch.arange(self.L - 1, -1, -1)
        base = (x_t * powers).sum(-1)  # (B,)
        idx = base[:, None, None] + (torch.arange(S)[None, None, :] - x_t[:, :, None]) * powers[None, :, None]
        return pt[idx] / pt[base][:, None, None]


class ExactDenoiser:
    """The perfect MDLM network for a `TinyDistribution`: ``model(z, σ̄)`` returns log x_θ(z) (B, L, V) (the logits
    of `TinyDistribution.denoiser`); like MDLM's network it ignores σ̄ (``time_conditioning = False``)."""

    time_conditioning = False

    def __init__(self, dist: TinyDistribution, mask_id: int) -> None:
        self.dist, self.mask_id = dist, mask_id

    def __call__(self, z: torch.Tensor, sigma_bar: torch.Tensor | None = None) -> torch.Tensor:
        return torch.log(self.dist.denoiser(z.cpu(), self.mask_id)).to(z.device)


class ExactScore:
    """The perfect SEDD network for a `TinyDistribution` under ``graph``: ``model(x_t, σ̄)`` returns N outputs per
    position whose `dlcourse.discrete.losses.sedd_log_score` is the true log p_t(y)/p_t(x_t) (the absorbing
    graph's outputs are shifted by log(e^σ̄ - 1), undoing that function's scaling)."""

    time_conditioning = True

    def __init__(self, dist: TinyDistribution, graph) -> None:
        self.dist, self.graph = dist, graph

    def __call__(self, x_t: torch.Tensor, sigma_bar: torch.Tensor) -> torch.Tensor:
        n = self.graph.num_tokens
        out = torch.empty(*x_t.shape, n, dtype=torch.float64)
        for value in torch.unique(sigma_bar):  # one noisy marginal per distinct σ̄
            rows = (sigma_bar == value).cpu()
            log_s = torch.log(self.dist.concrete_score(self.graph, float(value), x_t.cpu()[rows]))[..., :n]
            if self.graph.mask_id is not None:
                log_s = log_s + math.log(math.expm1(float(value)))
            out[rows] = log_s
        return out.to(x_t.device)


class ExactMarkovAR:
    """The perfect autoregressive model of a `MarkovChain` (symbols = ids 0..K-1): fed [BOS, x_1 .. x_{L-1}] it
    returns log π at the start and log P[x_{ℓ-1}] after, (B, L, K); ``model(x, cache=...)`` ignores the cache, as
    the chain needs only the last character."""

    causal, n_layers = True, 1

    def __init__(self, chain: MarkovChain, bos_id: int) -> None:
        if not torch.equal(chain.tokens, torch.arange(chain.num_symbols)):
            raise ValueError("ExactMarkovAR needs a chain whose symbols are the ids 0..K-1")
        self.chain, self.bos_id = chain, bos_id

    def __call__(self, x: torch.Tensor, sigma_bar=None, cache=None) -> torch.Tensor:
        log_p = torch.log(self.chain.P)[x.clamp(max=self.chain.num_symbols - 1)]  # (B, L, K)
        start = torch.log(self.chain.pi).expand_as(log_p)
        return torch.where((x == self.bos_id).unsqueeze(-1), start, log_p)
