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
# # 07 · From images to text: noise on tokens, the concrete score and score entropy
#
# For images we learned the score $\nabla_x \log p(x)$ by denoising Gaussian noise, then followed it from noise to
# data. Text is a sequence of *tokens* (here: 27 characters, space and a-z). This lecture rebuilds the same three
# pieces for tokens, following SEDD (Lou, Meng & Ermon 2024, ICML best paper):
#
# 1. a forward noise process on tokens (instead of adding Gaussian noise),
# 2. the score of a discrete distribution (a gradient does not exist, so: a ratio),
# 3. a loss that learns it from noisy data (score entropy, the discrete denoising score matching).

# %% [markdown]
# ## Why Gaussian noise does not fit tokens
#
# Write a character as a one-hot vector in $\mathbb R^{27}$ and add Gaussian noise. Reading the noisy vector back
# (the largest coordinate) gives the original character until the noise is large, then *any* character, all
# equally likely: there is no notion of "a nearby character" for the noise to move to, so nothing in between
# is meaningful. And the score $\nabla_x \log p$ of a distribution that lives on 27 corners of a cube is not
# defined at all. We need noise that moves between tokens.

# %%
import torch

from dlcourse.data.text import decode, encode

x = encode("gaussian noise on characters", return_tensor=True)
onehot = torch.nn.functional.one_hot(x, 27).float()  # (L, 27)
gen = torch.Generator().manual_seed(0)
for sigma in (0.2, 0.5, 1.0, 3.0):
    noisy = onehot + sigma * torch.randn(onehot.shape, generator=gen)
    read = noisy.argmax(-1)
    print(f"sigma = {sigma:3.1f}: {decode(read)!r:32}  {(read == x).float().mean():.0%} of characters intact")

# %% [markdown]
# ## Noise as a continuous-time Markov chain
#
# Instead, let each token jump between states at random times: a continuous-time Markov chain with rate matrix
# $Q_t = \sigma(t) Q$ (SEDD, eq. (1)), whose transition matrix from time 0 is $\exp(\bar\sigma(t) Q)$ with
# $\bar\sigma(t) = \int_0^t \sigma$. Two choices of $Q$ (both from D3PM, Austin et al. 2021):
#
# - **absorbing**: a token jumps to an extra **mask** state at rate 1 and stays there: noise = blanks;
# - **uniform**: a token jumps to a uniformly random token: noise = typos.
#
# The same sentence under both, with the same amount of noise ($\bar\sigma = 0.5$, so a token is untouched with
# probability $e^{-0.5} = 0.61$):

# %% tags=["nbval-ignore-output"]
from dlcourse.discrete.graphs import Absorbing, Uniform

x0 = encode("the forward process corrupts every character on its own", return_tensor=True)[None]  # (1, L)
gen = torch.Generator().manual_seed(1)
for graph in (Absorbing(27), Uniform(27)):
    xt = graph.sample_transition(x0, torch.tensor([0.5]), gen)
    print(f"{type(graph).__name__:9}  {decode(xt[0])}")

# %% [markdown]
# ## The concrete score and the reverse process
#
# A continuous-time Markov chain has an exact time reversal (Kelly 1979; SEDD eq. (3)): the reverse chain jumps
# from $x$ to $y$ at rate
#
# $$ \bar Q_t(y, x) = \frac{p_t(y)}{p_t(x)}\, Q_t(x, y). $$
#
# Everything about the data enters through the ratios $p_t(y)/p_t(x)$ between sequences that differ in one
# token: the **concrete score** (Meng et al. 2022), the discrete cousin of $\nabla \log p$. Like the score, it does
# not depend on the normalising constant of $p_t$. Let us check the reversal on one token with three values:
# with the true ratios, running the reverse chain from $p_t$ for the same time gives back $p_0$ exactly.

