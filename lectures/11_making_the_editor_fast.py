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
# # 11 · Making the editor fast: the curse of parallel decoding, confidence, blocks and a cache
#
# Lecture 10 raced the editor (a diffusion LM that refines every position at once) against the typewriter (an
# autoregressive LM with a KV cache) and the typewriter won on every axis. The field has since found how the editor
# can win, and it takes two ideas:
#
# 1. **Decode in parallel only where tokens are nearly independent given what is already written.** Unmasking
#    two dependent characters in the same step draws each from its own marginal: their pair comes from the
#    product of marginals, not the joint. *Confidence decoding* (Fast-dLLM, Wu et al. 2025; LLaDA's low-confidence
#    remasking, Nie et al. 2025) unmasks only positions the model is sure of.
# 2. **Reuse computation across steps, as the typewriter reuses its KV cache.** *Block diffusion* (BD3-LM,
#    Arriola et al. 2025) is autoregressive over blocks of b tokens and diffusion within a block: the finished
#    blocks sit in a KV cache, and each step runs the network on b tokens only.
#
# To judge a sampler honestly we need a language whose likelihood we can compute exactly, so that a sampler's
# quality is the exact NLL of its samples under the true source, not the opinion of another model.

# %% [markdown]
# ## An exact test bed
#
# `TopicLanguage` is a hidden Markov model over the course's 27 characters. A hidden *topic* persists from word to
# word (it changes with probability ρ = 0.1 after a word); each topic has its own 16 words; every character passes
# a typo channel that keeps it with probability 0.99. The forward algorithm gives log p(x) of any string, and the
# forward-backward algorithm gives the exact *denoiser*, p(x_i | the visible characters): the network a perfectly
# trained masked-diffusion model would be.

# %%
import math

import torch

from dlcourse.data.text import MASK_ID, decode
from dlcourse.discrete.testbed import ExactTopicDenoiser, TopicLanguage, distinct_ngrams

lang = TopicLanguage.random(seed=0)
L = 64
for k in range(2):
    print(f"topic {k}: {' '.join(lang.vocabularies[k][:8])} ...")
real = lang.sample(256, L, torch.Generator().manual_seed(1))
for text in decode(real[:3]):
    print(repr(text))
floor, floor_se = lang.window_nll(L)
print(f"entropy rate without typos {lang.entropy_rate_without_typos():.3f}; with them ≈ {lang.entropy_rate()[0]:.3f} "
      f"bits/char")
print(f"a perfect sampler of {L}-character windows: NLL {floor:.3f} ± {floor_se:.3f} bits/char (the floor)")

# %% [markdown]
# A broken word is expensive: its wrong character must be explained by the typo channel, about
# log₂(27 / 0.01) ≈ 11.4 bits.

# %%
good = real[:1].clone()
bad = good.clone()
bad[0, 5] = (bad[0, 5] % 26) + 1  # one character replaced by another letter
print(f"NLL {lang.nll(good):.3f} -> {lang.nll(bad):.3f} bits/char: {L * (lang.nll(bad) - lang.nll(good)):.1f} "
      f"bits for one character")

# %% [markdown]
# ## The curse of parallel decoding, exactly
#
# With the exact denoiser every error is the sampler's own. Unmask k characters per network call (`confidence_sample`
# by count): with k = 1 the sampler follows the chain rule in some order and its samples are exact; with larger k
# the k characters of a step are drawn independently. The ancestral sampler of lecture 08 unmasks random positions
# at random times instead; with the same number of calls it unmasks about as many per call.

# %%
from dlcourse.discrete.graphs import Absorbing
from dlcourse.discrete.samplers import confidence_sample, mdlm_sample
from dlcourse.discrete.schedules import LogLinearSchedule

