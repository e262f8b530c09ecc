# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python (dlcourse)
#     language: python
#     name: dlcourse
# ---

# %%
from dlcourse.utils import setup_notebook

device = setup_notebook(seed=0)

# %% [markdown]
# # 09 · The concrete score and score entropy (SEDD)
#
# Lecture 07 met the three pieces of SEDD (Lou, Meng & Ermon 2024) in one glance: ratios $p_t(y)/p_t(x)$ as the
# discrete score, the reverse chain built from them, and score entropy to learn them. Lecture 08 then took the
# masking special case and turned it into a language model. Here we open each SEDD piece on a space small enough to
# enumerate, so every claim is checked exactly rather than believed:
#
# 1. where the concrete score comes from, and what it looks like on sequences, for both graphs;
# 2. why score entropy is the right loss (a Bregman divergence), and why its *denoising* form, which is what we can
#    actually compute, has the same minimiser;
# 3. what the samplers (Euler and Tweedie τ-leaping) lose with a *perfect* score, as a function of the step count;
# 4. what the shipped `sedd_prose` makes of it.

# %% [markdown]
# ## From $\nabla \log p$ to ratios
#
# For a smooth density on a grid of spacing $h$, the ratio to the neighbour is $p(x+h)/p(x) = 1 + h\,\partial_x
# \log p(x) + O(h^2)$: the continuous score is the first-order part of a ratio between neighbours. Meng et al.
# (2022, "Concrete Score Matching") drop the limit and keep the ratios, $c_p(x)_y = p(y)/p(x) - 1$ for every
# neighbour $y$ of $x$; SEDD uses $s(x)_y = p(y)/p(x)$ (Section 3). Like the score, ratios do not need the
# normalising constant of $p$. A check on a two-bump density:

# %%
import math

import torch


def log_p(v):
    """An unnormalised two-bump log density."""
    return torch.logaddexp(-(v - 1) ** 2 / 0.5, -(v + 1.2) ** 2 / 0.3 + math.log(0.5))


for h in (0.1, 0.01, 0.001):
    xs = torch.arange(-3, 3, h, dtype=torch.float64).requires_grad_()
    score = torch.autograd.grad(log_p(xs).sum(), xs)[0]  # d/dx log p
    ratio = torch.exp(log_p(xs + h) - log_p(xs)).detach()  # p(x + h) / p(x)
    print(f"h = {h:5}: max |(p(x+h)/p(x) - 1)/h - d/dx log p| = {((ratio - 1) / h - score).abs().max().item():.4f}")
print(f"(for scale: max |d/dx log p| = {score.abs().max().item():.1f})")


# %% [markdown]
# The gap shrinks in proportion to $h$. On tokens there is no $h \to 0$: a character's neighbours are the other
# characters. For a sequence of $L$ tokens, SEDD's neighbours of $x$ are the sequences that differ from it at
# **one** position, so the concrete score at $x$ is an $L \times S$ table (position $\ell$, replacement state $y$),
# the same shape as a language model's logits, although $p$ itself is a table with $S^L$ entries. That is what
# makes it learnable by a transformer.
#
# We use the tiny distribution of lecture 08 (all $3^4 = 81$ sequences of 4 characters over 3 symbols, random
# probabilities) and `TinyDistribution.concrete_score`, which computes $p_t$ on *every* noisy sequence by brute
# force. On the absorbing graph, at a masked position, the ratio is the denoiser of lecture 08 up to a factor that
# only depends on time (SEDD Appendix C.2; lecture 07's first question):
#
# $$ \frac{p_t(x \text{ with } y \text{ at } \ell)}{p_t(x)}
#    = \frac{p_0(x^\ell = y \mid \text{unmasked tokens of } x)}{e^{\bar\sigma} - 1}. $$

# %%
import itertools

from dlcourse.discrete.graphs import Absorbing, Uniform
from dlcourse.discrete.markov import TinyDistribution

dist = TinyDistribution.random(num_symbols=3, length=4, seed=1)
absorbing, uniform = Absorbing(3), Uniform(3)  # absorbing: symbols 0, 1, 2 and the mask, id 3
sigma_bar = 0.8

