"""Loading a demo script as a module, and reading its summary, for the demo tests."""
import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_demo(name):
    """``demos/NAME.py`` as a module (the demos are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "demos", name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def best_psnr(summary, method):
    """Mean PSNR of ``method`` at its best λ (or of the initial reconstruction)."""
    return next(s["psnr"] for s in summary
                if s["method"] == method and s["choice"] in ("best", "initial"))
