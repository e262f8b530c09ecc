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
# # 10 · Editor vs typewriter: is a diffusion language model faster at the same quality?
#
# The whole text half of the course builds up to one question. An autoregressive (AR) model is a *typewriter*: it
# writes $L$ characters in $L$ network calls, one after another, each call looking only to the left. A diffusion
# model is an *editor*: it writes all $L$ characters in $T$ passes, each pass refining every position at once
# (lecture 08 built masked diffusion, lectures 07 and 09 SEDD's score entropy). If $T \ll L$ the editor makes far
# fewer calls. Does that make it faster, and does it write as well?
#
# We measure with the models the course ships, all of one size (3 transformer blocks, width 128, about 0.6M
# parameters; SEDD adds 0.17M for its time conditioning) and one budget (4500 training steps of 32 windows on one
# CPU thread: about one pass over 10 million characters of public-domain English): the typewriter `ar_prose`, the
# editors `mdlm_prose` and `sedd_prose`, and `bd3_prose`, block diffusion (lecture 11), which is both. A fifth
# model judges them: `ar_judge_prose`, an AR model with 5 times the parameters, trained longer, that none of the
# others is.
#
# 1. **likelihood**: bits per character on text none of them has seen;
# 2. **speed**: generated characters per second against the number of steps $T$;
# 3. **sample quality**: the judge's perplexity of each sampler's text;
# 4. **why** the answer depends on the hardware (arithmetic intensity), and
# 5. what only the editor can do: **infilling**.

# %%
from dlcourse.checkpoint import read_manifest
from dlcourse import load
from dlcourse.discrete.family import build_noise
from dlcourse.utils import count_parameters

models = {kind: load(f"{kind}_prose") for kind in ("ar", "mdlm", "sedd", "bd3")}  # kind -> (model, config)
judge, _ = load("ar_judge_prose")
manifest = read_manifest()
for kind, (model, cfg) in models.items():
    print(f"{kind:5s} {count_parameters(model):,} parameters, time-conditioned: {model.time_conditioning!s:5s}  "
          f"held-out bits/char in the manifest: {manifest[f'{kind}_prose']['metrics']['eval_bpc']:.3f}")
print(f"judge {count_parameters(judge):,} parameters, {manifest['ar_judge_prose']['metrics']['eval_bpc']:.3f} "
      f"bits/char")

# %% [markdown]
# ## 1. Bits per character: an exact number against two upper bounds
#
# The AR model gives the exact likelihood by the chain rule, $-\log_2 p_\theta(x) = -\sum_\ell \log_2
# p_\theta(x^\ell \mid x^{<\ell})$, one pass with a causal mask. A diffusion model gives only an **upper bound**, its
# negative ELBO (MDLM: Sahoo et al. 2024, eq. (11), lecture 08; SEDD: Lou et al. 2024, Theorem 3.6, the denoising
# score entropy plus the prior term, lecture 07), estimated by Monte Carlo over $t$ and the noised $x_t$. So the
# comparison is fair to the AR model only: a diffusion model is at least as good as its bound says, perhaps better.
#
# The models' training corpus does not ship with the course, so we evaluate on text the lecture ships: two
# paragraphs written for this course, normalised the text8 way (lower case, digits spelled out, every other run of
# characters one space) and cut into windows of 64 characters, the training length.

# %%
import torch

from dlcourse.data.text import MASK_ID, decode, encode, normalize_text

