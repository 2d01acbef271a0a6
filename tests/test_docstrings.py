"""Every public name has a docstring in CIL's (numpydoc) style: a summary, the formula where
there is one, Parameters when it takes arguments, Returns for functions."""
import importlib
import inspect
import re
from pathlib import Path

import pytest

PACKAGES = ["cil_genreg", "cil_genreg.latent", "cil_genreg.models", "cil_genreg.datasets",
            "cil_genreg.training", "cil_genreg.algorithms"]

# Module-level constants cannot carry a docstring: they are documented by a ``#:`` comment
# on the line above their assignment (Sphinx autodoc's convention).

REGULARISER_METHODS = ("__call__", "gradient", "proximal", "convex_conjugate", "reset", "image",
                       "estimate_L")
ROOT = Path(importlib.import_module("cil_genreg").__file__).parent


def exported():
    for package in PACKAGES:
        module = importlib.import_module(package)
        for name in module.__all__:
            yield package, name, getattr(module, name)


EXPORTED = list(exported())
CALLABLES = [(p, n, o) for p, n, o in EXPORTED if inspect.isclass(o) or inspect.isfunction(o)]
CONSTANTS = [(p, n, o) for p, n, o in EXPORTED if (p, n, o) not in CALLABLES]


def ident(item):
    return f"{item[0]}.{item[1]}"


def takes_arguments(obj):
    if inspect.isclass(obj) and issubclass(obj, BaseException):
        return False  # an exception takes its message, which numpydoc does not document
    return len(inspect.signature(obj).parameters) > 0


def sections(doc):
    """The numpydoc section titles of a docstring (a title line underlined with dashes)."""
    lines = [line.strip() for line in (doc or "").splitlines()]
    return {a for a, b in zip(lines, lines[1:]) if a and b and set(b) == {"-"}}


def test_every_package_exports_something():
    for package in PACKAGES:
        assert importlib.import_module(package).__all__


@pytest.mark.parametrize("item", CALLABLES, ids=ident)
def test_exported_callable_has_a_summary_and_its_sections(item):
    package, name, obj = item
    doc = inspect.getdoc(obj)
    assert doc and doc.strip(), f"{package}.{name} has no docstring"
    found = sections(doc)
    if takes_arguments(obj):
        assert "Parameters" in found, f"{package}.{name} takes arguments but documents no Parameters"
    if inspect.isfunction(obj):
        assert "Returns" in found, f"{package}.{name} is a function but documents no Returns"


@pytest.mark.parametrize("item", CONSTANTS, ids=ident)
def test_exported_constant_is_documented_where_it_is_defined(item):
    package, name, obj = item
    pattern = re.compile(rf"^{name}\s*=", re.M)
    for path in ROOT.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        match = pattern.search(text)
        if match:
            before = text[:match.start()].rstrip("\n").splitlines()
            assert before and before[-1].startswith("#:"), \
                f"{name} in {path} has no '#:' documentation comment above it"
            return
    pytest.fail(f"{package}.{name}: no module-level assignment found under {ROOT}")


def regulariser_methods():
    import cil_genreg

    for cls in (cil_genreg.RangeGenerativeRegulariser, cil_genreg.SoftGenerativeRegulariser,
                cil_genreg.SparseDeviationGenerativeRegulariser, cil_genreg.LatentLeastSquares):
        for name in REGULARISER_METHODS:
            method = getattr(cls, name, None)
            if method is not None and method.__module__.startswith("cil_genreg"):
                yield cls, name, method


@pytest.mark.parametrize("cls,name,method", list(regulariser_methods()),
                         ids=lambda v: v if isinstance(v, str) else getattr(v, "__name__", ""))
def test_regulariser_methods_state_their_formula_parameters_and_returns(cls, name, method):
    doc = inspect.getdoc(method)
    assert doc and doc.strip(), f"{cls.__name__}.{name} has no docstring"
    found = sections(doc)
    if name != "reset":
        assert re.search(r"(:math:`|\.\. math::)", doc), f"{cls.__name__}.{name} states no formula"
    if "raise NotImplementedError" in inspect.getsource(method):  # e.g. a nonsmooth gradient
        assert "Raises" in found, f"{cls.__name__}.{name} always raises: document it"
        return
    assert "Returns" in found, f"{cls.__name__}.{name} documents no Returns"
    if len(inspect.signature(method).parameters) > 1:  # besides self
        assert "Parameters" in found, f"{cls.__name__}.{name} documents no Parameters"
