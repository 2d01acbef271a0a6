"""Reliability, second round: bad inputs a new user tried (none in the earlier tests). Each
gets one ``error:`` line naming the option or file, the problem and the fix, a non-zero exit,
no hang, and leaves every file the user saved as it was (checksums)."""
import io
import os
import pickle
import tempfile

import numpy as np
import pytest
import torch

from cil_genreg import SoftGenerativeRegulariser, datasets
from cil_genreg.physics import forward
from cil_genreg.experiments import methods
from cil_genreg.cli import main
from cil_genreg.utilities.validation import InputError
from test_reliability_cli import digest, fails

TINY = ["--model", "ae", "--latent-dim", "2", "--width", "2", "--batch-size", "20",
        "--quiet", "--threads", "1"]


def huge_header(path, shape):
    """A ``.npy`` whose header declares ``shape`` (float32) over 64 bytes of data."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<f4", "fortran_order": False, "shape": shape})
        f.write(b"\0" * 64)
    return path


def refused(capsys, tmp_path, argv, status=1):
    """The CLI's one ``error:`` line for ``argv``; every file in ``tmp_path`` unchanged and
    nothing new written there."""
    before = {p: digest(p) for p in tmp_path.rglob("*") if p.is_file()}
    line = fails(capsys, argv, status)
    assert {p: digest(p) for p in tmp_path.rglob("*") if p.is_file()} == before
    return line


@pytest.fixture(scope="module")
def sino(tmp_path_factory):
    """A 10-angle, 41-pixel sinogram of a digit (float32, .npy)."""
    ig, ag = forward.make_geometry(28, 10)
    x = ig.allocate(None)
    x.fill(datasets.held_out_digits(1, seed=1)[0])
    return forward.make_projector(ig, ag).direct(x).as_array()


def recon(data, out, *extra):
    """``reconstruct --method fbp`` argv."""
    return [str(a) for a in ["reconstruct", "--method", "fbp", "--data", data, "--quiet",
                             "--out", out, *extra]]


# -- the sinogram: values and files ----------------------------------------------------------
@pytest.mark.parametrize("make, says", [
    (lambda s: s.astype(np.complex64), "is complex (complex64): pass real values"),
    (lambda s: s.astype(np.float64) * 1e300, "beyond the range of float32"),
    (lambda s: s > 1, "holds booleans"),
    (lambda s: np.full(s.shape, "a"), "holds text (<U1), not numbers"),
    (lambda s: np.zeros((10, 0), np.float32), "has no detector pixels"),
    (lambda s: np.zeros((0, 41), np.float32), "has no angles"),
])
def test_bad_sinogram_values(sino, tmp_path, capsys, make, says):
    data = tmp_path / "sino.npy"
    np.save(data, make(sino))
    line = refused(capsys, tmp_path, recon(data, tmp_path / "x.npy", "--angles-deg", 10))
    assert says in line and f"--data {str(data)!r}" in line, line


def _npz_named_npy(path, sino):
    with open(path, "wb") as f:
        np.savez(f, a=sino)


@pytest.mark.parametrize("write, says", [
    (lambda p, s: huge_header(p, (10 ** 7, 10 ** 6)), "declares shape (10000000, 1000000)"),
    (lambda p, s: huge_header(p, (10 ** 5, 10 ** 4, 10 ** 4)), "truncated or damaged"),
    (_npz_named_npy, "is an .npz archive (numpy.savez) named .npy"),
    (lambda p, s: p.write_text("0.1 0.2\n0.3 0.4\n"), "is a text file, not a .npy array"),
    (lambda p, s: p.write_bytes(b""), "is empty (0 bytes)"),
    (lambda p, s: np.save(p, np.array([{}, 1], dtype=object), allow_pickle=True),
     "holds Python objects"),
])
def test_bad_sinogram_files(sino, tmp_path, capsys, write, says):
    data = tmp_path / "sino.npy"
    write(data, sino)
    line = refused(capsys, tmp_path, recon(data, tmp_path / "x.npy", "--angles-deg", 10))
    assert says in line and str(data) in line, line


def test_a_single_slice_stack_is_reconstructed_as_its_slice(sino, tmp_path):
    np.save(tmp_path / "one.npy", sino[None])
    np.save(tmp_path / "two.npy", sino)
    assert main(recon(tmp_path / "one.npy", tmp_path / "one_x.npy", "--angles-deg", 10)) == 0
    assert main(recon(tmp_path / "two.npy", tmp_path / "two_x.npy", "--angles-deg", 10)) == 0
    one, two = np.load(tmp_path / "one_x.npy"), np.load(tmp_path / "two_x.npy")
    assert one.shape == (1,) + two.shape and np.allclose(one[0], two)


# -- the angles ------------------------------------------------------------------------------
@pytest.mark.parametrize("angles, says", [
    (np.full(10, 30.0), "all 10 angles are equal (30), a degenerate geometry"),
    (np.zeros(10), "all 10 angles are equal (0)"),
    (np.linspace(0, 1e12, 10), "an angle of 1e+12 degrees is beyond any scan"),
    (np.array(["x"] * 10), "holds text"),
])
def test_bad_angles_refused_before_any_projector(sino, tmp_path, capsys, monkeypatch, angles,
                                                 says):
    np.save(tmp_path / "sino.npy", sino)
    np.save(tmp_path / "angles.npy", angles)
    monkeypatch.setattr(forward, "make_projector", lambda *a, **k: pytest.fail("projector"))
    line = refused(capsys, tmp_path, recon(tmp_path / "sino.npy", tmp_path / "x.npy",
                                           "--angles", tmp_path / "angles.npy"))
    assert says in line and "--angles" in line and "radian" not in line.split(says)[0], line


def test_huge_radian_angles_and_the_api_projector(sino):
    ig, ag = forward.make_geometry(28, 10)
    ag.set_angles(np.linspace(0, 1e12, 10))
    with pytest.raises(InputError, match="beyond any scan"):
        forward.make_projector(ig, ag)  # ASTRA's FBP would hang on these


def test_angles_file_and_count_together(sino, tmp_path, capsys):
    np.save(tmp_path / "sino.npy", sino)
    np.save(tmp_path / "angles.npy", np.linspace(0, 180, 10, endpoint=False))
    line = refused(capsys, tmp_path, recon(tmp_path / "sino.npy", tmp_path / "x.npy", "--angles",
                                           tmp_path / "angles.npy", "--angles-deg", 10))
    assert "--angles FILE and --angles-deg N" in line and "keep one" in line


# -- the output ------------------------------------------------------------------------------
def _unwritable_folder(tmp_path):
    """A read-only folder; as root (whom permissions do not stop) /sys, where it refuses."""
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    if not os.access(folder, os.W_OK):
        return str(folder)
    try:
        tempfile.TemporaryFile(dir="/sys").close()
    except OSError:
        return "/sys"
    pytest.skip("no unwritable folder here")


def test_unwritable_out_refused_before_reconstructing(sino, tmp_path, capsys, monkeypatch):
    np.save(tmp_path / "sino.npy", sino)
    out = os.path.join(_unwritable_folder(tmp_path), "x.npy")
    monkeypatch.setattr(forward, "make_projector", lambda *a, **k: pytest.fail("computed"))
    try:
        line = fails(capsys, recon(tmp_path / "sino.npy", out, "--angles-deg", 10), 1)
    finally:
        (tmp_path / "ro").chmod(0o755)
    assert f"--out {out!r} cannot be written" in line and ".tmp" not in line, line


# -- training data ---------------------------------------------------------------------------
@pytest.mark.parametrize("write, says", [
    (lambda p: huge_header(p, (10 ** 7, 10 ** 6)), "declares shape"),
    (lambda p: np.save(p, np.zeros((0, 16, 16), np.float32)), "is empty (shape (0, 16, 16))"),
    (lambda p: np.save(p, np.array([{}, None], dtype=object), allow_pickle=True),
     "holds Python objects (pickled data), which are never loaded"),
    (lambda p: p.write_bytes(pickle.dumps(np.zeros((4, 16, 16)))), "holds pickled Python data"),
    (lambda p: np.save(p, np.full((4, 16, 16), "a")), "holds text"),
])
def test_bad_training_data(tmp_path, capsys, write, says):
    data = tmp_path / "images.npy"
    write(data)
    line = refused(capsys, tmp_path, ["train", "--data", data, "--epochs", "1", "--out",
                                      tmp_path / "m.safetensors"] + TINY)
    assert says in line and f"--data {str(data)!r}" in line, line


def test_pickled_member_of_an_npz(tmp_path, capsys):
    np.savez(tmp_path / "images.npz", images=np.array([{}, None], dtype=object))
    line = refused(capsys, tmp_path, ["train", "--data", tmp_path / "images.npz", "--out",
                                      tmp_path / "m.safetensors"] + TINY)
    assert "images.npz" in line and "not a readable .npz archive" in line


# -- train --resume with a damaged training state --------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real model and training state from one epoch of a tiny run."""
    d = tmp_path_factory.mktemp("state")
    np.save(d / "images.npy", datasets.shapes(60, size=16, seed=0))
    assert main(["train", "--data", str(d / "images.npy"), "--epochs", "1", "--out",
                 str(d / "m.safetensors")] + TINY) == 0
    return d


