"""CIL Algorithms of cil_genreg: solvers on the latent a CIL user drives with ``run``."""
from .latent_lbfgs import LatentLBFGS

__all__ = ["LatentLBFGS"]