states, p_t = dist.noisy_marginal(absorbing, sigma_bar)  # all 4^4 noisy sequences and their probabilities
score = dist.concrete_score(absorbing, sigma_bar, states)  # (256, L, S): s(x)_{(ℓ, y)}
masked = states == absorbing.mask_id  # (256, L)
denoiser = dist.denoiser(states, absorbing.mask_id)  # (256, L, 3)
print(f"{len(states)} noisy sequences; score table per sequence: {tuple(score.shape[1:])}")
print(f"max |ratio - denoiser / (e^σ̄ - 1)| at masked positions = "
      f"{(score[..., :3][masked] - denoiser[masked] / math.expm1(sigma_bar)).abs().max().item():.1e}")

# %% [markdown]
# ## The reverse rates on the two graphs
#
# The reverse chain jumps from $x$ to a neighbour $y$ at rate $\bar Q_t(y, x) = s(x)_y\, \sigma(t) Q(x, y)$ (SEDD
# eq. (3), Kelly's reversal; lecture 07 checked it on one token). $Q(x, y)$, the forward rate *into* $x$ from $y$,
# decides which of the $L \times S$ entries matter:
#
# - **absorbing**: a forward jump into $x$ only ever lands on a mask, so the reverse chain only *unmasks*: nonzero
#   rates sit on the masked positions, towards real tokens; a revealed character never changes again;
# - **uniform**: every token can have come from every other, so every position may change to every token at every
#   time: the sampler can *correct* a character, and the score has to be right everywhere.
#
# The exact reverse rates ($\sigma(t) = 1$) out of one noisy sequence under each graph; on the absorbing graph it
# has its 2nd and 4th characters masked:

# %%
import matplotlib.pyplot as plt

