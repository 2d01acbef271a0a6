"""Several CT patients (cil_genreg.datasets.patients): the pyradiomics chests read from their
tarball, one physical pixel size for all, one orientation, patient-level splits that never mix
a patient into both parts, and clear errors for missing, corrupt or unreadable files.

The real volumes must be installed (.ci/run installs them): these tests fail, not skip,
without them."""
import tarfile

import numpy as np
import pytest

from cil_genreg import datasets
from cil_genreg.datasets import ct, patients
from cil_genreg.datasets.ct_volumes import PYRADIOMICS_TARBALL, pyradiomics_path

nrrd = pytest.importorskip("nrrd")

LPS = "left-posterior-superior"


def _write_nrrd(path, data_xyz, directions, space=LPS, **extra):
    header = {"encoding": "gzip", **extra}
    if space is not None:
        header["space"] = space
    if directions is not None:
        header["space directions"] = np.asarray(directions, float)
    nrrd.write(str(path), data_xyz, header)
    return str(path)


def _tarball():
    path = pyradiomics_path("lung1")
    assert path is not None, "the pyradiomics 3.1.0 tarball is not installed: see .ci/run"
    return path


# --- the real volumes ------------------------------------------------------------------

@pytest.mark.parametrize("name, shape, spacing", [
    ("lung1", (48, 512, 512), (5.0, 0.5703125, 0.5703125)),
    ("lung2", (61, 512, 512), (5.0, 0.6269531, 0.6269531))])
def test_pyradiomics_volumes_shapes_and_spacing(name, shape, spacing):
    vol, sp = datasets.ct_volume(name)
    assert vol.shape == shape and vol.dtype == np.float32
    assert sp == pytest.approx(spacing)
    assert vol.min() == -1024 and vol.max() > 1500            # HU: air to bone
    assert ct.VOLUMES[name]["licence"] == "BSD-3-Clause"


def _body_extent_mm(hu_or_x, threshold, pixel_mm):
    """Width (x) and height (y) in mm of the pixels above ``threshold`` in the row / column
    through the body's centre, and the area in mm^2."""
    mask = hu_or_x > threshold
    r, c = (int(np.median(i)) for i in np.nonzero(mask))
    cols, rows = np.nonzero(mask[r])[0], np.nonzero(mask[:, c])[0]
    dy, dx = pixel_mm
    return (cols.max() - cols.min() + 1) * dx, (rows.max() - rows.min() + 1) * dy, \
        mask.sum() * dx * dy