exact = ExactTopicDenoiser(lang, MASK_ID)
graph, schedule = Absorbing(27), LogLinearSchedule()
rows = []
for per_call in (1, 2, 4, 8, 64):
    steps = L // per_call
    conf = confidence_sample(exact, schedule, graph, 32, L, steps=steps, device="cpu",
                             generator=torch.Generator().manual_seed(2)).tokens
    anc = mdlm_sample(exact, schedule, graph, 32, L, steps, device="cpu", generator=torch.Generator().manual_seed(2)).tokens
    rows.append((per_call, lang.nll(conf), lang.nll(anc)))
    print(f"{per_call:2d} characters per call ({steps:2d} calls): exact NLL {rows[-1][1]:.3f} by confidence, "
          f"{rows[-1][2]:.3f} ancestral (floor {floor:.3f})")

# %% [markdown]
# Two lessons. Parallel decoding costs quality fast: at 4 characters per call the samples are more than twice as
# unlikely per character as real text. And *by count* the most confident positions are not the independent ones:
# they cluster inside the same half-revealed word, so confidence by count does worse than random positions.
# Confidence by **threshold** asks a better question: unmask every position whose prediction is at least this
# sure, however many that is, and at least one.

# %%
from dlcourse.discrete.bd3 import block_sample_exact


def per_sample(block, threshold, n=48):
    """Mean characters per call of a single sample (a call counts for a sample if it revealed some of its
    characters, so this is what batch 1 would take) and the exact NLL, with the exact denoiser."""
    out = block_sample_exact(exact, MASK_ID, n, L, block, threshold, generator=torch.Generator().manual_seed(4))
    traj = torch.stack(out.trajectory)  # (calls + 1, n, L)
    calls = (traj[1:] != traj[:-1]).any(-1).sum(0).double()  # (n,) the calls each sample used
    return L / float(calls.mean()), lang.nll(out.tokens)


curve = {}
for block in (L, 16):
    curve[block] = [(thr, *per_sample(block, thr)) for thr in (0.95, 0.9, 0.7)]
    name = "whole sequence (MDLM)" if block == L else f"blocks of {block} (BD3)"
    print(name + ":  " + "   ".join(f"thr {t}: {c:.2f} chars/call, NLL {n:.3f}" for t, c, n in curve[block]))

# %% [markdown]
# Even with a perfect model the honest answer is about one and a half characters per call at a 10% quality loss
# here: a character is nearly independent of the others only once its word is pinned down, and a word's identity
# (4 bits) is spent on its first one or two letters. Blocks help the model see the boundaries: decoding left to
# right block by block, the start of a block continues a word it can already see.

# %%
import matplotlib.pyplot as plt

from dlcourse.viz.player import hall_style

hall_style()
fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=80, layout="constrained")
ax.plot([r[0] for r in rows], [r[1] for r in rows], "o-", label="confidence, by count")
ax.plot([r[0] for r in rows], [r[2] for r in rows], "s-", label="ancestral (random positions)")
for block, pts in curve.items():
    ax.plot([p[1] for p in pts], [p[2] for p in pts], "^--", label=f"threshold, {'whole' if block == L else block}")
ax.axhline(floor, color="k", lw=1)
ax.axhline(1.1 * floor, color="k", lw=1, ls=":")
ax.text(40, floor * 1.02, "the floor (exact samples)", fontsize=11)
ax.text(40, floor * 1.12, "+10%", fontsize=11)
ax.set_xscale("log", base=2)
ax.set_xlabel("characters unmasked per network call")
ax.set_ylabel("exact NLL of the samples, bits/char")
ax.set_title("Parallel decoding with a perfect model")
ax.legend(fontsize=10)
plt.show()

# %% [markdown]
# ## Block diffusion and its KV cache
#
# BD3-LM trains all blocks at once: the input is the noised sequence x_t followed by the clean x_0 (2L tokens),
# under one attention mask. A noised token sees its own block (diffusion inside the block) and the clean blocks
# before it; a clean token sees the clean blocks up to its own (what the sampler's KV cache will hold). b = 1 is an
# autoregressive model, b = L is MDLM: the tests check both identities, and that the cache gives the full forward's
# outputs.

# %%
from dlcourse.discrete.bd3 import block_attention_mask