fig, axes = plt.subplots(1, 2, figsize=(8, 2.6), dpi=80)
for ax, graph, x in ((axes[0], absorbing, [0, 3, 2, 3]), (axes[1], uniform, [0, 1, 2, 1])):
    x = torch.tensor([x])
    s = dist.concrete_score(graph, sigma_bar, x)  # (1, L, S)
    rates = graph.reverse_rate(x, s, torch.ones(1, dtype=torch.float64))[0]  # (L, S), the diagonal = -total
    off = rates.clamp_min(0)  # jump rates only
    ax.imshow(off.T, cmap="Blues", vmin=0)
    for (pos, y), v in zip(itertools.product(range(4), range(graph.num_states)), off.flatten()):
        if v > 0:
            ax.text(pos, y, f"{v:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if v > off.max() / 2 else "black")
    labels = ["a", "b", "c", "_"][: graph.num_states]
    ax.set(xticks=range(4), xticklabels=[labels[i] for i in x[0]], yticks=range(graph.num_states),
           yticklabels=labels, xlabel="current sequence x (one column per position)", ylabel="jump to y")
    ax.set_title(f"{type(graph).__name__}: total rate {off.sum():.2f}", fontsize=10)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Score entropy is a Bregman divergence
#
# A network $s_\theta(x)_y$ is fitted to the ratios by **score entropy** (SEDD Definition 3.1), with weights
# $w_{xy} \ge 0$:
#
# $$ \mathcal L_{SE}(\theta) = \mathbb E_{x\sim p} \sum_{y\ne x} w_{xy}\Big(s_\theta(x)_y - r_{xy}\log s_\theta(x)_y
#    + K(r_{xy})\Big), \qquad r_{xy} = \frac{p(y)}{p(x)},\quad K(a) = a(\log a - 1). $$
#
# Each term is $D_F(r, s) = F(r) - F(s) - F'(s)(r - s)$ for the convex $F(u) = u\log u$ (expand it: the $s\log s$
# cancel): the **Bregman divergence** of $u\log u$, i.e. the generalised KL divergence between the positive numbers
# $r$ and $s$. So, as for any Bregman divergence of a strictly convex function, each term is $\ge 0$ and zero exactly
# at $s = r$, and the *expectation* of $r$ is the minimiser (Banerjee et al. 2005): that last property is what makes
# the denoising trick below work. Compared with the squared error (the Bregman divergence of $u^2$), it keeps
# $s > 0$ (a $-r \log s$ barrier) and measures ratios on a relative scale, which matters when they span orders of
# magnitude.
#
# We check it on the tiny case with the weights of SEDD's likelihood bound, $w_{xy} = Q(x, y)$: perturb the true
# ratios multiplicatively, $s = r\, e^{\varepsilon z}$ with a fixed random $z$ per entry, and compute
# $\mathcal L_{SE}$ exactly by summing over all noisy sequences.

# %%
from dlcourse.discrete.losses import denoising_score_entropy, implicit_score_entropy, score_entropy


def exact_objects(graph):
    """All noisy sequences, p_t, the true concrete score and the weights w_xy = Q(x, y) at total noise σ̄."""
    states, p_t = dist.noisy_marginal(graph, sigma_bar)
    return states, p_t, dist.concrete_score(graph, sigma_bar, states), graph.rate_into(states, torch.float64)


def se(graph, model_score):
    """L_SE: E_{x ~ p_t} Σ_ℓ Σ_y w (s - r log s + K(r)), exactly (SEDD Definition 3.1)."""
    states, p_t, ratio, weight = exact_objects(graph)
    return float((p_t * score_entropy(model_score, ratio, weight).sum(-1)).sum())


direction = {}
for graph in (absorbing, uniform):
    ratio = exact_objects(graph)[2]
    direction[graph] = torch.randn(ratio.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    values = [se(graph, ratio * torch.exp(eps * direction[graph])) for eps in (0.0, 0.01, 0.1, 0.3, 1.0)]
    print(f"{type(graph).__name__:9} L_SE at ε = 0, 0.01, 0.1, 0.3, 1:  " + "  ".join(f"{v:.2e}" for v in values))

# %% [markdown]
# Zero at the truth, positive elsewhere, growing like $\varepsilon^2$ near the minimum (ten times the perturbation,
# a hundred times the loss): the truth is a strict minimum. Drag the slider to move the "network" away from the
# true ratios and back; each frame shows every weighted pair $(x, y)$ of the absorbing case, estimate against truth,
# and where the loss stands.

# %% tags=["nbval-ignore-output"]
from dlcourse.viz import FramePlayer, render_png

eps_grid = [round(0.1 * k, 1) for k in range(-10, 11)]
states_a, p_a, ratio_a, weight_a = exact_objects(absorbing)
curve = [se(absorbing, ratio_a * torch.exp(e * direction[absorbing])) for e in eps_grid]
pairs = weight_a > 0  # the (x, y) pairs that enter the loss
frames = []
for e, value in zip(eps_grid, curve):
    est = ratio_a * torch.exp(e * direction[absorbing])
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3.2))
    a1.loglog(ratio_a[pairs], est[pairs], ".", ms=3, alpha=0.5)
    a1.plot([1e-4, 1e2], [1e-4, 1e2], "k--", lw=1)
    a1.set(xlim=(1e-2, 2), ylim=(1e-3, 20), xlabel="true ratio r", ylabel="estimate s", title=f"ε = {e:+.1f}")
    a2.plot(eps_grid, curve, "-", color="grey")
    a2.plot([e], [value], "o", color="C3")
    a2.set(xlabel="ε", ylabel="score entropy", title=f"L_SE = {value:.3f}")
    fig.tight_layout()
    frames.append(render_png(fig))
player = FramePlayer(frames, labels=[f"ε = {e:+.1f}" for e in eps_grid], interval_ms=200)
player.show(eps_grid.index(0.3))
player

