"""Score matching, Langevin dynamics and noise-conditional score networks (Hyvärinen 2005; Vincent 2011;
Song et al. 2019; Song & Ermon 2019, 2020).

- losses: `exact_sm_loss`, `sliced_sm_loss`, `dsm_loss`, `ncsn_loss`, `dsm_optimal_loss_gaussian`
- samplers: `langevin_step`, `langevin_dynamics`, `annealed_langevin_dynamics` (+ the readable
  `annealed_langevin_reference`), `tweedie_denoise`, `annealed_step_sizes`
- NCSN: `NCSN` (s(x, σ) = net(x, log σ)/σ), `geometric_sigmas`, NCSNv2's techniques (`max_pairwise_distance`,
  `ncsnv2_gamma`, `ncsnv2_num_levels`, `ncsnv2_step_size`)
- the ``ncsn`` family: `NCSNConfig`, `resolve_config`, `sample_ncsn`, `model_image_chain` (``dlcourse train/sample
  ncsn``; load a trained model with ``dlcourse.load(name)``)
"""

from .config import NCSNConfig
from .family import FAMILY, model_image_chain, resolve_config, sample_ncsn, sigmas_of
from .langevin import (annealed_langevin_dynamics, annealed_langevin_reference, annealed_step_sizes,
                       langevin_dynamics, langevin_step, stationary_variance_gaussian, tweedie_denoise)
from .losses import dsm_loss, dsm_optimal_loss_gaussian, dsm_target, exact_sm_loss, ncsn_loss, sliced_sm_loss
from .ncsn import (NCSN, geometric_sigmas, max_pairwise_distance, ncsnv2_gamma, ncsnv2_num_levels,
                   ncsnv2_ratio_condition, ncsnv2_step_size, ncsnv2_variance_ratio)

__all__ = [
    "exact_sm_loss", "sliced_sm_loss", "dsm_target", "dsm_loss", "ncsn_loss", "dsm_optimal_loss_gaussian",
    "langevin_step", "tweedie_denoise", "annealed_step_sizes", "stationary_variance_gaussian", "langevin_dynamics",
    "annealed_langevin_reference", "annealed_langevin_dynamics",
    "NCSN", "geometric_sigmas", "max_pairwise_distance", "ncsnv2_ratio_condition", "ncsnv2_gamma",
    "ncsnv2_num_levels", "ncsnv2_variance_ratio", "ncsnv2_step_size",
    "FAMILY", "NCSNConfig", "resolve_config", "sigmas_of", "sample_ncsn", "model_image_chain",
]