@pytest.mark.parametrize("name", patients.PATIENTS)
def test_the_common_pixel_size_keeps_each_body_s_size_in_mm(name):
    hu, (dz, dy, dx) = ct.ct_volume(name)
    vol, dz2 = patients.patient_volume(name)
    assert vol.shape == (len(hu), 512, 512) and dz2 == dz and not vol.flags.writeable
    p = patients.PIXEL_MM
    for z in (len(hu) // 4, len(hu) // 2):
        w0, h0, a0 = _body_extent_mm(hu[z], -500.0, (dy, dx))
        w1, h1, a1 = _body_extent_mm(vol[z], 0.25, (p, p))      # -500 HU in the wide window
        assert abs(w1 - w0) <= p + dx and abs(h1 - h0) <= p + dy, (w0, w1, h0, h1)
        assert abs(a1 - a0) <= 0.01 * a0
    if name == "chest":  # its own pixel: kept voxel for voxel
        np.testing.assert_array_equal(vol, ct.apply_window(hu, "wide"))


def test_every_patient_is_oriented_alike_anterior_up_spine_down():
    for name in patients.PATIENTS:
        vol, _ = patients.patient_volume(name)
        mid = vol[len(vol) // 4: 3 * len(vol) // 4]
        bone = np.nonzero(mid > 0.75)                      # > 500 HU: spine, ribs, table
        assert bone[1].mean() > 256 + 20, name             # the densest region lies low
        assert abs(bone[2].mean() - 256) < 40, name        # ... about the midline
        body = np.nonzero(mid > 0.25)
        top, bottom = np.percentile(body[1], [1, 99])
        assert top > 40 and bottom < 500, name             # the body inside the 360 mm FOV


def test_lps_and_ras_headers_of_one_volume_read_alike(tmp_path):
    rng = np.random.default_rng(0)
    xyz = rng.integers(-1000, 1000, (6, 5, 4)).astype(np.int16)
    lps = _write_nrrd(tmp_path / "lps.nrrd", xyz, np.diag([0.5, 0.6, 2.0]))
    # the same voxels stored the other way along x and y, in right-anterior-superior space
    ras = _write_nrrd(tmp_path / "ras.nrrd", xyz[::-1, ::-1], np.diag([0.5, 0.6, 2.0]),
                      space="right-anterior-superior")
    # axes stored in (y, z, x) order
    perm = _write_nrrd(tmp_path / "perm.nrrd", xyz.transpose(1, 2, 0),
                       [[0, 0.6, 0], [0, 0, 2.0], [0.5, 0, 0]])
    a, sa = ct.read_nrrd(lps)
    assert a.shape == (4, 5, 6) and sa == pytest.approx((2.0, 0.6, 0.5))
    np.testing.assert_array_equal(a, xyz.transpose(2, 1, 0))
    for other in (ras, perm):
        b, sb = ct.read_nrrd(other)
        np.testing.assert_array_equal(a, b)
        assert sb == pytest.approx(sa)


# --- the splits --------------------------------------------------------------------------

@pytest.mark.parametrize("split", sorted(patients.PATIENT_SPLITS))
def test_splits_are_disjoint_by_patient_and_by_pixels(split):
    parts = patients.PATIENT_SPLITS[split]
    assert not set(parts["train"]) & set(parts["test"])
    train, tn = patients.patient_slices(split, "train", size=64, return_patients=True)
    test, sn = patients.patient_slices(split, "test", size=64, return_patients=True)
    assert train.shape[1:] == test.shape[1:] == (64, 64) and train.dtype == np.float32
    assert 0 <= train.min() and train.max() <= 1 and len(tn) == len(train)
    assert set(tn) == set(parts["train"]) and set(sn) == set(parts["test"])
    seen = {im.tobytes() for im in train}
    assert not any(im.tobytes() in seen for im in test)


def test_training_parts_leave_out_the_chest_s_held_out_block():
    held = datasets.ct_slices("chest", "test", "axial", size=128)
    same = patients.patient_slices("lopo-chest", "test", size=128, test_block=(0.45, 0.6))
    np.testing.assert_array_equal(same, held)   # the chest at the common FOV is unchanged
    train, names = patients.patient_slices("chest3", "train", size=128, return_patients=True)
    chest = train[names == "chest"]
    assert len(chest) == len(datasets.ct_slices("chest", "train", "axial", size=128))
    seen = {im.tobytes() for im in chest}
    assert not any(im.tobytes() in seen for im in held)
    counts = {p: int((names == p).sum()) for p in set(names)}
    assert counts == {"chest": 109, "lung2": 61}


def test_slices_options_and_patches_from_training_patients_only():
    x, names = patients.patient_slices("chest3", "train", size=32, n=10, augment=1,
                                       return_patients=True)
    assert x.shape == (20, 32, 32) and list(names[:10]) == list(names[10:])
    nat = patients.patient_slices("lopo-lung2", "test", native=True)
    assert nat.shape == (61, 512, 512)
    cor = patients.patient_slices("lopo-lung1", "test", size=32, orientation="coronal")
    assert cor.shape[1:] == (32, 32) and len(cor) > 50
    p, pn = patients.patient_patches("chest3", "train", patch=32, n=300, return_patients=True)
    assert p.shape == (300, 32, 32) and set(pn) <= {"chest", "lung2"}
    assert p.mean(axis=(1, 2)).min() >= 0.02
    q, qn = patients.patient_patches("chest3", "test", patch=16, n=50, return_patients=True)
    assert q.shape == (50, 16, 16) and set(qn) == {"lung1"}
    with pytest.raises(ValueError, match="unknown patient split"):
        patients.patient_slices("lopo-knee")
    with pytest.raises(ValueError, match="part must be"):
        patients.patient_slices("chest3", "val")


# --- bad input ---------------------------------------------------------------------------

def test_a_missing_tarball_names_the_package_and_the_install_command(tmp_path, monkeypatch):
    tarball = _tarball()
    monkeypatch.setenv("CIL_GENREG_PYRADIOMICS", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for kwargs in ({}, {"path": str(tmp_path / PYRADIOMICS_TARBALL)}):
        with pytest.raises(FileNotFoundError, match="pyradiomics 3.1.0") as err:
            ct.ct_volume("lung2", **kwargs)
        assert "python -m cil_genreg.datasets.sdist pyradiomics 3.1.0" in str(err.value)
    # the environment variable may name the tarball, or a folder with the unpacked data/
    monkeypatch.setenv("CIL_GENREG_PYRADIOMICS", tarball)
    assert pyradiomics_path("lung1") == tarball
    data = tmp_path / "data"
    data.mkdir()
    _write_nrrd(data / "lung1_image.nrrd", np.zeros((4, 4, 2), np.int16),
                np.diag([0.6, 0.6, 5.0]))
    monkeypatch.setenv("CIL_GENREG_PYRADIOMICS", str(tmp_path))
    assert ct.ct_volume("lung1")[0].shape == (2, 4, 4)


def test_truncated_tarball_and_nrrd_are_named(tmp_path):
    raw = open(_tarball(), "rb").read(8_000_000)     # stops inside lung1_image.nrrd
    bad = tmp_path / PYRADIOMICS_TARBALL
    bad.write_bytes(raw)
    with pytest.raises(ValueError, match=f"{bad}.*(truncated or corrupt)"):
        ct.ct_volume("lung1", path=str(bad))
    with tarfile.open(_tarball()) as t:
        head = t.extractfile(ct.VOLUMES["lung1"]["member"]).read(3_000_000)
    cut = tmp_path / "lung1_image.nrrd"
    cut.write_bytes(head)
    with pytest.raises(ValueError, match=f"{cut}.*truncated or corrupt"):
        ct.ct_volume("lung1", path=str(cut))
    junk = tmp_path / "junk.nrrd"
    junk.write_bytes(b"not a nrrd file\n")
    with pytest.raises(ValueError, match=f"{junk}.*not a readable NRRD"):
        ct.read_nrrd(str(junk))


def test_wrong_type_shape_spacing_and_oblique_headers_are_refused(tmp_path):
    d = np.diag([0.6, 0.6, 5.0])
    cases = {
        "type": (np.zeros((4, 4, 2), np.uint8), d, {}, "NRRD type"),
        "shape": (np.zeros((4, 4), np.int16), np.diag([0.6, 0.6]), {}, "2D NRRD"),
        "nospacing": (np.zeros((4, 4, 2), np.int16), None, {"spacings": [0.6, 0.6, 5.0]},
                      "no 'space'"),
    }
    for name, (data, dirs, extra, message) in cases.items():
        path = _write_nrrd(tmp_path / f"{name}.nrrd", data, dirs,
                           space=LPS if dirs is not None else None, **extra)
        with pytest.raises(ValueError, match=message):
            ct.read_nrrd(path)
    c, s = np.cos(0.3), np.sin(0.3)
    oblique = _write_nrrd(tmp_path / "oblique.nrrd", np.zeros((4, 4, 2), np.int16),
                          [[0.6 * c, 0.6 * s, 0], [-0.6 * s, 0.6 * c, 0], [0, 0, 5.0]])
    with pytest.raises(ValueError, match=f"{oblique}.*oblique"):
        ct.ct_volume("lung1", path=oblique)
    odd = _write_nrrd(tmp_path / "odd.nrrd", np.zeros((4, 4, 2), np.int16), d,
                      space="scanner-xyz")
    with pytest.raises(ValueError, match="refusing to guess"):
        ct.read_nrrd(odd)
    coarse = _write_nrrd(tmp_path / "coarse.nrrd", np.zeros((4, 4, 2), np.int16),
                         np.diag([1.2, 1.2, 5.0]))
    with pytest.raises(ValueError, match="coarser than the common"):
        patients.patient_volume("lung1", path=coarse)