# %% [markdown]
# ## Denoising score entropy: the same minimiser without knowing $p_t$
#
# $\mathcal L_{SE}$ needs the ratios it is trying to learn. Two rewritings do not, the discrete twins of lecture 02's
# implicit (Hyvärinen) and denoising (Vincent) score matching:
#
# - **implicit** score entropy (SEDD Proposition 3.3): $\mathbb E_{x\sim p}\sum_{y\ne x} w_{xy}\, s_\theta(x)_y -
#   w_{yx} \log s_\theta(y)_x$, by swapping $x$ and $y$ in the $r \log s$ term: $p(x)\, r_{xy} = p(y)$;
# - **denoising** score entropy (SEDD Theorem 3.4): replace $r_{xy} = p_t(y)/p_t(x)$ by the *conditional* ratio
#   $p_{t|0}(y \mid x_0)/p_{t|0}(x \mid x_0)$, which we know in closed form, and average over $x_0 \sim p_0$,
#   $x \sim p_{t|0}(\cdot \mid x_0)$.
#
# Why the denoising form works: the loss is *linear* in $r$ apart from the constant $K(r)$, and the true ratio is
# the posterior average of the conditional ones, $\frac{p_t(y)}{p_t(x)} = \mathbb E_{x_0 \sim p(\cdot\mid x)}
# \frac{p_{t|0}(y\mid x_0)}{p_{t|0}(x\mid x_0)}$. So all three losses differ by constants that do not involve
# $\theta$: they have the same gradients, the same minimiser. The constants differ: at the truth $\mathcal L_{SE}$
# is 0 but $\mathcal L_{DSE}$ is not, by Jensen's inequality on the convex $K$; it is the irreducible noise of
# denoising, just like the minimum of denoising score matching for images (lecture 02).
#
# We check it exactly, with three arbitrary "networks" on each graph: all $x_0$ and all noisy $x$ enumerated.

# %%
def dse(graph, model_score):
    """L_DSE: E_{x0 ~ p_0} E_{x ~ p_{t|0}(· | x0)} Σ_ℓ DSE, enumerating every x0 and every noisy x."""
    states = exact_objects(graph)[0]
    sb = torch.full((len(states),), sigma_bar, dtype=torch.float64)
    total = 0.0
    for p0, x0 in zip(dist.probs, dist.seqs):
        trans = graph.transition(x0[None], sb[:1])[0]  # (L, S) = p_{t|0}(· | x0) per position
        p_cond = trans[torch.arange(dist.L), states].prod(-1)  # (M,) = p_{t|0}(x | x0)
        per_x = denoising_score_entropy(graph, torch.log(model_score), states, x0.expand_as(states), sb).sum(-1)
        total += float(p0 * (p_cond * per_x).sum())
    return total


def ise(graph, model_score):
    """L_ISE (Proposition 3.3) with dense (M, M) matrices over all noisy sequences: score[x, y], weight[x, y]."""
    states, p_t, _, weight = exact_objects(graph)
    S, M = graph.num_states, len(states)
    powers = S ** torch.arange(dist.L - 1, -1, -1)
    # nbr[x, ℓ, y] = the index of x with position ℓ set to y (the layout of `TinyDistribution.concrete_score`)
    nbr = (states * powers).sum(-1)[:, None, None] + (torch.arange(S) - states[:, :, None]) * powers[:, None]
    dense_s, dense_w = torch.ones(M, M, dtype=torch.float64), torch.zeros(M, M, dtype=torch.float64)
    rows = torch.arange(M)[:, None, None].expand_as(nbr)
    keep = weight > 0  # the neighbours y (one position changed) that carry a weight
    dense_s[rows[keep], nbr[keep]] = model_score[keep]
    dense_w[rows[keep], nbr[keep]] = weight[keep]
    return float(implicit_score_entropy(dense_s, p_t, dense_w))


for graph in (absorbing, uniform):
    ratio = exact_objects(graph)[2]
    print(f"{type(graph).__name__}:")
    for name, eps in (("true ratios", 0.0), ("ε = 0.3", 0.3), ("ε = 1.0", 1.0)):
        s = ratio * torch.exp(eps * direction[graph])
        a, b, c = se(graph, s), ise(graph, s), dse(graph, s)
        print(f"  {name:12} L_SE = {a:.6f}  L_ISE = {b:+.6f}  L_DSE = {c:.6f}   "
              f"L_ISE - L_SE = {b - a:+.6f}  L_DSE - L_SE = {c - a:.6f}")

