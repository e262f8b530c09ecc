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
# # 08 · Masked diffusion: a language model that writes like an editor
#
# An autoregressive language model is a *typewriter*: it writes one character after another, left to right, and
# never goes back. A diffusion language model is an *editor*: it starts from a page of blanks and fills in
# characters everywhere at once, a few more at every pass, each pass looking at the whole page. This lecture builds
# the simplest and, today, strongest such model, **masked diffusion** (MDLM; Sahoo et al. 2024, building on D3PM's
# absorbing state, Austin et al. 2021), and checks its training loss against an exact answer.
#
# Why not add Gaussian noise, as we did for images? Characters are not points on a line: "b" is not between "a"
# and "c" in any useful sense, and a little Gaussian noise on a one-hot vector is not a plausible typo. We need a
# noise process that lives on the tokens themselves. The simplest: each token, independently, is replaced by a
# special **mask** symbol at some moment, and stays masked.

# %% [markdown]
# ## Masking as a continuous-time Markov chain
#
# Per token, the forward process is a Markov chain in continuous time with rate matrix $Q$ (columns = from-states):
# a token jumps to the mask at rate 1, the mask never leaves. With a noise schedule $\sigma(t)$ and its integral
# $\bar\sigma(t) = \int_0^t \sigma$, the chain's transition matrix from time 0 is $\exp(\bar\sigma(t) Q)$ (SEDD,
# Lou et al. 2024, eq. (1)), so a token is still clean at time $t$ with probability
# $\alpha_t = e^{-\bar\sigma(t)}$. Here is $Q$ for a 3-token vocabulary, and the check that the closed form the
# package uses is that matrix exponential:

# %%
import torch

from dlcourse.discrete.graphs import Absorbing

graph = Absorbing(3)  # tokens 0, 1, 2 and the mask, id 3
Q = graph.rate_matrix()
print(Q)
sigma_bar = torch.tensor([0.7], dtype=torch.float64)
exact = torch.linalg.matrix_exp(sigma_bar * Q)  # [y, x] = p(x_t = y | x_0 = x)
closed = graph.transition(torch.arange(4).reshape(1, -1), sigma_bar)[0].T
print(f"max |closed form - matrix exponential| = {(closed - exact).abs().max().item():.1e}")
print(f"P(still clean) = {exact[0, 0].item():.4f} = exp(-0.7) = {torch.exp(-sigma_bar).item():.4f}")

# %% [markdown]
# We use the **log-linear** schedule, $\alpha_t = 1 - (1 - \varepsilon) t$: at time $t$ a fraction $t$ of the
# characters is masked. Here is the forward process on a sentence (masks are "_"):

# %% tags=["nbval-ignore-output"]
from dlcourse.data.text import decode, encode
from dlcourse.discrete.schedules import LogLinearSchedule

schedule = LogLinearSchedule(eps=1e-3)
text_graph = Absorbing(27)  # 27 characters, mask id 27
x0 = encode("it is a truth universally acknowledged that a single man in possession", return_tensor=True)[None]
gen = torch.Generator().manual_seed(0)
for t in (0.1, 0.3, 0.5, 0.7, 0.9):
    xt = text_graph.sample_transition(x0, schedule.sigma_bar(torch.tensor([t])), gen)
    print(f"t = {t:.1f}  {decode(xt[0])}")

# %% [markdown]
# ## The loss: a weighted cross-entropy that bounds -log p(x)
#
# The network $x_\theta(z_t)$ sees a partly masked sequence and predicts, at every masked position, a distribution
# over the clean character. MDLM's "SUBS" parameterisation fixes two things by construction: it never predicts
# the mask, and it copies every unmasked character through. With those, the continuous-time negative ELBO is
# (Sahoo et al. 2024, eqs. (10)-(11))
#
# $$ -\log p_\theta(x) \;\le\; \int_0^1 \frac{-\alpha_t'}{1-\alpha_t}\;
#    \mathbb E_{z_t \sim q(\cdot\mid x)} \sum_{\ell:\, z_t^\ell = \text{mask}} -\log x_\theta^\ell(z_t)_{x^\ell}\, dt, $$
#
# which for the log-linear schedule weighs the cross-entropy of the masked positions by $1/t$. Training samples
# one $t$ per sequence, masks, and takes a gradient step on this integrand (`dlcourse.discrete.losses.mdlm_loss`).
#
# How tight is the bound? If the network is *perfect*, i.e. $x_\theta(z)$ is the true conditional distribution of
# each masked character given the visible ones, the bound is an **equality**: every order in which the masks can
# be removed is a chain rule for $p(x)$. We can check this exactly on a space small enough to enumerate: all
# $3^4 = 81$ sequences of 4 characters over 3 symbols with random probabilities. The integral over masks is a sum
# over the $2^4$ masked copies of $x$; the integral over $t$ is a polynomial, which Gauss-Legendre integrates exactly.