mask = block_attention_mask(16, 4)
fig, ax = plt.subplots(figsize=(4.8, 4.8), dpi=80, layout="constrained")
ax.imshow(mask, cmap="Blues")
ax.set_xticks([7.5], ["x_t | x_0"])
ax.set_yticks([7.5], ["x_t | x_0"])
ax.axhline(15.5, color="k")
ax.axvline(15.5, color="k")
ax.set_title("BD3 training mask, L = 16, b = 4 (blue: may attend)")
plt.show()

# %% [markdown]
# ## The measured frontier
#
# Small networks of one size trained on the test bed: the AR typewriter, MDLM, BD3 with blocks of 4, 8 and 16 (0.6M
# parameters each), and SEDD on the absorbing graph with its Tweedie sampler (0.8M: the same network with the time
# conditioning SEDD keeps). Each sampler generates 64-character samples; we time it at batch 1 (latency: one user
# waiting for one answer; the best of five runs) and score 128 of its samples by their exact NLL, with their distinct
# 4-grams relative to real text beside it (a collapsed sampler would show there).

# %% tags=["nbval-ignore-output"]
from dlcourse import load
from dlcourse.discrete.frontier import measure_point, standard_samplers

models = {"ar": load("ar_topics"), "mdlm": load("mdlm_topics"), "bd3-b4": load("bd3_topics_b4"),
          "bd3-b8": load("bd3_topics_b8"), "bd3-b16": load("bd3_topics_b16"), "sedd": load("sedd_topics")}
real_distinct = distinct_ngrams(real[:128])  # the fraction depends on how many windows: compare 128 with 128


def score(tokens):
    return {"nll": lang.nll(tokens), "distinct4": distinct_ngrams(tokens) / real_distinct}


specs = standard_samplers(L)
points = [measure_point(s, *models[s.kind], batch=1, n_quality=128, score=score) for s in specs]
ar_rate = points[0]["tokens_per_s"]
for p in points:
    print(f"{p['sampler']:<32} {p['tokens_per_s']:7.0f} chars/s ({p['tokens_per_s'] / ar_rate:4.2f}x AR)  "
          f"NLL {p['nll']:.3f} ({p['nll'] / floor - 1:+.0%})  distinct {p['distinct4']:.2f}")

# %% tags=["nbval-ignore-output"]
fig, ax = plt.subplots(figsize=(8, 4.8), dpi=80, layout="constrained")
for kind, marker in (("ar", "*"), ("mdlm", "o"), ("bd3-b4", "^"), ("bd3-b8", "v"), ("bd3-b16", "s"), ("sedd", "D")):
    mine = [p for p in points if p["kind"] == kind]
    ax.scatter([p["tokens_per_s"] for p in mine], [p["nll"] for p in mine], marker=marker, s=90, label=kind)
ax.axhline(floor, color="k", lw=1)
ax.set_xscale("log")
(x_left, x_right), (y_low, _) = ax.get_xlim(), ax.get_ylim()
x_right *= 1.5
ax.fill_between([2 * ar_rate, x_right], y_low, 1.1 * floor, color="tab:green", alpha=0.15)  # the goal's corner
ax.axhline(1.1 * floor, color="tab:green", lw=1, ls=":")
ax.axvline(2 * ar_rate, color="tab:green", lw=1, ls=":")
ticks = [t for t in (250, 500, 1000, 2000, 4000, 8000, 16000) if x_left <= t <= x_right]
ax.set_xticks(ticks, [str(t) for t in ticks])
ax.set_xticks([], minor=True)
ax.set(xlim=(x_left, x_right), ylim=(y_low, None))
ax.set_xlabel("characters per second at batch 1 (this CPU)")
ax.set_ylabel("exact NLL of samples, bits/char")
ax.set_title("Quality against speed; green: 2x the typewriter at +10% NLL at most")
ax.legend(fontsize=10, ncol=2)
plt.show()

