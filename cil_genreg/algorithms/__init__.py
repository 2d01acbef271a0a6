"""CIL Algorithms of cil_genreg: :class:`LatentLBFGS` on the latent (a CIL ``Algorithm`` a user
drives with ``run``), the posterior samplers :class:`LatentPosteriorSampler` (Langevin draws of
the range method's latent posterior) and :class:`JointPosteriorSampler` (Gibbs draws of the soft
method's joint posterior of the image and the latent), their posterior mean and pixel std and
:func:`calibration`, the anchor they are compared with :class:`PlugAndPlayULA` (PnP-ULA,
Laumont et al. 2022: Langevin with a trained denoiser's score), :class:`PlugAndPlayHQS`
(DPIR: Plug-and-Play half-quadratic splitting with a trained denoiser and a decreasing noise
level, the learned peer users meet first, with its :func:`noise_schedule`), and builders of CIL algorithms that combine a generative regulariser
with TV: :mod:`.hybrid` (TV + generative, PDHG or FISTA) and :mod:`.z_tv` (TV along the slice
axis).
"""
from .dpir import PlugAndPlayHQS, noise_schedule
from .latent_lbfgs import LatentLBFGS
from .posterior_base import PosteriorSampler, calibration
from .posterior_sampler import LatentPosteriorSampler
from .pnp_ula import PlugAndPlayULA
from .joint_sampler import JointPosteriorSampler, latent_given_image, soft_posterior_scales

__all__ = ["LatentLBFGS", "PosteriorSampler", "LatentPosteriorSampler", "JointPosteriorSampler",
           "PlugAndPlayHQS", "PlugAndPlayULA", "calibration", "latent_given_image", "noise_schedule",
           "soft_posterior_scales"]
