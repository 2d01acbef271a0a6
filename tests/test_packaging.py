"""Packaging: setup.py, the conda recipe and environment.yml agree, and the wheel is complete.

CIL is a conda package (not on PyPI), so setup.py lists every run requirement except CIL and
astra-toolbox, while ``recipe/meta.yaml`` and ``environment.yml`` list them all. These tests keep
the three in step (names only; version pins are free), check the console script, build a wheel
from a copy of the tree and look inside it, and check the message a user without CIL gets.

setup.py is read with :mod:`ast`, never run. In a conda-build test environment (where only the
files in the recipe's ``test/source_files`` are present) the wheel tests are skipped.
"""
import ast
import configparser
import importlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import yaml  # noqa: E402  (pyyaml: installed by .ci/run and the recipe's test requirements)

ROOT = Path(__file__).resolve().parents[1]
SETUP_PY = ROOT / "setup.py"
RECIPE = ROOT / "recipe" / "meta.yaml"
ENVIRONMENT = ROOT / "environment.yml"
PACKAGE_DIR = ROOT / "cil_genreg"

# pip name -> conda name, where they differ
PIP_TO_CONDA = {"torch": "pytorch"}
# run requirements that only conda has (not in setup.py's INSTALL_REQUIRES)
CONDA_ONLY = {"cil", "astra-toolbox"}
# what the wheel must carry besides the modules: package data in the tree at the time
PACKAGE_DATA = ["models/weights/*.safetensors", "models/weights/*.md", "datasets/data/*.npz"]


# -- readers -------------------------------------------------------------------------------
def _normalise(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def pip_name(spec):
    """'torch>=2.0' -> 'torch'; 'numpy ; python_version<"4"' -> 'numpy'."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
    assert match, f"cannot read a requirement name from {spec!r}"
    return _normalise(match.group(1))


def conda_name(spec):
    """'pytorch >=2.0' -> 'pytorch'; 'python=3.11' -> 'python'; 'pytorch=*=cpu*' -> 'pytorch'."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", str(spec))
    assert match, f"cannot read a package name from {spec!r}"
    return _normalise(match.group(1))


def read_setup_py():
    """INSTALL_REQUIRES, EXTRAS_REQUIRE and the literal keyword arguments of setup(), from the
    syntax tree of setup.py (which is not run)."""
    if not SETUP_PY.exists():
        pytest.skip("setup.py is not here (an installed-package test run)")
    tree = ast.parse(SETUP_PY.read_text(encoding="utf-8"))
    info = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id in ("INSTALL_REQUIRES",
                                                                    "EXTRAS_REQUIRE"):
                    info[target.id] = ast.literal_eval(node.value)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup":
            for kw in node.keywords:
                try:
                    info[kw.arg] = ast.literal_eval(kw.value)
                except ValueError:
                    info[kw.arg] = kw.value  # a name or an expression, resolved below
    for key in ("install_requires", "extras_require"):
        value = info.get(key)
        if isinstance(value, ast.Name):
            assert value.id in info, f"setup({key}={value.id}) but {value.id} is not assigned"
            info[key] = info[value.id]
    assert isinstance(info.get("install_requires"), list), \
        "setup.py must pass install_requires as a literal list or a list assigned to a name"
    return info


def render_jinja(text):
    """Render the little jinja conda-build recipes use: ``{% set k = "v" %}`` and ``{{ k }}``
    (``{{ PYTHON }}`` becomes ``python``)."""
    variables = {"PYTHON": "python"}
    for key, value in re.findall(r"{%-?\s*set\s+(\w+)\s*=\s*[\"']([^\"']*)[\"']\s*-?%}", text):
        variables[key] = value
    text = re.sub(r"{%.*?%}", "", text)

    def substitute(match):
        key = match.group(1)
        assert key in variables, f"recipe uses {{{{ {key} }}}}, which is not set"
        return variables[key]

    rendered = re.sub(r"{{\s*(\w+)\s*}}", substitute, text)
    assert "{{" not in rendered and "{%" not in rendered, \
        "recipe/meta.yaml uses jinja beyond `set` and plain `{{ name }}`: extend render_jinja"
    return rendered


