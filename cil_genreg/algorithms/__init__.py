"""CIL Algorithms of cil_genreg: :class:`LatentLBFGS` on the latent (a CIL ``Algorithm`` a user
drives with ``run``), :class:`LatentPosteriorSampler` (Langevin draws of the latent posterior:
the posterior mean and pixel std, and their :func:`calibration`), :class:`PlugAndPlayHQS`
(DPIR: Plug-and-Play half-quadratic splitting with a trained denoiser and a decreasing noise
level, the learned peer users meet first, with its :func:`noise_schedule`), and builders of CIL
algorithms that combine a generative regulariser with TV: :mod:`.hybrid` (TV + generative,
PDHG or FISTA) and :mod:`.z_tv` (TV along the slice axis).
"""
from .dpir import PlugAndPlayHQS, noise_schedule
from .latent_lbfgs import LatentLBFGS
from .posterior_sampler import LatentPosteriorSampler, calibration

__all__ = ["LatentLBFGS", "LatentPosteriorSampler", "PlugAndPlayHQS", "calibration",
           "noise_schedule"]