# %% [markdown]
# The differences are the same in every row, to six decimals: the losses we can compute train the same network as
# the one we cannot. SEDD trains on the denoising form (`dlcourse.discrete.losses.sedd_loss`), weighting it by
# $\sigma(t)$ and integrating over $t$; then it is also an upper bound on $-\log p_\theta(x)$ (Theorem 3.6), which
# is where the bits per character below come from. The implicit form needs $s_\theta$ at every neighbour $y$, i.e.
# $L \cdot S$ network calls per example, which is why nobody trains on it.

# %% [markdown]
# ## Sampling with a perfect score: Euler against Tweedie τ-leaping
#
# Even with the exact ratios, a sampler with $T$ steps makes an error: it updates all $L$ positions
# *independently* within a step, while the true reverse process couples them. SEDD has two per-position steps
# from $t$ to $s < t$ (Section 4.1, `dlcourse.discrete.samplers`):
#
# - **Euler** (τ-leaping): jump with probability $\Delta t\, \bar Q_t(y, x)$, the reverse rate frozen over the step;
# - **Tweedie τ-leaping** (Theorem 4.2): $p(x_s^\ell = y) \propto \big[e^{-(\bar\sigma_t - \bar\sigma_s)Q}
#   s(x_t)^\ell\big]_y\, e^{(\bar\sigma_t - \bar\sigma_s) Q}(x_t^\ell, y)$, the *exact* denoising step of one token.
#
# On our tiny space we need not sample: each step is a Markov kernel on all noisy sequences, the product over
# positions of the per-position probabilities, so we can push the whole distribution through the sampler and
# measure its exact distance to the data, $\mathrm{KL}(p_0 \,\|\, p_{\text{sampler}})$. The function below
# builds those probabilities from the same graph methods as `euler_step` and `tweedie_step`.

# %%
from dlcourse.discrete.schedules import GeometricSchedule, LogLinearSchedule


def step_kernel(graph, schedule, states, k, steps, method):
    """The sampler's step k -> k - 1 as a matrix [x_t, x_s] over all noisy sequences, with the exact score."""
    t = torch.full((len(states),), k / steps, dtype=torch.float64)
    sigma, sb_t = schedule(t)
    sb_s = schedule.sigma_bar(t - 1 / steps) if k > 1 else torch.zeros_like(sb_t)
    score = dist.concrete_score(graph, float(sb_t[0]), states)  # (M, L, S)
    if method == "euler":
        stay = torch.nn.functional.one_hot(states, graph.num_states).double()
        probs = stay + graph.reverse_rate(states, score, sigma) / steps  # δ + Δt Q̄
    else:
        probs = graph.staggered_score(score, sb_t - sb_s) * graph.transp_transition(states, sb_t - sb_s)
    probs = probs.clamp_min(0)
    if k == 1 and graph.mask_id is not None:
        probs[..., graph.mask_id] = 0.0  # the last step leaves no mask
    probs = probs / probs.sum(-1, keepdim=True)  # (M, L, S)
    return probs[:, torch.arange(dist.L)[None, :], states].prod(-1)  # [x_t, x_s] = Π_ℓ p(x_s^ℓ | x_t)


def sampler_kl(graph, schedule, steps, method):
    states = torch.tensor(list(itertools.product(range(graph.num_states), repeat=dist.L)))
    if graph.mask_id is not None:  # start from the base distribution: all masks, or uniform tokens
        p = (states == graph.mask_id).all(-1).double()
    else:
        p = torch.full((len(states),), 1 / len(states), dtype=torch.float64)
    for k in range(steps, 0, -1):
        p = p @ step_kernel(graph, schedule, states, k, steps, method)
    q = p[(states < dist.V).all(-1)]  # the clean sequences, in the order of dist.seqs
    return float((dist.probs * torch.log(dist.probs / q)).sum())


setups = {"absorbing, log-linear": (absorbing, LogLinearSchedule(1e-3)),
          "uniform, geometric": (uniform, GeometricSchedule(1e-4, 20.0))}
step_counts = [1, 2, 4, 8, 16, 32, 64, 128]
kl = {(name, m): [sampler_kl(*setup, n, m) for n in step_counts] for name, setup in setups.items()
      for m in ("euler", "tweedie")}