def read_recipe():
    if not RECIPE.exists():
        pytest.skip("recipe/meta.yaml is not here")
    text = RECIPE.read_text(encoding="utf-8")
    recipe = yaml.safe_load(render_jinja(text))
    try:
        import jinja2
    except ImportError:
        return recipe
    # conda-build renders with jinja2: it must give the same recipe
    by_jinja = yaml.safe_load(jinja2.Template(text, undefined=jinja2.StrictUndefined,
                                             keep_trailing_newline=True)
                              .render(PYTHON="python"))
    assert by_jinja == recipe, "the recipe renders differently with jinja2"
    return recipe


def read_environment():
    if not ENVIRONMENT.exists():
        pytest.skip("environment.yml is not here")
    return yaml.safe_load(ENVIRONMENT.read_text(encoding="utf-8"))


def entry_point_pairs(specs):
    """'cil-genreg = cil_genreg.cli:main' -> ('cil-genreg', 'cil_genreg.cli:main')."""
    pairs = set()
    for spec in specs:
        name, _, target = spec.partition("=")
        assert target, f"entry point {spec!r} has no '='"
        pairs.add((name.strip(), target.strip()))
    return pairs


def _diff(expected, actual):
    return (f"missing: {sorted(expected - actual)}; not expected: {sorted(actual - expected)}")


# -- 1. recipe vs setup.py -----------------------------------------------------------------
def test_recipe_run_requirements_equal_setup_py_plus_cil_and_astra():
    setup = read_setup_py()
    recipe = read_recipe()
    run = recipe["requirements"]["run"]
    names = [conda_name(spec) for spec in run]
    assert len(names) == len(set(names)), f"a run requirement is listed twice: {names}"
    expected = {PIP_TO_CONDA.get(pip_name(spec), pip_name(spec))
                for spec in setup["install_requires"]} | CONDA_ONLY
    actual = set(names) - {"python"}
    assert actual == expected, "recipe run requirements vs setup.py INSTALL_REQUIRES + " \
        "cil + astra-toolbox: " + _diff(expected, actual)
    # the Python bound is setup.py's python_requires
    python = [str(spec) for spec in run if conda_name(spec) == "python"]
    assert python, "recipe run requirements lack python"
    assert re.sub(r"\s", "", python[0]) == "python" + setup["python_requires"].replace(" ", "")


def test_recipe_covers_setup_py_extras():
    """Every non-test extra of setup.py is a run requirement or a run_constrained optional."""
    setup = read_setup_py()
    recipe = read_recipe()
    reqs = recipe["requirements"]
    known = {conda_name(s) for s in reqs["run"]} | \
        {conda_name(s) for s in reqs.get("run_constrained") or []}
    for extra, specs in setup.get("extras_require", {}).items():
        if extra in ("test", "tests", "dev", "docs"):
            continue
        for spec in specs:
            name = PIP_TO_CONDA.get(pip_name(spec), pip_name(spec))
            assert name in known, f"setup.py extra {extra!r} needs {name}, not in the recipe"
    assert "tigre" in {conda_name(s) for s in reqs.get("run_constrained") or []}


def test_recipe_metadata_matches_setup_py():
    setup = read_setup_py()
    recipe = read_recipe()
    assert recipe["package"]["name"] == setup["name"] == "cil-genreg"
    assert str(recipe["package"]["version"]) == setup["version"]
    assert recipe["source"]["path"] == ".."
    build = recipe["build"]
    assert build["noarch"] == "python"
    assert re.fullmatch(r"python -m pip install \. --no-deps( -vv)?", build["script"].strip())
    test = recipe["test"]
    assert "cil_genreg" in test["imports"]
    assert "tests" in test["source_files"]
    assert "pytest" in {conda_name(s) for s in test["requires"]}
    commands = test["commands"]
    assert any(c.strip().startswith("cil-genreg --help") for c in commands)
    pytest_commands = [c for c in commands if c.strip().startswith("pytest")]
    assert pytest_commands, "the recipe's tests run no pytest"
    for path in re.findall(r"tests/\S+\.py", " ".join(pytest_commands)):
        assert (ROOT / path).exists(), f"the recipe runs {path}, which does not exist"
    # the files the recipe's test copies must exist in the checkout
    for path in test["source_files"]:
        assert (ROOT / path).exists(), f"recipe test/source_files lists missing {path}"


