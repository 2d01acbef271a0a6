"""``--data`` for the command line: a dataset name or a path, resolved to an image array; and
the reading of a user's ``.npy`` / ``.npz`` files, checked before any data is read."""
import math
import os
import zipfile

import numpy as np

from ..utilities.validation import InputError, InputTypeError, check_angles, real_array

NAMES = ("mnist", "shapes", "ellipses", "ct-chest", "ct-head", "ct-patients")


def load_data(spec, split="train", n=None, size=None, seed=0, mnist_path=None, augment=0,
              patch=None):
    """Images (N, H, W) in [0, 1] and a description for ``--data SPEC``.

    ``spec`` is ``mnist`` (``split`` of MNIST; the train split needs ``--mnist-path`` or
    ``$CIL_GENREG_MNIST``), ``shapes`` / ``ellipses`` (synthetic; train uses ``seed``, test uses
    ``seed + 1_000_000`` so they never overlap), ``ct-chest`` / ``ct-head`` (real CT: axial
    slices of the volume's training or held-out block at ``size``, default 128, with ``augment``
    augmented copies each; or ``n`` random ``patch`` x ``patch`` patches at native resolution),
    ``ct-patients`` / ``ct-patients:SPLIT`` (the training or test patients of a patient-level
    split, default ``chest3``, at one pixel size: :func:`cil_genreg.datasets.patient_slices`,
    or patches of them at native resolution), an ``.npy``/``.npz`` array, an ``.h5`` fastMRI file or folder, or a folder of PNG/TIFF
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
    if spec == "ct-patients" or spec.startswith("ct-patients:"):
        return _patients(spec.partition(":")[2] or "chest3", split, n, size, seed, augment,
                         patch)
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
    if low.endswith((".npy", ".npz")):
        what = f"--data {spec!r}"
        array = load_npz(spec, what) if low.endswith(".npz") else load_npy(spec, what)
        images = datasets.as_images(array, what)
    elif low.endswith((".h5", ".hdf5")) or (os.path.isdir(spec) and any(
            f.endswith(".h5") for f in os.listdir(spec))):
        images = datasets.fastmri_knee(spec, size=size or 128)
    else:
        images = datasets.image_folder(spec, size=size)
    return _subset(images, n, seed), {"dataset": os.path.abspath(spec), "split": "all"}


def _patients(name, split, n, size, seed, augment, patch):
    """Images and a description of the ``split`` part of the patient-level split ``name``."""
    from .. import datasets

    if name not in datasets.PATIENT_SPLITS:
        raise InputError(f"--data ct-patients:{name}: unknown patient split; choose one of "
                         f"{sorted(datasets.PATIENT_SPLITS)}.")
    part = "train" if split == "train" else "test"
    if patch:
        images = datasets.patient_patches(name, part, patch=patch, n=n or 20000, seed=seed)
    else:
        images = datasets.patient_slices(name, part, size=size or 128, n=n, augment=augment,
                                         seed=seed)
    patients = datasets.PATIENT_SPLITS[name][part]
    return images, {"dataset": f"CT patients {', '.join(patients)} (split {name}, {part}; "
                    + "; ".join(f"{p}: {datasets.CT_VOLUMES[p]['licence']}" for p in patients)
                    + f"; {datasets.patients.PIXEL_MM} mm pixels, "
                    f"{datasets.patients.NATIVE} px field of view)",
                    "split": f"{name}:{part}", "orientation": "axial",
                    "augment": str(augment), "patch": str(patch or "")}


def _subset(images, n, seed):
    """``n`` of the images drawn at random (``seed``), in their original order: MNIST is
    ordered by class, so its first ``n`` would hold one or two digits only."""
    if n is None or n >= len(images):
        return images
    pick = np.sort(np.random.default_rng(seed).permutation(len(images))[:int(n)])
    return images[pick]


#: the first bytes of a ``.npy`` file
NPY_MAGIC = b"\x93NUMPY"
#: the errors numpy raises for a file it cannot read
READ_ERRORS = (OSError, ValueError, EOFError, MemoryError, zipfile.BadZipFile)


def _not_npy(start, what):
    """Why a file without the ``.npy`` magic is not one, from its first bytes."""
    if not start:
        return f"{what} is empty (0 bytes): write the array again with numpy.save."
    if start.startswith(b"PK"):
        return (f"{what} is an .npz archive (numpy.savez) named .npy: rename it to .npz where "
                ".npz is accepted, or save the one array with numpy.save.")
    if start[:1] == b"\x80":
        return (f"{what} holds pickled Python data, which is never loaded (loading it could run "
                "code): save the array with numpy.save.")
    if all(32 <= b < 127 or b in b"\t\r\n" for b in start):
        return (f"{what} is a text file, not a .npy array (it starts {start[:20].decode()!r}): "
                "save the values with numpy.save (or, where text is accepted, name it .txt).")
    return f"{what} is not a .npy file (no NumPy header): save the array with numpy.save."


def load_npy(path, what):
    """The array of a ``.npy`` file, its header checked before any data is read.

    Parameters
    ----------
    path : str
    what : str
        how to call the file in messages (e.g. ``"--data 'sino.npy'"``).

    Returns
    -------
    numpy.ndarray

    Raises
    ------
    InputError
        for an empty, text, pickled or zipped file, a header declaring more data than the
        file holds (a huge shape is never allocated), or an unreadable file.
    InputTypeError
        for an array of Python objects.
    """
    fmt = np.lib.format
    with open(path, "rb") as f:
        start = f.read(64)
        if not start.startswith(NPY_MAGIC):
            raise InputError(_not_npy(start, what))
        f.seek(0)
        try:
            version = fmt.read_magic(f)
            read = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}
            shape, _, dtype = read.get(version, fmt.read_array_header_2_0)(f)
        except READ_ERRORS as err:
            raise InputError(f"{what} has a damaged .npy header ({type(err).__name__}: "
                             f"{err}): write the array again with numpy.save.") from None
        data = os.fstat(f.fileno()).st_size - f.tell()
    if dtype.hasobject:
        raise InputTypeError(f"{what} holds Python objects (pickled data), which are never "
                             "loaded (loading them could run code): save a numeric array.")
    need = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if need > data:
        raise InputError(f"{what} declares shape {shape} ({need:,} bytes of {dtype}) but holds "
                         f"{data:,} bytes: it is truncated or damaged; write it again with "
                         "numpy.save.")
    try:
        return np.load(path, allow_pickle=False)
    except READ_ERRORS as err:
        raise InputError(f"{what} is not a readable .npy array ({type(err).__name__}: "
                         f"{err}).") from None


def load_npz(path, what):
    """The array ``images`` (else the first) of an ``.npz`` archive, a clear error for a
    damaged archive, a pickled member or one too large for memory."""
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.keys())
            if not keys:
                raise InputError(f"{what} is an empty .npz archive: it holds no array.")
            return z["images" if "images" in keys else keys[0]]
    except READ_ERRORS as err:
        if isinstance(err, InputError):
            raise
        raise InputError(f"{what} is not a readable .npz archive of numeric arrays "
                         f"({type(err).__name__}: {err}): save it with numpy.savez.") from None


def load_array(path, what):
    """An array from ``.npy`` (header checked first) or ``.txt``, a clear error for an
    unreadable file."""
    if not path.lower().endswith(".txt"):
        return load_npy(path, f"{what} {path!r}")
    try:
        return np.loadtxt(path, ndmin=1)
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"{what} {path!r} is not a readable text array of numbers "
                         f"({type(err).__name__}: {err}).") from None


#: the largest |angle| of an ``--angles`` file taken as degrees without ``--angles-unit``.
RADIAN_LIKE = 2 * math.pi + 1e-3


def read_angles(path, unit=None):
    """Projection angles in degrees from ``--angles PATH``: finite, at least one, and not
    (silently) radians: when every angle lies within 2π and ``unit`` is None they are refused.

    Raises
    ------
    ValueError
        for an unreadable file, no angles, NaN/Inf, equal or huge angles
        (:func:`~cil_genreg.validation.check_angles`), or radian-like angles without ``unit``.
    """
    angles = check_angles(load_array(path, "--angles"), f"--angles {path!r}", unit or "degree")
    if unit == "radian":
        return np.degrees(angles).astype(np.float32)
    if unit is None and angles.size > 1 and np.abs(angles).max() <= RADIAN_LIKE:
        raise ValueError(f"--angles {path!r}: every angle lies within 2π (largest "
                         f"{np.abs(angles).max():.3g}), so they look like radians, but "
                         "--angles takes degrees: pass --angles-unit radian to convert them, "
                         "or --angles-unit degree if they really are degrees.")
    return angles.astype(np.float32)


#: the axes of a 2D / 3D sinogram, for messages
AXES = ("slices", "angles", "detector pixels")


def load_sinogram(path, args):
    """``reconstruct --data``'s ``.npy`` sinogram as float32 (angles, pixels) or (slices,
    angles, pixels): real, finite values, no empty axis; a single-slice stack is taken as its
    2D slice (and its image written as a one-slice volume, ``args._single_slice``)."""
    what = f"--data {path!r}"
    sino = load_array(path, "--data")
    if sino.ndim not in (2, 3):
        raise ValueError(f"{what}: the sinogram must be 2D (angles × detector pixels) or 3D "
                         "(slices × angles × detector pixels, parallel beam), got shape "
                         f"{sino.shape}.")
    for axis, n in zip(AXES[3 - sino.ndim:], sino.shape):
        if n == 0:
            raise ValueError(f"{what} has shape {sino.shape}: it has no {axis}; save the "
                             "sinogram with its data (angles × detector pixels).")
    sino = real_array(sino, what)
    args._single_slice = sino.ndim == 3 and sino.shape[0] == 1
    return sino[0] if args._single_slice else sino
