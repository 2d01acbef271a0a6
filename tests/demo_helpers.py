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


def write_fastmri(path, images, edge=0, key="reconstruction_esc"):
    """A file laid out like fastMRI's single-coil val/train files: ``key`` float32 of shape
    (slices, 320, 320) at fastMRI's magnitudes (~1e-4), k-space and attributes, holding
    ``images`` (N, s, s) with s dividing 320, upsampled, between ``edge`` empty slices at each
    end (the mostly empty edge slices of real volumes)."""
    import h5py
    import numpy as np

    images = np.asarray(images, np.float32)
    factor = 320 // images.shape[-1]
    vol = np.zeros((len(images) + 2 * edge, 320, 320), np.float32)
    vol[edge:edge + len(images)] = 3e-4 * np.kron(images, np.ones((factor, factor), np.float32))
    with h5py.File(path, "w") as f:
        f.create_dataset(key, data=vol)
        f.create_dataset("kspace", data=np.zeros((len(vol), 8, 8), np.complex64))
        f.attrs["acquisition"] = "CORPD_FBK"
        f.attrs["patient_id"] = "unit-test"
    return path