# %%
import itertools
import math

import numpy as np

from dlcourse.discrete.losses import mdlm_nelbo_integrand, subs_log_probs
from dlcourse.discrete.markov import TinyDistribution

dist = TinyDistribution.random(num_symbols=3, length=4, seed=1)
tiny_graph, exact_schedule = Absorbing(3), LogLinearSchedule(eps=0.0)


def continuous_nelbo(x):
    """∫₀¹ E_{z_t ~ q(· | x)}[MDLM integrand] dt with the exact denoiser, by enumeration and Gauss-Legendre."""
    masks = torch.tensor(list(itertools.product([0, 1], repeat=len(x))), dtype=torch.bool)  # (16, L)
    z = torch.where(masks, torch.full_like(x, tiny_graph.mask_id), x)  # every masked copy of x
    k = masks.sum(-1)  # masks in each copy
    log_probs = subs_log_probs(torch.log(dist.denoiser(z, tiny_graph.mask_id)), z, tiny_graph.mask_id)
    total = 0.0
    nodes, weights = np.polynomial.legendre.leggauss(4)
    for u, w in zip(nodes, weights):
        t = torch.full((len(z),), (u + 1) / 2, dtype=torch.float64)
        sigma, sigma_bar = exact_schedule(t)
        q = t ** k * (1 - t) ** (len(x) - k)  # probability of this mask pattern at time t
        total += w / 2 * float((q * mdlm_nelbo_integrand(log_probs, x.expand_as(z), z, sigma, sigma_bar, 3)).sum())
    return total


for i in (0, 7, 40):
    x = dist.seqs[i]
    print(f"x = {x.tolist()}:  NELBO = {continuous_nelbo(x):.10f}   -log p(x) = {-math.log(dist.probs[i]):.10f}")

# %% [markdown]
# Equal to ten decimals. A trained network is not perfect, so its bound sits above $-\log p$; the gap is what
# training closes. Divided by the length and by $\log 2$ the bound is an upper bound on **bits per character**,
# the number the papers report on text8 (MDLM: about 1.4; an autoregressive transformer of the same size: 1.23).

# %% [markdown]
# ## Sampling: unmask a few characters at a time
#
# To generate, run the chain backwards from all-mask at $t = 1$ to $t = 0$ on a grid of $T$ steps. Between
# $t$ and $s < t$, each masked position stays masked with probability $(1-\alpha_s)/(1-\alpha_t)$ and otherwise
# takes a character drawn from the network's prediction; unmasked positions never change (Sahoo et al. 2024,
# eq. (7)). The whole sampler, written out:

# %%
from dlcourse.discrete.samplers import mdlm_sample, sample_categorical


@torch.no_grad()
def ancestral_sampler(model, n, length, steps, generator):
    """MDLM ancestral sampling, the readable version of `dlcourse.discrete.samplers.mdlm_sample` (without its cache)."""
    mask = text_graph.mask_id
    x = torch.full((n, length), mask)  # (B, L): all masks
    for k in range(steps, 0, -1):
        t, s = torch.full((n,), k / steps), torch.full((n,), (k - 1) / steps)
        a_t, a_s = schedule.alpha(t)[:, None, None], schedule.alpha(s)[:, None, None]  # (B, 1, 1)
        p_x0 = subs_log_probs(model(x, schedule.sigma_bar(t)), x, mask).exp()  # (B, L, 27)
        probs = torch.cat([p_x0 * ((a_s - a_t) / (1 - a_t)), ((1 - a_s) / (1 - a_t)).expand(n, length, 1)], -1)
        draw = sample_categorical(probs, generator)  # (B, L): a character, or 27 = stay masked
        x = torch.where(x == mask, draw, x)  # only masked positions move
    return x


# %% [markdown]
# Let us run it with the shipped MDLM, a 0.6M-parameter transformer trained for only 4500 steps on one CPU thread
# on 10 million characters of public-domain English prose (`dlcourse train mdlm --preset cpu`; the exact command
# and its held-out bits per character are in the manifest). That is a tiny budget: its samples have English
# spacing and letter statistics but few real words. The papers' models (`--preset text8`, 85M parameters, a GPU
# for days) are what reach 1.4 bits per character. The package's sampler gives the same samples from the same
# random numbers:

# %%
from dlcourse.checkpoint import read_manifest
from dlcourse import load

