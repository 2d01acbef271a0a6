r"""Torch-only latent solvers (no CIL import): the inner problem of every generative regulariser,

.. math:: z^* = \underset{z}{\text{argmin}}\; \varphi(v - G(z)) + c\|z\|_2^2 .
"""
from .generator import GeneratorSpec, resolve_device, frozen, encode_mean
from .misfits import SquaredMisfit, HuberMisfit, L1Misfit, LinearMisfit
from .solver import LatentSolver, LatentSolution, SolverStats, OPTIMISERS
from .quasi_newton import BFGSMemory, LBFGSMemory, batched_quasi_newton

__all__ = ["GeneratorSpec", "resolve_device", "frozen", "encode_mean", "SquaredMisfit", "HuberMisfit",
           "L1Misfit", "LinearMisfit", "LatentSolver", "LatentSolution", "SolverStats",
           "OPTIMISERS", "batched_quasi_newton",
           "BFGSMemory", "LBFGSMemory"]
