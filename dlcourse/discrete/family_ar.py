"""The ``ar`` family: the causal transformer baseline (the same blocks as the diffusion models), decoded with a
KV cache; its exact bits per character are the yardstick of the diffusion bounds, and it judges their samples.

    dlcourse train ar --preset toy
    dlcourse sample ar --checkpoint ar_prose --prefix "the history of "
"""

from ..config import Presets
from .family import _cpu, _text8, _toy, make_family

__all__ = ["PRESETS", "FAMILY"]

PRESETS = Presets("ar", toy=_toy("ar"), cpu=_cpu("ar"), text8=_text8("ar"))

FAMILY = make_family("ar", "autoregressive character transformer with a KV cache (the baseline)", PRESETS)
