"""Discrete diffusion for text: masked diffusion (MDLM), score entropy (SEDD), and an autoregressive baseline.

- `schedules`: σ(t), σ̄(t) (log-linear, geometric).
- `graphs`: the absorbing and uniform CTMCs: transitions, forward sampling, reverse rates from a concrete score.
- `losses`: MDLM's NELBO (continuous and discrete time), score entropy (explicit, implicit, denoising), AR CE.
- `samplers`: MDLM ancestral (with the cache), SEDD Euler / Tweedie τ-leaping, AR with a KV cache; infilling.
- `evaluate`: bits per character, AR-judged generative perplexity, tokens per second.
- `markov`: a character Markov chain with a known entropy rate and tiny enumerable distributions (for tests).
- `config` (configs and presets) and `family` (``dlcourse train|sample|eval {mdlm,sedd,ar}``).
"""

from .graphs import GRAPHS, Absorbing, Graph, Uniform, make_graph
from .schedules import SCHEDULES, GeometricSchedule, LogLinearSchedule, Schedule, make_schedule

__all__ = ["Absorbing", "Uniform", "Graph", "GRAPHS", "make_graph", "Schedule", "LogLinearSchedule",
           "GeometricSchedule", "SCHEDULES", "make_schedule"]
