"""CIL operators of this package (one a file, as in ``cil.optimisation.operators``): the
generator z ↦ G(z) (nonlinear), patches of an image, and a 2D operator applied slice by slice."""
from ..utilities._cil import require_cil

require_cil()
from .slice_wise_operator import SliceWiseOperator
from .patch_operator import PatchOperator
from .generator_operator import GeneratorOperator

__all__ = ["SliceWiseOperator", "PatchOperator", "GeneratorOperator"]