# %% [markdown]
# Nothing reaches the green corner. The samplers that write several characters per call are fast and write broken
# words; the ones that keep quality (BD3 with blocks of 4 and one character per call, MDLM by threshold) make about
# as many calls as the typewriter, each on more positions, so they are slower on this CPU. And the trained editors
# are worse than the exact denoiser *at the same sampler*: MDLM's ancestral sampler with 64 calls gave NLL 1.07
# with the exact denoiser above, far less than with the network. The held-out bounds say why:

# %%
from dlcourse.checkpoint import read_manifest

manifest = read_manifest()
for name in ("ar_topics", "bd3_topics_b4", "bd3_topics_b8", "bd3_topics_b16", "mdlm_topics", "sedd_topics"):
    m = manifest[name]["metrics"]
    print(f"{name:<16} held-out {'NLL' if name == 'ar_topics' else 'bound'} {m['eval_bpc']:.3f} bits/char "
          f"(the source: {m['entropy_bpc']:.3f})")

# %% [markdown]
# The typewriter has learnt the source (its NLL is the entropy, within the error of 512 windows); the editors are 0.07
# to 0.26 bits per character short, and the shortfall grows with the block size, the part of the sequence a step must
# guess without seeing it. SEDD learns the same absorbing process as MDLM through score entropy, with the time as an
# input, and ends a little further from the source at this budget; its Tweedie sampler pays for it at both step
# counts, against MDLM's ancestral sampler at the same number of calls. A shortfall on real text means the network
# spreads some of its mass over characters the source almost never writes; sampled, each such character is a broken
# word, which the source charges about 11 bits. Same network (SEDD adds its time conditioning) and training budget for
# every model: the editor's task is harder to learn, and at this scale it pays for it twice, in its bound and far more
# in its samples.

# %% [markdown]
# ## What a GPU would do: a roofline
#
# On this CPU a network call costs a fixed overhead (Python and kernel dispatch, the same for one position or a
# hundred) plus time proportional to its FLOPs. We fit t = a + b · FLOPs on calls of every size, check it against
# the points above, and predict a GPU from data-sheet peaks: a launch overhead per layer, then the larger of compute
# time and memory time. For networks this small a GPU call costs its overhead whatever its size, so characters per
# call becomes the speed-up. These are predictions, stated as such, until they are measured on a GPU. The fit weighs
# each call by its own time (least squares in relative error): the calls span three decades of FLOPs, and in plain
# seconds the largest would set the overhead too, from their noise alone.

# %% tags=["nbval-ignore-output"]
from dlcourse.discrete.frontier import Roofline, calibrate

ar_model, ar_cfg = models["ar"]
roof = Roofline(sum(p.numel() for p in ar_model.parameters()), ar_cfg.model.n_layers, ar_cfg.model.dim)
roof.fit(*calibrate(ar_model, L))
print(f"this CPU: {roof.a * 1e3:.2f} ms per call + {1 / roof.b / 1e9:.1f} GFLOP/s")
print(f"{'sampler':<32} {'CPU measured':>12} {'CPU model':>10} {'H100 model':>11} {'H100, batch 16':>15}")
ratios = []
for spec, p in zip(specs, points):
    steps_spec = spec if "threshold" not in spec.options else type(spec)(spec.label, spec.kind, {"steps": p["nfe"]})
    cpu = roof.tokens_per_second(steps_spec, L, 1)
    ratios.append(cpu / p["tokens_per_s"])
    h100 = [roof.tokens_per_second(steps_spec, L, batch, "H100") for batch in (1, 16)]
    print(f"{spec.label:<32} {p['tokens_per_s']:12.0f} {cpu:10.0f} {h100[0]:11.0f} {h100[1]:15.0f}")
ratios = torch.tensor(ratios)
print(f"CPU model / measured: {ratios.min():.2f} to {ratios.max():.2f}, median {ratios.median():.2f}; "
      f"{int(((ratios - 1).abs() <= 0.25).sum())} of {len(ratios)} within 25%")

