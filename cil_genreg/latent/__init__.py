r"""Torch-only latent solvers (no CIL import): the inner problem of every generative regulariser,

.. math:: z^* = \underset{z}{\text{argmin}}\; \varphi(v - G(z)) + c\|z\|_2^2 ,

and Langevin sampling of a latent posterior :math:`p(w) \propto e^{-U(w)}` (:mod:`.langevin`).
"""
from .generator import (PRECISIONS, GeneratorAdapter, check_precision, encode_mean, frozen,
                        jacobian_norm_squared, resolve_device)
from .schedule import InnerSchedule
from .misfits import (SquaredMisfit, HuberMisfit, NegatedInnerProduct, StructuredMisfit,
                      MeanMisfit)
from .coupling import LatentChain
from .solver import LatentSolver, LatentSolution, SolverStats, OPTIMISERS
from .quasi_newton import BFGSMemory, LBFGSMemory, QuasiNewtonIteration, batched_quasi_newton
from .langevin import (ChainDivergedError, LangevinChain, MALA_TARGET_ACCEPTANCE,
                       effective_sample_size)
from .image_potential import ImageMisfitPotential

__all__ = ["GeneratorAdapter", "PRECISIONS", "check_precision", "InnerSchedule", "resolve_device", "frozen", "encode_mean",
           "jacobian_norm_squared", "SquaredMisfit", "HuberMisfit", "NegatedInnerProduct",
           "StructuredMisfit", "MeanMisfit",
           "LatentSolver", "LatentSolution", "SolverStats", "OPTIMISERS", "batched_quasi_newton",
           "QuasiNewtonIteration", "LatentChain",
           "BFGSMemory", "LBFGSMemory", "LangevinChain", "ChainDivergedError",
           "MALA_TARGET_ACCEPTANCE", "effective_sample_size", "ImageMisfitPotential"]
