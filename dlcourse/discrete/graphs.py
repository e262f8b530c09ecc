"""Graphs of a discrete diffusion: the per-token rate matrix Q of a continuous-time Markov chain (CTMC).

Notation of SEDD (Lou, Meng & Ermon 2024, Section 2): states are columns, Q(y, x) ≥ 0 is the rate of jumping from
x to y (y ≠ x), Q(x, x) = -Σ_{y≠x} Q(y, x), and the forward process dp_t/dt = σ(t) Q p_t (their eq. (1)) has the
transition matrix p_{t|0}(y | x) = exp(σ̄(t) Q)(y, x). A sequence of L tokens is perturbed independently per token.

- `Absorbing` (MDLM's masking; D3PM's absorbing state, Austin et al. 2021, Section 3.2): N tokens plus a mask
  state N; a token jumps to the mask at rate 1 and the mask never leaves: p_{t|0}(x | x) = e^{-σ̄},
  p_{t|0}(mask | x) = 1 - e^{-σ̄}.
- `Uniform` (D3PM's uniform noise): Q = 11ᵀ/N - I, so p_{t|0} = e^{-σ̄} I + (1 - e^{-σ̄}) 11ᵀ/N.

Every method works on token tensors x (B, L) and per-sample σ̄ (B,) and returns (B, L, S) vectors over the S states
(S = N + 1 for absorbing, N for uniform). The concrete score s(x)_y ≈ p_t(y)/p_t(x) at one position is such a
vector too, over the token y that replaces x at that position (SEDD Section 3); its entry at y = x is 1.

Adding a graph: subclass `Graph`, implement its methods, register it with ``@GRAPHS.register("name")``; the text
families' ``noise.graph`` then accepts the name (the tests of `tests/test_discrete_losses.py` check any graph's
transition, rates and score entropy against the matrix exponential of its `rate_matrix`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..config import Registry
from ..utils import unsqueeze_as

__all__ = ["Graph", "Absorbing", "Uniform", "GRAPHS", "make_graph"]

GRAPHS: Registry[type] = Registry("graph")


class Graph:
    """Interface of a per-token CTMC; see the module docstring for conventions."""

    #: N, the number of real tokens
    num_tokens: int
    #: S, the number of states (N + 1 with a mask state)
    num_states: int
    #: the absorbing state, or None
    mask_id: int | None = None

    def rate_matrix(self) -> torch.Tensor:
        """Q (S, S), columns = from-states (for tests and lectures on tiny vocabularies)."""
        raise NotImplementedError

    def transition(self, x: torch.Tensor, sigma_bar: torch.Tensor) -> torch.Tensor:
        """p_{t|0}(· | x) = exp(σ̄ Q)(·, x): the distribution of x_t given x_0 = x, (B, L) -> (B, L, S)."""
        raise NotImplementedError

    def transp_transition(self, x_t: torch.Tensor, sigma_bar: torch.Tensor) -> torch.Tensor:
        """y ↦ exp(σ̄ Q)(x_t, y) = p(x_t at t | y at 0): a row of the transition matrix, (B, L) -> (B, L, S)."""
        raise NotImplementedError

    def rate_into(self, x_t: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """y ↦ Q(x_t, y), the forward rate of jumping y -> x_t, with the y = x_t entry zeroed, (B, L, S).

        This is both the weight of SEDD's denoising score entropy and the forward part of the reverse rate.
        """
        raise NotImplementedError

    def staggered_score(self, score: torch.Tensor, dsigma: torch.Tensor) -> torch.Tensor:
        """exp(-Δσ̄ Q) s, applied to the score vectors (B, L, S) (SEDD Theorem 4.2, Tweedie τ-leaping)."""
        raise NotImplementedError

    def sample_transition(self, x: torch.Tensor, sigma_bar: torch.Tensor,
                          generator: torch.Generator | None = None) -> torch.Tensor:
        """x_t ~ p_{t|0}(· | x): perturb every token independently, (B, L) -> (B, L)."""
        raise NotImplementedError

    def sample_limit(self, shape: tuple[int, ...], device: torch.device | str = "cpu",
                     generator: torch.Generator | None = None) -> torch.Tensor:
        """A sample of the base distribution p_1 (all masks, or uniform tokens)."""
        raise NotImplementedError

    def prior_kl(self, x: torch.Tensor, sigma_bar_1: torch.Tensor) -> torch.Tensor:
        """KL(p_{1|0}(· | x) ‖ p_base) summed over positions, (B, L) -> (B,): the prior term of the bound
        (SEDD Theorem 3.6). p_base is the limit mixed with the clean token's leftover mass where σ̄(1) < ∞."""
        raise NotImplementedError

    def reverse_rate(self, x_t: torch.Tensor, score: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Reverse rate Q̄_t(y, x_t) = s(x_t)_y · σ(t) Q(x_t, y) for y ≠ x_t, and the diagonal minus their sum.

        SEDD Section 2 (the time reversal of a CTMC, Kelly 1979; their eq. (3)), with the ratio p_t(y)/p_t(x_t) replaced
        by the concrete score. x_t (B, L), score (B, L, S), σ (B,) -> (B, L, S).
        """
        off = score * self.rate_into(x_t, score.dtype) * unsqueeze_as(sigma, score)  # (B, L, S), zero at y = x_t
        return off - F.one_hot(x_t, self.num_states).to(off) * off.sum(-1, keepdim=True)


@GRAPHS.register("absorbing")
class Absorbing(Graph):
    """N tokens and one absorbing mask state (id N): Q(mask, x) = 1, Q(x, x) = -1 for every token x."""

    def __init__(self, num_tokens: int) -> None:
        self.num_tokens = int(num_tokens)
        self.num_states = self.num_tokens + 1
        self.mask_id = self.num_tokens

    def rate_matrix(self) -> torch.Tensor:
        q = torch.zeros(self.num_states, self.num_states, dtype=torch.float64)
        idx = torch.arange(self.num_tokens)
        q[idx, idx] = -1.0
        q[self.mask_id, idx] = 1.0
        return q

    def transition(self, x, sigma_bar):
        stay = unsqueeze_as(torch.exp(-sigma_bar), x).unsqueeze(-1)  # (B, 1, 1)
        onehot = F.one_hot(x, self.num_states).to(stay)  # (B, L, S)
        to_mask = F.one_hot(torch.full_like(x, self.mask_id), self.num_states).to(stay)
        p = stay * onehot + (1 - stay) * to_mask
        # a mask stays a mask (the rows of x = mask are one-hot on the mask)
        return torch.where((x == self.mask_id).unsqueeze(-1), to_mask, p)

    def transp_transition(self, x_t, sigma_bar):
        stay = unsqueeze_as(torch.exp(-sigma_bar), x_t).unsqueeze(-1)  # (B, 1, 1)
        onehot = F.one_hot(x_t, self.num_states).to(stay)  # (B, L, S)
        is_mask = (x_t == self.mask_id).unsqueeze(-1)
        from_mask = (1 - stay) * torch.ones_like(onehot)  # each token reached the mask w.p. 1 - e^{-σ̄}
        from_mask = torch.where(onehot.bool(), torch.ones_like(onehot), from_mask)  # mask -> mask w.p. 1
        return torch.where(is_mask, from_mask, stay * onehot)

    def rate_into(self, x_t, dtype=torch.float32):
        is_mask = (x_t == self.mask_id).unsqueeze(-1)  # (B, L, 1)
        w = torch.ones(*x_t.shape, self.num_states, device=x_t.device, dtype=dtype)
        w[..., self.mask_id] = 0.0
        return w * is_mask

    def staggered_score(self, score, dsigma):
        e = unsqueeze_as(dsigma, score).to(score.dtype)
        tokens = score[..., : self.num_tokens]  # (B, L, N)
        mask = score[..., self.mask_id:] - torch.expm1(e) * tokens.sum(-1, keepdim=True)  # (B, L, 1)
        return torch.cat([torch.exp(e) * tokens, mask], dim=-1)

    def sample_transition(self, x, sigma_bar, generator=None):
        p_mask = unsqueeze_as(-torch.expm1(-sigma_bar), x)  # (B, 1) = 1 - e^{-σ̄}
        u = torch.rand(x.shape, generator=generator, device=x.device)
        return torch.where(u < p_mask, torch.full_like(x, self.mask_id), x)

    def sample_limit(self, shape, device="cpu", generator=None):
        return torch.full(shape, self.mask_id, dtype=torch.long, device=device)

    def prior_kl(self, x, sigma_bar_1):
        # p_base = (1 - e^{-σ̄₁}) δ_mask + e^{-σ̄₁} Uniform(tokens): per token KL = e^{-σ̄₁} log N.
        clean = torch.exp(-sigma_bar_1)
        return clean * math.log(self.num_tokens) * x.shape[-1]


@GRAPHS.register("uniform")
class Uniform(Graph):
    """N tokens, every token jumps to every other at rate 1/N: Q = 11ᵀ/N - I."""

    def __init__(self, num_tokens: int) -> None:
        self.num_tokens = self.num_states = int(num_tokens)

    def rate_matrix(self) -> torch.Tensor:
        n = self.num_tokens
        return torch.ones(n, n, dtype=torch.float64) / n - torch.eye(n, dtype=torch.float64)

    def transition(self, x, sigma_bar):
        stay = unsqueeze_as(torch.exp(-sigma_bar), x).unsqueeze(-1)  # (B, 1, 1)
        onehot = F.one_hot(x, self.num_states).to(stay)
        return stay * onehot + (1 - stay) / self.num_tokens

    def transp_transition(self, x_t, sigma_bar):
        return self.transition(x_t, sigma_bar)  # Q is symmetric

    def rate_into(self, x_t, dtype=torch.float32):
        return (1.0 - F.one_hot(x_t, self.num_states).to(dtype)) / self.num_tokens

    def staggered_score(self, score, dsigma):
        # exp(-Δ Q) = e^{Δ} I - (e^{Δ} - 1) 11ᵀ/N, written as e^{Δ} (s - s̄) + s̄ (s̄ the mean): the same value
        # without subtracting two numbers of size e^{Δ} (Δ reaches 20 at the start of the geometric schedule)
        e = unsqueeze_as(dsigma, score).to(score.dtype)
        mean = score.mean(-1, keepdim=True)
        return torch.exp(e) * (score - mean) + mean

    def sample_transition(self, x, sigma_bar, generator=None):
        p_move = unsqueeze_as(-torch.expm1(-sigma_bar), x)
        u = torch.rand(x.shape, generator=generator, device=x.device)
        noise = torch.randint(self.num_tokens, x.shape, generator=generator, device=x.device)
        return torch.where(u < p_move, noise, x)

    def sample_limit(self, shape, device="cpu", generator=None):
        return torch.randint(self.num_tokens, shape, generator=generator, device=device)

    def prior_kl(self, x, sigma_bar_1):
        p = self.transition(x[:, :1], sigma_bar_1)[:, 0]  # (B, S): the same for every token value
        kl = torch.xlogy(p, p).sum(-1) + math.log(self.num_tokens)
        return kl * x.shape[-1]


def make_graph(name: str, num_tokens: int) -> Graph:
    """The registered graph ``name`` (``"absorbing"``, ``"uniform"``) over ``num_tokens`` tokens."""
    return GRAPHS.get(name)(num_tokens)