class _Marker:
    def __reduce__(self):
        return (os.system, ("touch was-unpickled",))


def _damaged(raw):
    """name -> the bytes of a damaged or untrusted training state."""
    n = len(raw)
    flipped = bytearray(raw)
    for i in range(n // 3, n // 3 + 40):
        flipped[i] ^= 0xFF
    plain = io.BytesIO()
    torch.save({"epoch": 1}, plain)
    cases = {f"cut at {k}": raw[:k] for k in (0, 50, n // 2, n - 10)}
    cases.update({"pickle": pickle.dumps({"epoch": _Marker()}), "flipped": bytes(flipped),
                  "not a state": plain.getvalue()})
    return cases


def test_resume_with_a_damaged_state(trained, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw = (trained / "m.safetensors.state.pt").read_bytes()
    model = (trained / "m.safetensors").read_bytes()
    (tmp_path / "m.safetensors").write_bytes(model)
    np.save(tmp_path / "images.npy", np.load(trained / "images.npy"))
    state = tmp_path / "m.safetensors.state.pt"
    for name, data in _damaged(raw).items():
        state.write_bytes(data)
        line = refused(capsys, tmp_path, ["train", "--data", "images.npy", "--epochs", "2",
                                          "--out", "m.safetensors", "--resume"] + TINY)
        assert "cannot resume" in line, (name, line)
        assert "'m.safetensors.state.pt'" in line and "--overwrite" in line, (name, line)
        assert ("never loaded" if name == "pickle" else "damaged" if name != "not a state"
                else "not a training state") in line, (name, line)
        assert "--resume" in line and "alone" in line, (name, line)
    assert not (tmp_path / "was-unpickled").exists()
    assert (tmp_path / "m.safetensors").read_bytes() == model
    # positive control: the real state resumes
    state.write_bytes(raw)
    assert main(["train", "--data", "images.npy", "--epochs", "2", "--out", "m.safetensors",
                 "--resume"] + TINY) == 0


# -- the Python API ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def problem():
    """A 28x28, 10-angle parallel-beam projector and data."""
    ig, ag = forward.make_geometry(28, 10)
    A = forward.make_projector(ig, ag)
    return A, A.direct(ig.allocate(1.0))


@pytest.fixture(scope="module")
def generator():
    """A tiny VAE decoder of 28x28 images."""
    from cil_genreg import models
    torch.manual_seed(0)
    return models.build("vae", latent_dim=2, image_shape=(28, 28), width=2).eval()


@pytest.mark.parametrize("lam", [-5, 0, float("nan")])
def test_a_bad_weight_names_lambda(generator, lam):
    R = SoftGenerativeRegulariser(generator, mu=1e-3)
    for scaled in (lambda: lam * R, lambda: R * lam):
        with pytest.raises(InputError, match="the weight λ of λ \\* SoftGenerativeRegulariser"):
            scaled()


def test_a_bad_proximal_step_names_lambda(generator, problem):
    R = SoftGenerativeRegulariser(generator, mu=1e-3)
    x = problem[0].domain_geometry().allocate(0.5)
    for tau in (-5.0, 0.0, float("nan")):
        with pytest.raises(InputError, match="tau.*weight λ"):
            R.proximal(x, tau)


def test_start_image_of_another_geometry(problem):
    A, y = problem
    other, _ = forward.make_geometry(32, 10)
    with pytest.raises(InputError, match=r"x0 has shape \(32, 32\) but the operator's images"):
        methods.reconstruct("tv", A, y, 1.0, x0=other.allocate(0), iterations=2)
