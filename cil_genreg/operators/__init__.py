"""CIL operators of this package (one a file, as in ``cil.optimisation.operators``)."""
from .._cil import require_cil

require_cil()
from .slice_wise_operator import SliceWiseOperator
from .patch_operator import PatchOperator

__all__ = ["SliceWiseOperator", "PatchOperator"]