model, cfg = load("mdlm_prose")
entry = read_manifest()["mdlm_prose"]
print(f"mdlm_prose: {entry['size'] / 1e6:.1f} MB, held-out bound {entry['metrics']['eval_bpc']:.3f} bits/char")
mine = ancestral_sampler(model, 2, 64, 32, torch.Generator().manual_seed(0))
package = mdlm_sample(model, schedule, text_graph, 2, 64, 32, generator=torch.Generator().manual_seed(0),
                      cache=False).tokens
print("same samples:", torch.equal(mine, package))

# %% [markdown]
# ## Watch a sample emerge
#
# Press ▶ (or drag the slider): each frame is one step of the sampler with 64 steps; the characters revealed in
# that step are red. Notice that the order is not left to right: characters appear all over the page, and each
# new one is drawn knowing every character already revealed, on both sides.

# %% tags=["nbval-ignore-output"]
from dlcourse.viz import text_frames
from dlcourse.viz import FramePlayer

out = mdlm_sample(model, schedule, text_graph, 2, 64, 64, generator=torch.Generator().manual_seed(1), record=True)
labels = [f"step {k:2d} / 64, masks left: {int((x == 27).sum())}" for k, x in enumerate(out.trajectory)]
FramePlayer(text_frames(out.trajectory, rows=2), labels=labels, interval_ms=150)

# %% [markdown]
# Because the network ignores time (MDLM's choice), a step in which nothing was unmasked needs no new network
# call: the sampler caches the last output. With 1000 steps and 64 characters it calls the network at most 65
# times:

# %% tags=["nbval-ignore-output"]
for steps in (4, 16, 64, 1000):
    out = mdlm_sample(model, schedule, text_graph, 1, 64, steps, generator=torch.Generator().manual_seed(2))
    print(f"{steps:4d} steps, {out.nfe:3d} network calls: {decode(out.tokens[0])}")

# %% [markdown]
# Few steps unmask many characters at once, each drawn independently given the same context, so neighbours can
# disagree (two halves of two different words); more steps approach the model's own distribution. That is the editor's
# trade-off: quality against the number of passes. Lecture 10 measures it against the typewriter.

# %% [markdown]
# ## Infilling: what a typewriter cannot do
#
# Any characters can be held fixed: a prefix, a suffix, letters in the middle. The sampler writes them in at the
# start and SUBS never changes an unmasked character, so they survive; the model fills in the rest *consistently
# with both sides*. An autoregressive model could only continue the prefix.

# %% tags=["nbval-ignore-output"]
from dlcourse.discrete.samplers import make_condition

cond = make_condition(64, prefix="she said that ", suffix=" and then she left the room", batch=3)
out = mdlm_sample(model, schedule, text_graph, 3, 64, 64, cond, torch.Generator().manual_seed(3))
for text in decode(out.tokens):
    print(text)

# %% [markdown]
# Try your own: write a sentence with "_" where the model should fill in (lower-case letters and spaces only).

# %% tags=["nbval-ignore-output"]
import ipywidgets as widgets


from dlcourse.viz import LiveWidget


def infill(template, steps=32, seed=0):
    """Fill the "_" of ``template`` with the MDLM; every other character is kept."""
    given = {i: ch for i, ch in enumerate(template) if ch != "_"}
    c = make_condition(len(template), positions=given)
    return decode(mdlm_sample(model, schedule, text_graph, 1, len(template), steps, c,
                              torch.Generator().manual_seed(seed)).tokens[0])


box = widgets.Text(value="the ______ of the _____ was ____ and the ____ ______", layout={"width": "520px"})
button, result = widgets.Button(description="fill in", layout={"width": "120px"}), widgets.Output()
first = infill(box.value)
print(first)
live = LiveWidget(widgets.VBox([widgets.HBox([box, button]), result]), f"(run the notebook to use the infilling box) {first}")


def on_click(_):
    with live.busy(), result:
        result.clear_output()
        try:
            print(infill(box.value, seed=int(torch.randint(1000, ()))))
        except Exception as exc:  # a character outside the alphabet: say which
            print(f"error: {exc}")


button.on_click(on_click)
live

# %% [markdown]
# ## To think about
#
# 1. The bound is exact for a perfect denoiser whatever the schedule $\alpha_t$. Why, then, does the schedule
#    matter at all for training? (Hint: the variance of the one-sample estimate.)
# 2. With $T = 1$ step the sampler draws every character independently from $p(x^\ell)$. What is the smallest
#    $T$ that can be exact for a distribution over $L$ characters, and why does the cache make large $T$ cheap?
# 3. The mask is one noise process among many: SEDD's *uniform* graph replaces a character by a random one
#    instead. Which of the two lets a sampler fix a mistake it made earlier?
