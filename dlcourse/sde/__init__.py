"""Score-based generative modelling with SDEs (Song et al. 2021): forward SDEs, reverse-time samplers, the
probability-flow ODE and exact likelihoods."""

from .likelihood import (LikelihoodResult, bits_per_dim, dequantize, divergence_exact, divergence_hutchinson,
                         image_bits_per_dim, log_likelihood)
from .losses import sde_score_loss
from .ode import ODESolution, odeint_dopri5
from .samplers import (CORRECTORS, PREDICTORS, SampleResult, ancestral_sampling_step, euler_maruyama_step,
                       langevin_corrector_step, ode_sample, pc_sample, pc_sample_reference, probability_flow_step,
                       reverse_diffusion_step, time_grid, tweedie_denoise)
from .sdes import SDE, SDES, CosineVPSDE, SubVPSDE, VESDE, VPSDE, make_sde

__all__ = [name for name in dir() if not name.startswith("_")]
