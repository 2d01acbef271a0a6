"""cil_genreg: generative regularisers for the Core Imaging Library (CIL).

Solve ``argmin_x ||Ax - y||^2 + lambda R_G(x)`` where ``G: z -> x`` is a trained generative
model (VAE, AE or GAN decoder) and ``R_G`` is one of

* :class:`RangeGenerativeRegulariser`: ``R(x) = min_z iota{G(z) = x} + ||z||^2``
* :class:`SoftGenerativeRegulariser`: ``R(x) = min_z ||G(z) - x||^2 + mu ||z||^2``
* :class:`SparseDeviationGenerativeRegulariser`: ``R(x) = min_z ||x - G(z)||_1 + mu ||z||^2``

each a CIL :class:`~cil.optimisation.functions.Function` whose inner latent problem is solved
with PyTorch autograd (:mod:`cil_genreg.latent`). :class:`LatentLeastSquares` solves the range
problem directly in latent space, ``min_z c||A G(z) - y||^2`` (plus a CIL prior on ``z``).

The package's rooms, by role (as CIL's own ``optimisation/{functions,operators,algorithms}``,
``processors`` and ``utilities``):

* CIL building blocks: :mod:`~cil_genreg.functions` (the regularisers), :mod:`~cil_genreg.operators`
  (the generator, patches, slice-wise operators), :mod:`~cil_genreg.algorithms` (``LatentLBFGS``,
  the TV hybrid, TV along z);
* the torch side: :mod:`~cil_genreg.latent` (the latent solver), :mod:`~cil_genreg.models`,
  :mod:`~cil_genreg.training`, :mod:`~cil_genreg.datasets`;
* experiments: :mod:`~cil_genreg.physics` (the forward problem: geometries, projectors, noise)
  and :mod:`~cil_genreg.experiments` (methods, the comparison harness, reports, the evaluation
  of a generator);
* plumbing: :mod:`~cil_genreg.utilities` (input checks, safe outputs, metrics, the
  DataContainer ⇄ torch bridge, callbacks, ``torchrun``);
* the faces: this module and :mod:`~cil_genreg.cli` (with :mod:`~cil_genreg.commands`).

The torch side (and :mod:`cil_genreg.experiments.evaluation`) imports without CIL; the
CIL-facing names below load on first use (PEP 562) and, without CIL, raise an ImportError that
says how to install it. The modules' old paths at the package root (``cil_genreg.forward``,
``cil_genreg.methods``, …) still import, with a DeprecationWarning naming the new one
(:mod:`cil_genreg.utilities.moved`).
"""
import importlib

from .utilities import moved as _moved

__version__ = "0.1.0"

#: CIL-facing name → the module that defines it
_CIL_NAMES = {
    "GenerativeRegulariser": ".functions",
    "RangeGenerativeRegulariser": ".functions",
    "SoftGenerativeRegulariser": ".functions",
    "SparseDeviationGenerativeRegulariser": ".functions",
    "StructuredSoftRegulariser": ".functions",
    "LatentLeastSquares": ".functions",
    "GeneratorOperator": ".operators.generator_operator",
    "PatchGenerativeRegulariser": ".functions",
    "DenoiserPrior": ".functions",
    "PatchOperator": ".operators",
    "as_tensor": ".utilities.bridge",
    "from_tensor": ".utilities.bridge",
    "CILOperatorFunction": ".utilities.bridge",
    "cil_operator_to_torch": ".utilities.bridge",
}

#: subpackages and modules reachable as attributes (``cil_genreg.models.pretrained(...)``)
_SUBMODULES = ("datasets", "models", "latent", "training", "functions", "operators",
               "algorithms", "physics", "experiments", "utilities", "commands", "cli")

__all__ = list(_CIL_NAMES)

_moved.install()


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _moved.MOVED:
        return importlib.import_module(f"{__name__}.{name}")  # the finder warns
    module = _CIL_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'cil_genreg' has no attribute {name!r}")
    from .utilities._cil import require_cil
    require_cil()
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_CIL_NAMES) | set(_SUBMODULES))