# -- 2. environment.yml ----------------------------------------------------------------------
def test_environment_lists_cil_and_every_run_requirement_and_installs_the_package():
    env = read_environment()
    recipe = read_recipe()
    assert env["name"] == "cil-genreg"
    channels = env["channels"]
    assert "ccpi" in channels and "conda-forge" in channels
    deps = env["dependencies"]
    conda_deps = {conda_name(d) for d in deps if isinstance(d, str)}
    needed = {conda_name(s) for s in recipe["requirements"]["run"]}
    assert {"cil", "astra-toolbox", "python"} <= needed
    assert needed <= conda_deps, "environment.yml lacks run requirements: " + \
        str(sorted(needed - conda_deps))
    assert {"pytest", "pip"} <= conda_deps
    pip_sections = [d["pip"] for d in deps if isinstance(d, dict) and "pip" in d]
    assert pip_sections, "environment.yml has no pip: section"
    pip_lines = [re.sub(r"\s+", " ", line.strip()) for section in pip_sections
                 for line in section]
    assert "-e ." in pip_lines, f"environment.yml does not install the checkout: {pip_lines}"
    # and it is the project's python
    python = [d for d in deps if isinstance(d, str) and conda_name(d) == "python"]
    assert python == ["python=3.11"]


# -- 3. the console script -------------------------------------------------------------------
def test_recipe_entry_point_equals_setup_py_console_script():
    setup = read_setup_py()
    recipe = read_recipe()
    scripts = entry_point_pairs(setup["entry_points"]["console_scripts"])
    assert ("cil-genreg", "cil_genreg.cli:main") in scripts
    assert entry_point_pairs(recipe["build"]["entry_points"]) == scripts