PARAGRAPHS = """
It was a bright cold morning in early spring, and the river ran high and brown between its banks. The old miller
stood at the door of his house and watched the water carry branches and leaves down toward the town. He had lived by
the river all his life, and he knew that when the snow melted in the hills the water would rise for a week and then
fall again. His daughter came out with a basket of bread and asked him whether the bridge would hold. He said that it
had held for forty years and he saw no reason why it should fail now, but that he would walk down after breakfast to
look at it.
The town was small, with one church, two inns and a market square where the farmers sold their cattle on the first
Monday of every month. Most of the houses were built of grey stone, and their roofs were steep so that the winter snow
would slide off. In the evenings the men sat in the larger inn and talked about the weather, the price of corn and the
doings of their neighbours, while the women met at the well and talked about much the same things in a different
order. Nothing of any importance had happened there for a hundred years, and the people liked it that way.
"""
text = normalize_text(PARAGRAPHS)
ids = encode(text, return_tensor=True)
L = 64
windows = ids[: len(ids) // L * L].reshape(-1, L)  # (M, 64)
print(f"{len(text)} characters -> {windows.shape[0]} windows of {L}")
print(decode(windows[0]))

# %%
from dlcourse.discrete.evaluate import ar_bpc, diffusion_bpc

ar, ar_cfg = models["ar"]
print(f"ar    exact   {ar_bpc(ar, windows, MASK_ID):.2f} bits/char")
for kind in ("mdlm", "sedd", "bd3"):
    model, cfg = models[kind]
    graph, schedule = build_noise(cfg)
    r = diffusion_bpc(model, kind, windows, schedule, graph, n_times=32, generator=torch.Generator().manual_seed(0),
                      block=cfg.block_size)
    print(f"{kind:5s} bound ≤ {r['bpc']:.2f} ± {r['stderr']:.2f} bits/char (prior term {r['prior_bpc']:.3f})")
print(f"judge exact   {ar_bpc(judge, windows, MASK_ID):.2f} bits/char")

# %% [markdown]
# On this plain prose every model does a little better than on the manifest's held-out windows (1.98 for the AR
# model, 3.03 / 2.93 / 2.87 for the MDLM, SEDD and BD3 bounds), and the order is the same: the diffusion bounds sit
# **most of a bit per character above** the AR model. That is honest news about *these* checkpoints: at a budget of
# 4500 CPU steps the diffusion models are far from converged (one reason: masked training sees a position's loss
# only when it is masked, and weighs it by $1/t$, a noisier gradient than the AR model's cross-entropy at every
# position). The budget is what closes the gap: at 1500 steps the same AR, MDLM and SEDD networks had 2.17 against
# 3.46 / 3.35, gaps of 1.2 to 1.3 bits; tripling it brought them to 0.95 to 1.05. BD3 sits between, as it should: autoregressive across
# blocks of 8, diffusion only within a block, it is the AR model at blocks of 1 and MDLM at a block of 64
# (lecture 11). The judge, five times larger but trained on about the same number of characters, is only a few
# hundredths of a bit better than the small AR model: at this budget data, not size, is what limits them. At scale
# the gap is much smaller: on text8, with 12-layer transformers trained for a million GPU steps, the papers report
# about 1.4 bits per character for masked diffusion and SEDD against 1.23 for an AR transformer of the same size (the
# text8 tables of Austin et al. 2021, Lou et al. 2024 and Sahoo et al. 2024; `dlcourse train mdlm --preset text8`
# is that configuration).

# %% [markdown]
# ## 2. What a step costs: arithmetic intensity
#
# Count the work. A forward pass over $n$ positions costs about $2Nn$ floating-point operations for a network of
# $N$ parameters (one multiply and one add per weight per position; Kaplan et al. 2020, Section 2.1, ignoring the
# attention term). To write a batch of $B$ sequences of $L$ characters:
#
# | | network calls | positions per call | total FLOPs |
# |---|---|---|---|
# | AR with a KV cache | $L$ | $B$ (one new character per sequence; the cache holds the rest) | $2NBL$ |
# | diffusion, $T$ steps | $T$ | $BL$ (every position, every step) | $2NBL \cdot T$ |
#
# The editor does **$T$ times more arithmetic** than the typewriter. It can still be faster, because the time of a call
# is not its FLOPs: it is roughly $\max(\text{FLOPs}/\text{peak FLOP/s},\ \text{bytes moved}/\text{bandwidth})$. Every
# call must read all $N$ weights from memory. Its **arithmetic intensity**, FLOPs per byte moved, is about $2Nn / (2N) =
# n$ in bf16: the number of positions the call processes. An H100 does about 990 TFLOP/s in dense bf16 and reads about
# 3.35 TB/s from its memory (NVIDIA's data sheet), so below roughly 300 positions per call it waits for memory and the
# extra positions are nearly free. AR decoding at $B = 1$ has intensity about 1: the GPU's arithmetic units idle more
# than 99% of the time, and a diffusion step over $L = 1024$ positions costs only a few times what an AR step over one
# position does, not 1024 times. On a *single CPU core* the balance is different: little arithmetic per second and a
# tiny model that sits in cache, so a call is compute-bound almost at once. Measure it, with the MDLM network:

# %% tags=["nbval-ignore-output"]
import time


def seconds_per_call(model, x, repeats=5):
    """Best wall-clock time of ``model(x, σ̄)`` over a few runs (no gradients)."""
    sb = torch.full((x.shape[0],), 1.0)
    best = float("inf")
    with torch.no_grad():
        model(x, sb)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            model(x, sb)
            best = min(best, time.perf_counter() - start)
    return best


mdlm, mdlm_cfg = models["mdlm"]
n_params = count_parameters(mdlm)
positions, per_call = [], []
for shape in [(1, 1), (1, 4), (1, 16), (1, 64), (4, 64), (16, 64), (64, 64)]:
    t = seconds_per_call(mdlm, torch.zeros(shape, dtype=torch.long))
    n = shape[0] * shape[1]
    positions.append(n)
    per_call.append(t)
    print(f"{n:5d} positions per call: {t * 1e3:7.2f} ms per call, {2 * n_params * n / t / 1e9:6.2f} GFLOP/s")

# %% tags=["nbval-ignore-output"]
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(5.5, 3.4))
ax.loglog(positions, [t * 1e3 for t in per_call], "o-", label="measured, one CPU core")
ax.loglog(positions, [per_call[0] * 1e3] * len(positions), "k:", label="flat: positions are free (memory-bound)")
ax.loglog(positions, [per_call[-1] * 1e3 * n / positions[-1] for n in positions], "k--",
          label="compute-bound: ∝ positions")
