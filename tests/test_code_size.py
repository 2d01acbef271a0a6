"""The package stays readable: no module over 400 lines, no function over 80 lines of code
(its docstring aside)."""
import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "cil_genreg"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80


def _modules():
    return sorted(PACKAGE.rglob("*.py"))


def _code_lines(node):
    """Lines of a function from its signature to its end, less its docstring."""
    lines = node.end_lineno - node.lineno + 1
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None),
                                                             ast.Constant) \
            and isinstance(body[0].value.value, str):
        lines -= body[0].end_lineno - body[0].lineno + 1
    return lines


def test_no_module_over_400_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in _modules()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert not long, f"split these modules (lines): {long}"


def test_no_function_over_80_lines_of_code():
    long = {}
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = _code_lines(node)
                if n > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(PACKAGE)}:{node.name}"] = n
    assert not long, f"split these functions (lines of code): {long}"


def test_the_size_check_sees_a_long_function():
    source = "def f():\n    '''doc\n    more'''\n" + "    x = 1\n" * 81
    assert _code_lines(ast.parse(source).body[0]) == 82