for (name, m), row in kl.items():
    print(f"{name:22} {m:8}" + " ".join(f"{v:7.4f}" for v in row))
one_hot = torch.nn.functional.one_hot(dist.seqs, dist.V).double()
marginals = (dist.probs[:, None, None] * one_hot).sum(0)  # (L, V): p(x^ℓ)
independent = marginals[torch.arange(dist.L), dist.seqs].prod(-1)  # Π_ℓ p(x^ℓ)
print(f"KL(p ‖ product of its marginals) = {float((dist.probs * torch.log(dist.probs / independent)).sum()):.4f}")

# %%
fig, ax = plt.subplots(figsize=(5.5, 3.4), dpi=80)
for (name, m), row in kl.items():
    ls = "-" if m == "tweedie" else ":"
    ax.loglog(step_counts, row, ls, marker="o" if m == "tweedie" else "x", label=f"{name}, {m}")
ax.set(xlabel="sampling steps T", ylabel="KL(data ‖ sampler), nats", title="exact score, 81 sequences")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# What the numbers say:
#
# - With one step, the absorbing sampler draws every position independently from its marginal: its error is
#   exactly the $\mathrm{KL}$ from $p$ to the product of its marginals (the last line above), whatever the score.
#   Tweedie's single step on the uniform graph lands in the same place: one step cannot create correlations.
# - On the absorbing graph with the log-linear schedule Euler and Tweedie coincide *exactly*: there
#   $e^{\bar\sigma_t - \bar\sigma_s} - 1 = \sigma(t)\,(t - s)$, so the two step formulas are one distribution
#   (the course's text benchmark finds identical samples from the shipped model).
# - The error falls steadily with $T$, by a factor of about 3 to 4 per doubling once $T \ge 8$. On the uniform
#   graph Tweedie is better with one or two steps, but Euler catches up and, on this tiny case, ends lower:
#   "exact for one token" is not "best for a sequence", since neither step sees the coupling between positions.
#
# A check that the kernels above are what the package's sampler does: draw from `sedd_sample` with the exact
# score (`ExactScore`) and compare the empirical frequencies with the pushed-forward distribution.

# %% tags=["nbval-ignore-output"]
from dlcourse.discrete.markov import ExactScore
from dlcourse.discrete.samplers import sedd_sample

graph, schedule = setups["uniform, geometric"]
out = sedd_sample(ExactScore(dist, graph), schedule, graph, 20000, dist.L, 4, method="euler",
                  generator=torch.Generator().manual_seed(0), device="cpu")
freq = torch.bincount(dist.index(out.tokens), minlength=len(dist.probs)).double() / len(out.tokens)
states_u = torch.tensor(list(itertools.product(range(3), repeat=dist.L)))
p = torch.full((81,), 1 / 81, dtype=torch.float64)
for k in range(4, 0, -1):
    p = p @ step_kernel(graph, schedule, states_u, k, 4, "euler")
print(f"total variation between 20000 draws of sedd_sample and the exact kernel: {0.5 * (freq - p).abs().sum():.3f}"
      f"  (sampling noise alone: about {0.5 * (2 * p * (1 - p) / math.pi / 20000).sqrt().sum():.3f})")

# %% [markdown]
# ## The shipped model: absorbing `sedd_prose`
#
# `sedd_prose` is SEDD on the absorbing graph (log-linear schedule), a 0.8M-parameter time-conditioned transformer
# trained for 4500 steps on one CPU thread on 10 million characters of English prose. Its held-out bound, beside
# its two siblings (from the manifest):

# %%
from dlcourse.checkpoint import read_manifest

manifest = read_manifest()
for name in ("ar_prose", "mdlm_prose", "sedd_prose"):
    kind = "exact" if name == "ar_prose" else "upper bound"
    print(f"{name:11} {manifest[name]['metrics']['eval_bpc']:.3f} bits/char ({kind})")

