"""The CIL Functions of cil_genreg: the three generative regularisers and latent least squares,
the soft regulariser under a structured-covariance VAE's own precision, a slice-wise sum
of 2D functions, and the Plug-and-Play denoiser prior they are compared with."""
from ..utilities._cil import require_cil

require_cil()
from .generative_regulariser import GenerativeRegulariser
from .soft import SoftGenerativeRegulariser
from .structured_soft import StructuredSoftRegulariser
from .range import RangeGenerativeRegulariser
from .sparse_deviation import SparseDeviationGenerativeRegulariser, soft_threshold
from .latent_least_squares import LatentLeastSquares
from .slice_wise_function import SliceWiseFunction
from .patch import PatchGenerativeRegulariser
from .denoiser_prior import DenoiserPrior

__all__ = ["GenerativeRegulariser", "SoftGenerativeRegulariser", "RangeGenerativeRegulariser",
           "SparseDeviationGenerativeRegulariser", "LatentLeastSquares", "SliceWiseFunction",
           "PatchGenerativeRegulariser", "soft_threshold", "DenoiserPrior",
           "StructuredSoftRegulariser"]
