"""The ``sedd`` family: score entropy discrete diffusion (Lou, Meng & Ermon 2024) on the absorbing or uniform graph.

    dlcourse train sedd --preset toy                      # absorbing graph, log-linear schedule
    dlcourse train sedd --preset toy-uniform              # uniform graph, geometric schedule
    dlcourse sample sedd --checkpoint sedd_prose --steps 64 --method euler

Config, training and sampling are shared with the other text families (`dlcourse.discrete.family`).
"""

from ..config import Presets
from .family import _cpu, _text8, _toy, make_family

__all__ = ["PRESETS", "FAMILY"]

PRESETS = Presets("sedd", toy=_toy("sedd"), **{"toy-uniform": _toy("sedd", "uniform")}, cpu=_cpu("sedd"),
                  **{"cpu-uniform": _cpu("sedd", "uniform")}, text8=_text8("sedd"),
                  **{"text8-uniform": _text8("sedd", "uniform")})

FAMILY = make_family("sedd", "score entropy discrete diffusion, absorbing or uniform (Lou, Meng & Ermon 2024)", PRESETS)
