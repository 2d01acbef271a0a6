"""CIL Algorithms of cil_genreg: :class:`LatentLBFGS` on the latent (a CIL ``Algorithm`` a user
drives with ``run``), and builders of CIL algorithms that combine a generative regulariser with
TV: :mod:`.hybrid` (TV + generative, PDHG or FISTA) and :mod:`.z_tv` (TV along the slice axis).
"""
from .latent_lbfgs import LatentLBFGS

__all__ = ["LatentLBFGS"]
