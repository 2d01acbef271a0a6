"""Module paths of cil_genreg before its modules moved into rooms, kept working for one release.

``import cil_genreg.forward`` (or ``from cil_genreg.methods import reconstruct``, or the attribute
``cil_genreg.hybrid``) gives the module at its new path, :data:`MOVED`, *the same module object*
(so monkeypatching either name patches both), with a :class:`DeprecationWarning` that names the
new path. The old names go in cil_genreg 0.3.
"""
import importlib
import importlib.abc
import importlib.util
import os
import sys
import warnings

#: old name under ``cil_genreg`` → new module path
MOVED = {
    "generator_operator": "operators.generator_operator",
    "hybrid": "algorithms.hybrid",
    "z_tv": "algorithms.z_tv",
    "forward": "physics.forward",
    "methods": "experiments.methods",
    "comparison": "experiments.comparison",
    "reports": "experiments.reports",
    "parameter_choice": "experiments.parameter_choice",
    "evaluation": "experiments.evaluation",
    "slabs": "experiments.slabs",
    "bridge": "utilities.bridge",
    "callbacks": "utilities.callbacks",
    "metrics": "utilities.metrics",
    "validation": "utilities.validation",
    "output_safety": "utilities.output_safety",
    "distributed": "utilities.distributed",
    "defaults": "utilities.defaults",
}

PACKAGE = __name__.rsplit(".", 2)[0]
_FACE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "__init__.py")


def new_name(old):
    """The module's path now, e.g. ``cil_genreg.physics.forward`` for ``cil_genreg.forward``."""
    return f"{PACKAGE}.{MOVED[old.rsplit('.', 1)[-1]]}"


def _caller_stacklevel():
    """The stack level of the first frame outside this module, importlib and the package face:
    the user's import line, where the warning should point."""
    frame, level = sys._getframe(1), 1
    while frame is not None and (frame.f_code.co_filename in (__file__, _FACE)
                                 or "importlib" in frame.f_code.co_filename):
        frame, level = frame.f_back, level + 1
    return level


def warn_moved(old):
    """Say that ``old`` moved, naming the new path (at the user's import line)."""
    warnings.warn(f"{old} moved to {new_name(old)}; import it from there (the old name goes in "
                  "cil_genreg 0.3).", DeprecationWarning, stacklevel=_caller_stacklevel())


def import_moved(old):
    """The module that ``old`` (e.g. ``cil_genreg.forward``) names now, with the warning."""
    warn_moved(old)
    return importlib.import_module(new_name(old))


class MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves an old module path to the module at its new path (the same object)."""

    def find_spec(self, fullname, path=None, target=None):
        package, _, leaf = fullname.rpartition(".")
        if package == PACKAGE and leaf in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        module = import_moved(spec.name)
        self._spec = module.__spec__
        return module

    def exec_module(self, module):
        # the import system set the old name's spec on the module: give it its own back
        module.__spec__ = self._spec


def install():
    """Put :class:`MovedModuleFinder` on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
