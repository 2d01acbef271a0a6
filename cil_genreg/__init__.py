"""cil_genreg: generative regularisers for the Core Imaging Library (CIL).

Solve ``argmin_x ||Ax - y||^2 + lambda R_G(x)`` where ``G: z -> x`` is a trained generative
model (VAE, AE or GAN decoder) and ``R_G`` is one of

* :class:`RangeGenerativeRegulariser`: ``R(x) = min_z iota{G(z) = x} + ||z||^2``
* :class:`SoftGenerativeRegulariser`: ``R(x) = min_z ||G(z) - x||^2 + mu ||z||^2``
* :class:`SparseDeviationGenerativeRegulariser`: ``R(x) = min_z ||x - G(z)||_1 + mu ||z||^2``

each a CIL :class:`~cil.optimisation.functions.Function` whose inner latent problem is solved
with PyTorch autograd (:mod:`cil_genreg.latent`). :class:`LatentLeastSquares` solves the range
problem directly in latent space, ``min_z c||A G(z) - y||^2`` (plus a CIL prior on ``z``).
"""
from ._cil import require_cil

require_cil()

from .functions import (  # noqa: E402
    GenerativeRegulariser,
    RangeGenerativeRegulariser,
    SoftGenerativeRegulariser,
    SparseDeviationGenerativeRegulariser,
    LatentLeastSquares,
    PatchGenerativeRegulariser,
)
from .generator_operator import GeneratorOperator  # noqa: E402
from .patch_operator import PatchOperator  # noqa: E402
from .bridge import as_tensor, from_tensor, CILOperatorFunction, cil_operator_to_torch  # noqa: E402
from . import datasets, models  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "GenerativeRegulariser",
    "RangeGenerativeRegulariser",
    "SoftGenerativeRegulariser",
    "SparseDeviationGenerativeRegulariser",
    "LatentLeastSquares",
    "GeneratorOperator",
    "PatchGenerativeRegulariser",
    "PatchOperator",
    "as_tensor",
    "from_tensor",
    "CILOperatorFunction",
    "cil_operator_to_torch",
]
