r"""Torch-only latent solvers (no CIL import): the inner problem of every generative regulariser,

.. math:: z^* = \underset{z}{\text{argmin}}\; \varphi(v - G(z)) + c\|z\|_2^2 .
"""
from .generator import GeneratorSpec, resolve_device, frozen
from .misfits import SquaredMisfit, HuberMisfit, L1Misfit, LinearMisfit
from .coupling import LatentChain
from .solver import LatentSolver, LatentSolution, SolverStats, OPTIMISERS
from .quasi_newton import BFGSMemory, LBFGSMemory, batched_quasi_newton

__all__ = ["GeneratorSpec", "resolve_device", "frozen", "SquaredMisfit", "HuberMisfit",
           "L1Misfit", "LinearMisfit", "LatentSolver", "LatentSolution", "SolverStats",
           "OPTIMISERS", "batched_quasi_newton", "LatentChain",
           "BFGSMemory", "LBFGSMemory"]
