"""The knee demo on fastMRI-like files, on tiny configurations.

(The shapes, knee-without-data and slice-wise volume demos are tested in test_demos.py.)"""
import h5py
import numpy as np
import pytest

from cil_genreg import datasets

from demo_helpers import load_demo, write_fastmri


def _knee_slices(n, seed=123):
    """Non-empty 32 x 32 shapes standing in for knee slices (written upsampled to 320 x 320)."""
    images = datasets.shapes(4 * n + 4, size=32, seed=seed)
    return images[images.reshape(len(images), -1).max(axis=1) > 0][:n]


def _kspace_only(path):
    with h5py.File(path, "w") as f:  # fastMRI's knee test set: no reconstructions
        f.create_dataset("kspace", data=np.zeros((3, 8, 8), np.complex64))


@pytest.mark.parametrize("case,says", [
    ("test set", "fastMRI's test (and challenge) set ships k-space only; use the single-coil "
                 "*val* or *train* files"),
    ("not hdf5", "is not a readable HDF5 file"),
    ("no slices left", "hold no slices in the selection slices[10:-10]"),
])
def test_knee_demo_bad_files_are_a_message_and_status_2(tmp_path, capsys, case, says):
    path = tmp_path / "file1000001.h5"
    if case == "test set":
        _kspace_only(path)
    elif case == "not hdf5":
        path.write_bytes(b"<html>Access denied</html>")
    else:  # 4 slices, 10 dropped at each end by default
        write_fastmri(path, _knee_slices(4))
    status = load_demo("knee_tomography").main(["--data", str(path), "--model", "unused",
                                                "--out", str(tmp_path / "out")])
    assert status == 2
    err = capsys.readouterr().err
    assert err.startswith("knee_tomography: error: ") and says in err
    assert "Traceback" not in err
    if case == "no slices left":
        assert "--skip-edge-slices 10" in err