# %% [markdown]
# Read the two CPU columns together, with the last line: a straight line fitted to calls of one network, timed apart
# from any sampler, predicts every sampler's rate within a factor of about two, but how close varies from run to run
# (in some of our runs most samplers fell within a quarter, in others only a few, all on the same side). It counts
# network calls only, while a sampler's step also draws its characters, updates its masks and (AR and BD3) appends
# every layer's keys and values to the cache; and on a shared machine the time of the same call, and of the
# same sampler, moves by tens of percent from one run to the next (run this cell twice). The overhead on the first
# line is large for one position through three layers: a hundred small kernels, each paying Python's dispatch. On a
# GPU the same extra work is more kernel launches, so read the GPU columns as an upper bound.

# %% [markdown]
# Batch 16 (many users at once) turns the CPU's answer further towards the typewriter.
# `python benchmarks/text_bench.py --part frontier` measures it: on this CPU the typewriter writes about nine times as
# many characters per second at batch 16 as at batch 1, because its one-position calls were almost all overhead, while
# the editors gain 1.4 to 6 times, because each of their calls already carried 64 positions and the CPU was busy
# computing. At batch 16 every editor here is slower than the typewriter; the fastest, BD3 with blocks of 4 and one
# step per block (the one that writes nonsense), by about a tenth. The GPU column says the opposite would happen on an
# H100: sixteen sequences of 64 positions are still far below what it computes in one launch, so the editor's calls
# stay as cheap as the typewriter's, and an editor's speed-up is again its characters per call. That is a prediction,
# until it is measured on one.

# %% [markdown]
# ## And on prose?
#
# The same frontier on English, where no exact likelihood exists, needs a judge: `ar_judge_prose`, an AR model with
# five times the parameters of the four it judges (`ar_prose`, `mdlm_prose`, `sedd_prose` and `bd3_prose` with
# blocks of 8, all of one size and one budget, lecture 10), scores each sampler's text as perplexity per character.
# `python benchmarks/text_bench.py --part frontier --bed prose` measured on this CPU, batch 1: the typewriter writes
# about 1400 characters per second at a judged perplexity of 4.5 (held-out text: 3.8). The fastest editor, MDLM
# with confidence by count at 8 steps, writes 2.3 times as fast at 32; the best editor, BD3 with one step per
# character, reaches 15 at about half the typewriter's speed. No editor comes within 10% of the typewriter's
# perplexity: as models these editors are 0.9 to 1.05 bits per character worse (their bounds, lecture 10), and no
# sampler can decode what its denoiser does not know. On the test bed the sampler was the question; on prose at this
# budget, the model still is.

# %% [markdown]
# ## Watch a block-by-block generation
#
# BD3 with blocks of 16 and confidence by threshold: each frame is one network call. Red characters are the ones
# revealed by that call; a block starts only when the one before it is finished and in the cache.

# %% tags=["nbval-ignore-output"]
from dlcourse.viz import FramePlayer, text_frames

from dlcourse.discrete.family import BD3

bd3_model, bd3_cfg = models["bd3-b16"]
out = BD3.generate(bd3_model, bd3_cfg, 2, L, threshold=0.9, generator=torch.Generator().manual_seed(3), record=True)
labels = [f"call {k:2d}: {int((x != MASK_ID).sum())} of {2 * L} characters written" for k, x in
          enumerate(out.trajectory)]
FramePlayer(text_frames(out.trajectory, rows=2), labels=labels, interval_ms=250)

# %% [markdown]
# ## To think about
#
# 1. Confidence by count put its characters in the same word and did worse than random positions. Design a rule
#    that prefers confident positions *far apart*. What would you measure to show it helps?
# 2. The exact denoiser reached about 1.5 characters per call at a 10% loss. What property of a language would let
#    an editor write many characters per call at no loss? Is English like that?
# 3. The roofline says a GPU at batch 1 is overhead-bound for these networks. At what network size (or batch) does
#    a call's compute start to dominate, and what happens to the editor's advantage then?