ax.set(xlabel="positions per network call", ylabel="ms per call", title="What one step costs")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# Up to a few dozen positions the time per call grows far more slowly than the work (fixed overheads: Python,
# dispatch, reading the weights); beyond a few hundred it grows in proportion to the positions, at the core's few
# dozen GFLOP/s: compute-bound. A diffusion step for $B = 16$
# sequences of 64 characters processes 1024 positions; an AR step with its cache processes 16. From the measured
# times, the number of diffusion steps at which the editor would merely *tie* with the typewriter is
# $T^\ast = L \cdot t(B) / t(BL)$:

# %% tags=["nbval-ignore-output"]
t_ar = seconds_per_call(mdlm, torch.zeros(16, 1, dtype=torch.long))  # the cost of 16 positions, as an AR step has
t_diff = seconds_per_call(mdlm, torch.zeros(16, 64, dtype=torch.long))  # 16 x 64 positions, one diffusion step
print(f"AR step (16 positions): {t_ar * 1e3:.2f} ms, diffusion step (1024 positions): {t_diff * 1e3:.2f} ms")
print(f"break-even number of diffusion steps T* = 64 x {t_ar * 1e3:.2f} / {t_diff * 1e3:.2f} "
      f"= {64 * t_ar / t_diff:.1f}")

# %% [markdown]
# On one CPU core the editor can afford only a handful of steps before the typewriter is faster; on a GPU, where a
# call over a thousand positions costs only a few times what a call over sixteen does (by the roofline estimate
# above, about $1024/300$), $T^\ast$ is a sizeable fraction of $L$. (The AR
# step also reads its KV cache, which grows with the context, and the diffusion step attends over all $L$ positions;
# both are second-order here.)

# %% [markdown]
# ## 3. Speed and quality against the number of steps
#
# Now the real samplers (`dlcourse.discrete.family.generate`): MDLM ancestral sampling with its cache (lecture 08),
# SEDD's Tweedie τ-leaping, and the AR model with and without its KV cache, each writing $B = 16$ samples of 64
# characters. Quality is the **generative perplexity** (SEDD, Section 5.2, with GPT-2 Large as the judge): the
# judge's perplexity per character of the samples, $2^{\text{bits/char}}$, lower meaning more like its training
# text. The judge is `ar_judge_prose`, larger and trained longer than any of the samplers and none of them, so it
# flatters nobody's samples (a model judging its own would: it finds its own habits unsurprising); its perplexity
# of our real paragraphs is the target a perfect sampler would hit.

# %% tags=["nbval-ignore-output"]
from dlcourse.discrete.evaluate import generative_perplexity
from dlcourse.discrete.family import generate
from dlcourse.discrete.samplers import ar_sample

B = 16


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


for kind in ("mdlm", "sedd"):  # one warm-up call each
    generate(*models[kind], 2, L, 4, generator=torch.Generator().manual_seed(0))

rows = []
for use_cache in (True, False):
    out, secs = timed(lambda: ar_sample(ar, B, L, generator=torch.Generator().manual_seed(0), use_cache=use_cache))
    rows.append(dict(sampler="ar, KV cache" if use_cache else "ar, no cache", steps=L, nfe=out.nfe,
                     tok_s=B * L / secs, ppl=generative_perplexity(judge, out.tokens, MASK_ID)))
