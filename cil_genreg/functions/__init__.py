"""The CIL Functions of cil_genreg: the three generative regularisers, their patch prior and
latent least squares."""
from .generative_regulariser import GenerativeRegulariser
from .soft import SoftGenerativeRegulariser
from .range import RangeGenerativeRegulariser
from .sparse_deviation import SparseDeviationGenerativeRegulariser, soft_threshold
from .latent_least_squares import LatentLeastSquares
from .patch import PatchGenerativeRegulariser

__all__ = ["GenerativeRegulariser", "SoftGenerativeRegulariser", "RangeGenerativeRegulariser",
           "SparseDeviationGenerativeRegulariser", "LatentLeastSquares", "PatchGenerativeRegulariser",
           "soft_threshold"]