# -- 4. the wheel ----------------------------------------------------------------------------
def _package_data_in_tree():
    files = set()
    for pattern in PACKAGE_DATA:
        files |= {p.relative_to(ROOT).as_posix() for p in PACKAGE_DIR.glob(pattern)}
    return files


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """A wheel built from a copy of the tree (so no build/ or egg-info lands in the checkout)."""
    if not (PACKAGE_DIR.is_dir() and SETUP_PY.exists()):
        pytest.skip("no source tree here (an installed-package test run)")
    src = tmp_path_factory.mktemp("src")
    shutil.copytree(PACKAGE_DIR, src / "cil_genreg",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("setup.py", "README.md", "setup.cfg", "pyproject.toml", "MANIFEST.in",
                 "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, src / name)
    dist = tmp_path_factory.mktemp("dist")
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps",
                           "--no-build-isolation", "--no-index", "-w", str(dist), "-q"],
                          cwd=src, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"pip wheel failed:\n{proc.stdout}\n{proc.stderr}"
    wheels = list(dist.glob("cil_genreg-*.whl"))
    assert len(wheels) == 1, f"expected one wheel, got {wheels}"
    return wheels[0]


def test_tree_ships_pretrained_weights():
    if not PACKAGE_DIR.is_dir():
        pytest.skip("no source tree here (an installed-package test run)")
    weights = sorted(PACKAGE_DIR.glob("models/weights/*.safetensors"))
    assert weights, "cil_genreg/models/weights/ holds no .safetensors: the pretrained models " \
        "(cil_genreg.models.pretrained) are not shipped"


def test_wheel_contains_package_data_modules_and_console_script(wheel):
    setup = read_setup_py()
    version = setup["version"]
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        dist_info = f"cil_genreg-{version}.dist-info"
        entry_points = zf.read(f"{dist_info}/entry_points.txt").decode()
        metadata = zf.read(f"{dist_info}/METADATA").decode()
    # every data file in the tree now, and every module
    data = _package_data_in_tree()
    assert data <= names, f"the wheel lacks package data: {sorted(data - names)}"
    modules = {p.relative_to(ROOT).as_posix() for p in PACKAGE_DIR.rglob("*.py")
               if "__pycache__" not in p.parts}
    assert modules <= names, f"the wheel lacks modules: {sorted(modules - names)}"
    # the console script, and the module it points at
    parser = configparser.ConfigParser()
    parser.read_string(entry_points)
    scripts = {(k, v.strip()) for k, v in parser["console_scripts"].items()}
    assert scripts == entry_point_pairs(setup["entry_points"]["console_scripts"])
    for _, target in scripts:
        module = target.partition(":")[0]
        path = module.replace(".", "/")
        assert f"{path}.py" in names or f"{path}/__init__.py" in names, \
            f"the console script points at {module}, which is not in the wheel"
    # the wheel's dependencies are INSTALL_REQUIRES (extras aside)
    requires = {pip_name(line.split(":", 1)[1]) for line in metadata.splitlines()
                if line.startswith("Requires-Dist:") and "extra ==" not in line}
    assert requires == {pip_name(s) for s in setup["install_requires"]}


# -- 5. no CIL -------------------------------------------------------------------------------
BLOCK_CIL = r"""
import importlib
import sys

class BlockCIL:
    def find_spec(self, name, path=None, target=None):
        if name == "cil" or name.startswith("cil."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

for mod in [m for m in sys.modules if m == "cil" or m.startswith("cil.")]:
    del sys.modules[mod]
sys.meta_path.insert(0, BlockCIL())
import cil_genreg
for name in ("latent", "models", "training", "experiments.evaluation", "datasets", "utilities"):
    importlib.import_module("cil_genreg." + name)
assert not [m for m in sys.modules if m == "cil" or m.startswith("cil.")]
print("torch side imported")
for what in ("cil_genreg.SoftGenerativeRegulariser", "import cil_genreg.functions"):
    try:
        if what.startswith("import "):
            importlib.import_module(what.split()[1])
        else:
            cil_genreg.SoftGenerativeRegulariser
    except ImportError as err:
        print(type(err).__name__ + ": " + str(err).replace("\n", " "))
    else:
        print(what + " worked without CIL")
"""


def test_torch_side_imports_without_cil_and_cil_side_says_how_to_install_it():
    spec = importlib.util.find_spec("cil_genreg")
    assert spec is not None and spec.origin, "cil_genreg is not importable"
    where = str(Path(spec.origin).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([where] + [p for p in [env.get("PYTHONPATH")] if p])
    proc = subprocess.run([sys.executable, "-c", BLOCK_CIL], cwd=where, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    lines = proc.stdout.splitlines()
    assert lines[0] == "torch side imported", proc.stdout
    assert len(lines) == 3, proc.stdout
    for line in lines[1:]:
        kind, _, message = line.partition(": ")
        assert kind in ("ImportError", "ModuleNotFoundError"), line
        assert "conda install" in message and "ccpi" in message, message
        assert re.search(r"\bcil\b", message), message


TRAIN_WITHOUT_CIL = BLOCK_CIL.split("import cil_genreg\n")[0] + r"""
import numpy as np
from cil_genreg.cli import main
np.save(sys.argv[1], np.random.default_rng(0).random((40, 16, 16)).astype(np.float32))
status = main(["train", "--data", sys.argv[1], "--epochs", "1", "--latent-dim", "2",
               "--width", "2", "--batch-size", "16", "--quiet", "--out", sys.argv[2]])
assert not [m for m in sys.modules if m == "cil" or m.startswith("cil.")]
print("status", status)
"""


def test_cil_genreg_train_runs_without_cil(tmp_path):
    """Training is torch only: the command line's parser (and `train`) never imports CIL."""
    spec = importlib.util.find_spec("cil_genreg")
    where = str(Path(spec.origin).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([where] + [p for p in [env.get("PYTHONPATH")] if p])
    out = tmp_path / "g.safetensors"
    proc = subprocess.run([sys.executable, "-c", TRAIN_WITHOUT_CIL, str(tmp_path / "x.npy"),
                           str(out)], cwd=where, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    assert proc.stdout.splitlines()[-1] == "status 0" and out.is_file()


# -- 6. the API page names every public name --------------------------------------------------
@pytest.mark.parametrize("module", ["cil_genreg", "cil_genreg.latent", "cil_genreg.models",
                                    "cil_genreg.datasets", "cil_genreg.training",
                                    "cil_genreg.algorithms"])
def test_api_page_lists_every_public_name(module):
    page = ROOT / "docs" / "api.md"
    if not page.exists():
        pytest.skip("docs/api.md is not here")
    text = page.read_text(encoding="utf-8")
    names = importlib.import_module(module).__all__
    missing = [name for name in names if not re.search(rf"`{re.escape(name)}\b", text)]
    assert not missing, f"docs/api.md does not list {module}: {missing}"


# -- 7. the torch maths is kept apart from CIL -------------------------------------------------
@pytest.mark.parametrize("package", ["latent", "models"])
def test_torch_only_packages_never_import_cil(package):
    import ast
    offenders = []
    for path in sorted((ROOT / "cil_genreg" / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0
                     else [])
            offenders += [f"{path.name}:{node.lineno} {n}" for n in names
                          if n == "cil" or n.startswith("cil.")]
    assert not offenders, offenders
