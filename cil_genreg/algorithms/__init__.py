"""CIL Algorithms of cil_genreg: :class:`LatentLBFGS` on the latent (a CIL ``Algorithm`` a user
drives with ``run``), :class:`LatentPosteriorSampler` (Langevin draws of the latent posterior:
the posterior mean and pixel std, and their :func:`calibration`), and builders of CIL
algorithms that combine a generative regulariser with TV: :mod:`.hybrid` (TV + generative,
PDHG or FISTA) and :mod:`.z_tv` (TV along the slice axis).
"""
from .latent_lbfgs import LatentLBFGS
from .posterior_sampler import LatentPosteriorSampler, calibration

__all__ = ["LatentLBFGS", "LatentPosteriorSampler", "calibration"]
