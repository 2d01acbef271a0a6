"""``--data`` for the command line: a dataset name or a path, resolved to an image array."""
import os

import numpy as np

NAMES = ("mnist", "shapes", "ellipses", "ct-chest", "ct-head")


def load_data(spec, split="train", n=None, size=None, seed=0, mnist_path=None, augment=0,
              patch=None):
    """Images (N, H, W) in [0, 1] and a description for ``--data SPEC``.

    ``spec`` is ``mnist`` (``split`` of MNIST; the train split needs ``--mnist-path`` or
    ``$CIL_GENREG_MNIST``), ``shapes`` / ``ellipses`` (synthetic; train uses ``seed``, test uses
    ``seed + 1_000_000`` so they never overlap), ``ct-chest`` / ``ct-head`` (real CT: axial
    slices of the volume's training or held-out block at ``size``, default 128, with ``augment``
    augmented copies each; or ``n`` random ``patch`` x ``patch`` patches at native resolution),
    an ``.npy``/``.npz`` array, an ``.h5`` fastMRI file or folder, or a folder of PNG/TIFF
    files / a TIFF stack.
    """
    from .. import datasets

    if spec in ("ct-chest", "ct-head"):
        volume = spec[3:]
        if patch:
            images = datasets.ct_patches(volume, split, patch=patch, n=n or 20000, seed=seed)
        else:
            images = datasets.ct_slices(volume, split, "axial", size=size or 128, n=n,
                                        augment=augment, seed=seed)
        return images, {"dataset": f"{volume} CT ({datasets.CT_VOLUMES[volume]['source']}, "
                        f"{datasets.CT_VOLUMES[volume]['licence']})", "split": split,
                        "orientation": "axial", "augment": str(augment),
                        "patch": str(patch or "")}
    if spec == "mnist":
        images = _subset(datasets.mnist(split=split, path=mnist_path), n, seed)
        if size and size != 28:
            images = datasets.resize(images, size)
        return images, {"dataset": "mnist", "split": split, "source": mnist_path or
                        ("shipped test split" if split == "test" and not
                         os.environ.get("CIL_GENREG_MNIST") else "CIL_GENREG_MNIST")}
    if spec in ("shapes", "ellipses"):
        size = size or 64
        n = n or (10000 if split == "train" else 100)
        s = seed if split == "train" else seed + 1_000_000
        images = getattr(datasets, spec)(n, size=size, seed=s)
        return images, {"dataset": spec, "split": split, "seed": s, "size": size}
    if not os.path.exists(spec):
        raise FileNotFoundError(f"--data {spec!r} is neither one of {list(NAMES)} nor an "
                                "existing file or folder.")
    low = spec.lower()
    if low.endswith(".npy"):
        images = datasets.as_images(np.load(spec))
    elif low.endswith(".npz"):
        with np.load(spec) as z:
            key = "images" if "images" in z else list(z.keys())[0]
            images = datasets.as_images(z[key])
    elif low.endswith((".h5", ".hdf5")) or (os.path.isdir(spec) and any(
            f.endswith(".h5") for f in os.listdir(spec))):
        images = datasets.fastmri_knee(spec, size=size or 128)
    else:
        images = datasets.image_folder(spec, size=size)
    return _subset(images, n, seed), {"dataset": os.path.abspath(spec), "split": "all"}


def _subset(images, n, seed):
    """``n`` of the images drawn at random (``seed``), in their original order: MNIST is
    ordered by class, so its first ``n`` would hold one or two digits only."""
    if n is None or n >= len(images):
        return images
    pick = np.sort(np.random.default_rng(seed).permutation(len(images))[:int(n)])
    return images[pick]
