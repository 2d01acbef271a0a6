"""The package root holds only its faces and rooms by role; the old module paths still import."""
import importlib
import pathlib
import subprocess
import sys

import cil_genreg
from cil_genreg.utilities.moved import MOVED

ROOT = pathlib.Path(cil_genreg.__file__).parent
ROOMS = {"functions", "operators", "algorithms", "latent", "models", "training", "datasets",
         "physics", "experiments", "utilities", "commands"}


def test_root_holds_only_the_faces_and_rooms():
    modules = {p.name for p in ROOT.glob("*.py")}
    assert modules == {"__init__.py", "cli.py"}, modules
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert packages == ROOMS, packages
    for room in ROOMS:
        doc = importlib.import_module(f"cil_genreg.{room}").__doc__
        assert doc and len(doc.split()) >= 8, f"cil_genreg.{room} needs a docstring saying its role"


CHECK_OLD_PATHS = """
import importlib, sys, warnings
from cil_genreg.utilities.moved import MOVED
for old, new in sorted(MOVED.items()):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module("cil_genreg." + old)
    same = module is importlib.import_module("cil_genreg." + new)
    print(old, same, module.__spec__.name, "|".join(str(w.message) for w in caught
                                                    if w.category is DeprecationWarning))
"""


def test_old_paths_give_the_same_module_with_a_warning():
    run = subprocess.run([sys.executable, "-c", CHECK_OLD_PATHS], capture_output=True,
                         text=True, timeout=120, cwd=str(ROOT.parent))
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    assert len(lines) == len(MOVED)
    for line in lines:
        old, same, name, message = line.split(" ", 3)
        assert same == "True" and name == f"cil_genreg.{MOVED[old]}", line
        assert f"cil_genreg.{old} moved to cil_genreg.{MOVED[old]}" in message, line


def test_old_attribute_of_the_package_warns_and_is_the_new_module():
    code = ("import warnings\nimport cil_genreg\nwith warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always')\n    m = cil_genreg.hybrid\n"
            "import cil_genreg.algorithms.hybrid as h\nprint(m is h, len(w), w[0].category.__name__)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=str(ROOT.parent))
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["True", "1", "DeprecationWarning"]
