"""cil_genreg: generative regularisers for the Core Imaging Library (CIL).

Solve ``argmin_x ||Ax - y||^2 + lambda R_G(x)`` where ``G: z -> x`` is a trained generative
model (VAE, AE or GAN decoder) and ``R_G`` is one of

* :class:`RangeGenerativeRegulariser`: ``R(x) = min_z iota{G(z) = x} + ||z||^2``
* :class:`SoftGenerativeRegulariser`: ``R(x) = min_z ||G(z) - x||^2 + mu ||z||^2``
* :class:`SparseDeviationGenerativeRegulariser`: ``R(x) = min_z ||x - G(z)||_1 + mu ||z||^2``

each a CIL :class:`~cil.optimisation.functions.Function` whose inner latent problem is solved
with PyTorch autograd (:mod:`cil_genreg.latent`). :class:`LatentLeastSquares` solves the range
problem directly in latent space, ``min_z c||A G(z) - y||^2`` (plus a CIL prior on ``z``).

The torch side (:mod:`~cil_genreg.latent`, :mod:`~cil_genreg.models`,
:mod:`~cil_genreg.training`, :mod:`~cil_genreg.evaluation`, :mod:`~cil_genreg.datasets`)
imports without CIL; the CIL-facing names below load on first use (PEP 562) and, without CIL,
raise an ImportError that says how to install it.
"""
import importlib

__version__ = "0.1.0"

#: CIL-facing name → the module that defines it
_CIL_NAMES = {
    "GenerativeRegulariser": ".functions",
    "RangeGenerativeRegulariser": ".functions",
    "SoftGenerativeRegulariser": ".functions",
    "SparseDeviationGenerativeRegulariser": ".functions",
    "LatentLeastSquares": ".functions",
    "GeneratorOperator": ".generator_operator",
    "PatchGenerativeRegulariser": ".functions",
    "PatchOperator": ".operators",
    "as_tensor": ".bridge",
    "from_tensor": ".bridge",
    "CILOperatorFunction": ".bridge",
    "cil_operator_to_torch": ".bridge",
}

#: subpackages and modules reachable as attributes (``cil_genreg.models.pretrained(...)``)
_SUBMODULES = ("datasets", "models", "latent", "training", "evaluation", "metrics", "functions",
               "operators", "bridge", "generator_operator", "callbacks", "parameter_choice",
               "forward", "methods", "comparison", "reports", "commands", "cli", "hybrid")

__all__ = list(_CIL_NAMES)


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    module = _CIL_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'cil_genreg' has no attribute {name!r}")
    from ._cil import require_cil
    require_cil()
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_CIL_NAMES) | set(_SUBMODULES))