# %% [markdown]
# At this tiny budget both diffusion bounds sit far above the AR model's exact value (lecture 10 weighs what the
# editor buys for that), and SEDD's is a little below MDLM's; it also has more parameters (0.8M against 0.6M, the
# time conditioning), so this is no verdict on the two losses.
#
# Which graph is better? The course's text benchmark (`dlcourse`'s repository, part `markov`) trains SEDD on both graphs, beside MDLM and the
# AR model, with the same small transformer and budget on text from a character Markov chain whose entropy is known
# (1.566 bits/char on its 32-character windows). On one CPU thread, 1200 steps each, it measured: AR 1.570,
# MDLM 1.583, SEDD absorbing 1.589, SEDD uniform 1.625 bits/char: the ordering SEDD and MDLM report on text8,
# where masking beats uniform noise and the AR model beats both. With a perfect score both graphs give exact
# samplers as $T \to \infty$ (above); the uniform graph loses on *learning*: its network must get the ratios right at
# every position, including the ones that are already right, while the absorbing network only answers at the masks.
#
# What did it learn? At a masked position, the true ratios times $e^{\bar\sigma} - 1$ are the conditional
# distribution of the hidden character (the identity checked on the tiny case above), so they sum to 1 over $y$.
# Nothing in SEDD's network enforces that: it outputs $N$ unconstrained log-ratios per position. How close the sums
# come to 1 is a direct look at how well it learned the ratios (here at $t = 0.5$, with three characters hidden):

# %% tags=["nbval-ignore-output"]
from dlcourse.data.text import ALPHABET, decode, encode
from dlcourse import load
from dlcourse.discrete.family import generate
from dlcourse.discrete.losses import sedd_log_score

sedd, cfg = load("sedd_prose")
text_graph = Absorbing(27)  # 27 characters and the mask, id 27
text = "the q_ick brown fox jumps over the l_zy dog and th_n it ran away"
x = torch.tensor([[text_graph.mask_id if c == "_" else encode(c)[0] for c in text]])  # (1, 64)
sb = LogLinearSchedule(1e-3).sigma_bar(torch.tensor([0.5]))
with torch.no_grad():
    log_s = sedd_log_score(text_graph, sedd(x, sb), x, sb)[0, :, :27]  # (L, 27): log s(x)_y at each position
cond = log_s.exp() * torch.expm1(sb)  # ≈ p_0(hidden character = y | visible text)
for pos in (x[0] == text_graph.mask_id).nonzero()[:, 0].tolist():
    top = cond[pos].topk(3)
    guesses = ", ".join(f"{ALPHABET[int(i)]!r} {float(v):.2f}" for v, i in zip(top.values, top.indices))
    print(f"{text[max(0, pos - 6):pos + 6]!r:16} sum over y = {float(cond[pos].sum()):.3f}   top 3: {guesses}")

# %% [markdown]
# Two sums within 6% of 1 and one 38% over it; "u" after "q" (0.75) and "e" in "th_n", but "lazy" not yet: 4500
# CPU steps teach letter statistics and the commonest spellings. Samples of `sedd_prose`, with the Tweedie sampler
# at two step counts (random; yours will differ):

# %% tags=["nbval-ignore-output"]
for steps in (8, 64):
    out = generate(sedd, cfg, 2, 64, steps=steps, generator=torch.Generator().manual_seed(0))
    for text in decode(out.tokens):
        print(f"{steps:2d} steps: {text}")

# %% [markdown]
# ## To think about
#
# 1. Write the squared-error loss $(s - r)^2$ as a Bregman divergence. Does it also have a denoising form with the
#    same minimiser? What goes wrong when the network's $s$ must stay positive and $r$ spans $10^{-3}$ to $10^{3}$?
# 2. At the truth, $\mathcal L_{DSE} > 0$. Show that the gap is $\mathbb E\, w\,[\mathbb E K(r_{\text{cond}}) -
#    K(\mathbb E\, r_{\text{cond}})]$. When would it be zero?
# 3. The one-step sampler's error was exactly the total correlation of $p$. For text, which carries a lot of it
#    (words!), what does that say about sampling with very few steps, and about how a step count should be chosen?
# 4. On the uniform graph a sampler can change a character it wrote earlier. With a *perfect* score, does that
#    help? With an imperfect one?