STEPS = (4, 8, 16, 32, 64, 128)
for kind in ("mdlm", "sedd"):
    for steps in STEPS:
        out, secs = timed(lambda: generate(*models[kind], B, L, steps, generator=torch.Generator().manual_seed(0)))
        rows.append(dict(sampler=kind, steps=steps, nfe=out.nfe, tok_s=B * L / secs,
                         ppl=generative_perplexity(judge, out.tokens, MASK_ID)))
real_ppl = generative_perplexity(judge, windows, MASK_ID)

print(f"{'sampler':14s} {'steps':>5s} {'calls':>5s} {'chars/s':>8s} {'judged ppl':>14s}")
for r in rows:
    print(f"{r['sampler']:14s} {r['steps']:5d} {r['nfe']:5d} {r['tok_s']:8.0f} {r['ppl']:14.1f}")
print(f"{'our paragraphs':14s} {'':5s} {'':5s} {'':8s} {real_ppl:14.1f}")

# %% tags=["nbval-ignore-output"]
fig, ax = plt.subplots(figsize=(6, 3.8))
for kind, color in (("mdlm", "C0"), ("sedd", "C1")):
    rs = [r for r in rows if r["sampler"] == kind]
    ax.plot([r["tok_s"] for r in rs], [r["ppl"] for r in rs], "o-", color=color, label=f"{kind}, T = 4 ... 128")
    for r in rs:
        ax.annotate(f"{r['steps']}", (r["tok_s"], r["ppl"]), textcoords="offset points", xytext=(4, 4), fontsize=7,
                    color=color)
for r, marker in zip(rows[:2], ("*", "x")):
    ax.plot(r["tok_s"], r["ppl"], marker, color="C3", markersize=11, label=r["sampler"])
ax.axhline(real_ppl, color="k", ls=":", label="real text (our paragraphs)")
ax.set(xscale="log", yscale="log", xlabel="characters per second (one CPU core, B = 16, L = 64)",
       ylabel="judged perplexity per char", title="Quality against speed (lower right is better)")
ax.set_yticks([4, 6, 10, 20, 30, 40], ["4", "6", "10", "20", "30", "40"])
ax.minorticks_off()
ax.legend(fontsize=7, loc="center left")
fig.tight_layout()
plt.show()

# %% [markdown]
# Read the picture honestly. The diffusion samplers trade quality for speed as promised: fewer steps, more characters
# per second, worse text (each step unmasks many characters independently given the same context, lecture 08). Only
# at the smallest step count, 4, near the break-even $T^\ast$ of section 2 (3 to 4 on this CPU), are they as fast
# as the typewriter (a little ahead in some runs, a little behind in others); at 8 steps and more they are slower.
# But their text is nowhere near the AR model's at *any* step count: the judge finds it 3.7 to 7 times
# more surprising per character than the AR samples, which sit close to the real paragraphs, and the judge is not
# the AR model, so that is no home advantage. More steps cannot fix a denoiser that is wrong: MDLM's perplexity stops
# improving at 16 steps, SEDD's at about 64; these checkpoints are undertrained, as their bits per character said.
#
# **What the papers report at scale.** SEDD (Lou et al. 2024, abstract and Section 5.2), with GPT-2-sized models on
# sequences of 1024 tokens judged by GPT-2 Large: samples with 6 to 8 times better generative perplexity than GPT-2
# sampled without annealing, and *similar quality with 32 times fewer network evaluations*, i.e. with 32 steps where
# GPT-2 needs 1024. MDLM (Sahoo et al. 2024) reaches likelihoods at least as good with its simpler loss, and its cache
# (lecture 08) makes many-step sampling cheaper. The editor wins when the model is good enough that few steps suffice
# **and** the hardware makes a step over all $L$ positions about as cheap as a step over one (a GPU, long sequences, a
# small batch): exactly the regime of section 2. At our scale, on one CPU core, the typewriter wins on both axes.

# %% [markdown]
# Play with it: pick a sampler and a number of steps; the box shows two samples, the time, and the judge's verdict.
# A setting is sampled the first time you choose it (the box says "computing..." meanwhile, well under a second)
# and remembered after that; the steps slider does nothing for the typewriter, so it is greyed out.

# %% tags=["nbval-ignore-output"]
import ipywidgets as widgets
from IPython.display import HTML, display

from dlcourse.viz import LiveWidget

seen = {}