# %%
graph = Uniform(3)
Q = graph.rate_matrix()  # (3, 3), columns = from-states
p0 = torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64)
pt = torch.linalg.matrix_exp(1.0 * Q) @ p0  # forward for σ̄ = 1
ratio = pt[None, :] / pt[:, None]  # [x, y] = p_t(y) / p_t(x)
reverse = graph.reverse_rate(torch.arange(3)[:, None], ratio[:, None, :], torch.ones(3, dtype=torch.float64))[:, 0]
print("p_t:", [round(v, 4) for v in pt.tolist()])
print("reverse rates [x, y]:\n", reverse.numpy().round(4))
# integrate the reverse chain for one unit of time: its rates change with t, so take small steps, each with the
# true ratios of p_t at the step's midpoint (exp of the rate matrix per step: second-order accurate)
p, n = pt.clone(), 200
for k in range(n):
    q = torch.linalg.matrix_exp((1 - (k + 0.5) / n) * Q) @ p0  # the true p_t at the midpoint
    rates = graph.reverse_rate(torch.arange(3)[:, None], (q[None, :] / q[:, None])[:, None, :],
                               torch.ones(3, dtype=torch.float64))[:, 0]  # [x, y] = Q̄(y, x)
    p = torch.linalg.matrix_exp(rates.T / n) @ p
print("reverse from p_t:", [round(v, 4) for v in p.tolist()], "  p_0:", p0.tolist())

# %% [markdown]
# ## Learning the ratios: score entropy
#
# A network $s_\theta(x)_y \approx p_t(y)/p_t(x)$ is trained with **score entropy** (SEDD, Definition 3.1):
#
# $$ \mathcal L_{SE} = \mathbb E_{x \sim p} \sum_{y \neq x} w_{xy}\Big( s_\theta(x)_y - \frac{p(y)}{p(x)} \log s_\theta(x)_y
#    + K\big(\tfrac{p(y)}{p(x)}\big)\Big), \qquad K(a) = a(\log a - 1). $$
#
# Each term is the function $s \mapsto s - r \log s + K(r)$, which is $\ge 0$ and zero exactly at $s = r$ (and,
# unlike a squared error, keeps $s$ positive). Like denoising score matching, it has a **denoising** form that
# needs only $p_{t|0}$, the forward transition, in place of the unknown $p_t$ (SEDD Theorem 3.4); and integrated
# over time with $w_{xy} = Q_t(x, y)$ it bounds $-\log p_0(x)$ (Theorem 3.6). The tests of `dlcourse` check both
# facts exactly on small spaces.

# %%
import matplotlib.pyplot as plt

from dlcourse.discrete.losses import score_entropy

s = torch.linspace(0.02, 3, 300, dtype=torch.float64)
fig, ax = plt.subplots(figsize=(5, 3), dpi=80)
for r in (0.3, 1.0, 2.0):
    # one pair (x, y) with weight 1: score entropy as a function of the estimate s of the ratio r
    vals = score_entropy(torch.stack([torch.ones_like(s), s], -1), torch.tensor([1.0, r], dtype=torch.float64),
                         torch.tensor([0.0, 1.0], dtype=torch.float64))
    ax.plot(s, vals, label=f"true ratio r = {r}")
    print(f"r = {r}: the minimum, {vals.min().item():.3f}, is at s = {s[vals.argmin()].item():.2f}")
ax.set(xlabel="estimate s", ylabel="score entropy", ylim=(0, 2))
ax.legend()
plt.show()

# %% [markdown]
# ## A trained model
#
# The shipped `sedd_prose` learned the concrete score on the absorbing graph from 10 million characters of
# English prose (a 0.8M-parameter transformer, 4500 steps on one CPU thread; tiny, so expect English-looking nonsense). SEDD's
# **Tweedie τ-leaping** sampler (Theorem 4.2) goes from all-mask to text in any number of steps:

# %% tags=["nbval-ignore-output"]
from dlcourse import load
from dlcourse.discrete.family import generate

sedd, cfg = load("sedd_prose")
out = generate(sedd, cfg, 3, 64, steps=64, generator=torch.Generator().manual_seed(0))
for text in decode(out.tokens):
    print(text)

# %% [markdown]
# ## To think about
#
# 1. For the absorbing graph the only jumps are token → mask, so the reverse process only needs the ratios at a
#    masked position. Show that they are $p_0(\text{token} \mid \text{visible tokens}) / (e^{\bar\sigma} - 1)$:
#    learning them is masked-language modelling (lecture 08).
# 2. Why must the network output $\log s$, not $s$, in practice?
# 3. Under the uniform graph every position is always some character. What does a sampler gain, and what does the
#    model have to learn in addition, compared with masking?