def draw(kind, steps, seed):
    """Two samples of one setting, their speed and their judged perplexity, computed once (two, not more: SEDD at
    64 steps must answer within a second on two slow cores)."""
    key = (kind, steps if kind != "ar" else None, seed)
    if key not in seen:
        g = torch.Generator().manual_seed(seed)
        if kind == "ar":
            out, secs = timed(lambda: ar_sample(ar, 2, L, generator=g))
        else:
            out, secs = timed(lambda: generate(*models[kind], 2, L, steps, generator=g))
        seen[key] = (f"{kind}, {out.nfe} network calls, {2 * L / secs:.0f} characters/s,\njudged perplexity "
                     f"{generative_perplexity(judge, out.tokens, MASK_ID):.1f} (of these two samples)\n"
                     + "\n".join("    " + line for line in decode(out.tokens)))
    return seen[key]


# one line of controls at a projector's 150% zoom: three narrow buttons and two short sliders
kind_box = widgets.ToggleButtons(options=["mdlm", "sedd", "ar"], value="mdlm", tooltips=["sampler"] * 3,
                                style={"button_width": "58px"})
steps_box = widgets.SelectionSlider(options=[4, 8, 16, 32, 64], value=32, description="steps",
                                    continuous_update=False, layout={"width": "250px"},
                                    style={"description_width": "45px"})
seed_box = widgets.IntSlider(0, 0, 9, description="seed", continuous_update=False, layout={"width": "230px"},
                             style={"description_width": "40px"})
shown = widgets.Output()  # an output area, not a control: the status line below is the widget's second line
live = LiveWidget(widgets.VBox([widgets.HBox([kind_box, steps_box, seed_box]), shown]), draw("mdlm", 32, 0))


def update(_=None):
    steps_box.disabled = kind_box.value == "ar"
    with live.busy():
        text = draw(kind_box.value, steps_box.value, seed_box.value)
        shown.clear_output(wait=True)
        with shown:
            display(HTML(f"<pre style='font-size: 15px; white-space: pre-wrap'>{text}</pre>"))


for box in (kind_box, steps_box, seed_box):
    box.observe(update, names="value")
update()
live

# %% [markdown]
# ## 4. What only the editor can do: infilling
#
# Give the model a beginning and an end and ask for the middle. The diffusion samplers hold any positions fixed
# (`make_condition`, lecture 08): the given characters are never masked, and every step conditions on both sides. The
# AR model factorises $p(x)$ left to right, so it can only *continue* the prefix; the suffix it cannot even read.
# (An AR model can be taught to infill by moving the suffix in front during training, "fill in the middle", Bavarian
# et al. 2022, at the price of a different training set-up.) Same prefix and suffix for all three:

# %%
from dlcourse.discrete.samplers import make_condition

prefix, suffix = "the old miller walked down ", " bridge would hold"
cond = make_condition(L, prefix=prefix, suffix=suffix, batch=3)
fills = {kind: generate(*models[kind], 3, L, 64, condition=cond, generator=torch.Generator().manual_seed(4)).tokens
         for kind in ("mdlm", "sedd")}
fills["ar"] = ar_sample(ar, 3, L, prefix=prefix, generator=torch.Generator().manual_seed(4)).tokens
for kind, toks in fills.items():
    kept = bool((toks[cond.known] == cond.given[cond.known]).all())
    print(f"{kind:5s} keeps every given character: {kept}")

# %% tags=["nbval-ignore-output"]
for kind, toks in fills.items():
    print(kind)
    for line in decode(toks):
        print("   ", line)

# %% [markdown]
# The diffusion samples keep both ends and fill the middle between them (badly: these are the undertrained
# checkpoints, and 64 steps for 19 blanks); the AR model continues the prefix and the suffix is simply not there. (For a
# text box where you type your own template with "_" blanks, go back to the infilling playground of lecture 08.)

# %% [markdown]
# ## To think about
#
# 1. The break-even $T^\ast = L\,t(B)/t(BL)$ depends on the batch $B$. A server answering many users at once runs AR
#    decoding at a large $B$. What happens to the AR step's arithmetic intensity, and to the editor's advantage?
# 2. MDLM's cache makes $T > L$ steps cost at most $L + 1$ network calls. Why can SEDD's Tweedie sampler not use the
#    same trick with our time-conditioned SEDD network?
# 3. The AR model's number is exact and the diffusion numbers are upper bounds. Could the diffusion models be as good
#    as the AR model and only their bounds be loose? What in section 3 tells you they are not?
# 4. With 4 steps each step unmasks 16 characters at once, drawn independently. Give a two-character example where
#    independent draws from perfect marginals produce text the data never contains.
