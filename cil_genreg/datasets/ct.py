"""Real CT slices from volumes that install offline, with a held-out block per volume.

The volumes (``"chest"``: MIT, ``"lung1"`` / ``"lung2"``: BSD-3-Clause, ``"head"``: GPL-2),
their sources and install commands are in :mod:`cil_genreg.datasets.ct_volumes`
(:data:`VOLUMES`, :func:`ct_volume`); nothing of any ships with cil_genreg. Slices of several
patients at one common pixel size, and patient-level splits, are in
:mod:`cil_genreg.datasets.patients`.

**Held-out block.** Each volume is split along its slice axis z: the axial slices
``z in [start, stop)`` (``held_out``, fractions of the depth) are the test block; the training
set is what lies at least ``margin`` slices away from it (the blocks below and above). Coronal
and sagittal slices are cropped to one block before resampling, so *no training slice or patch,
in any orientation, contains a voxel of the test block or its margin*
(:func:`ct_blocks` returns the z ranges, and the tests check it on voxel indices).

**Intensities.** HU are clipped to a window ``(lo, hi)`` and mapped linearly to [0, 1]:
``x = (clip(hu, lo, hi) - lo) / (hi - lo)``. Named windows are in :data:`WINDOWS`; the default,
``"wide"`` = (-1000, 1000) HU, keeps air, soft tissue and bone apart.

**Geometry.** Slices are resampled to square pixels of the in-plane spacing, padded with air
(0 after windowing) to a square and resized to ``size`` (antialiased bilinear); axial slices
of the chest are 512 x 512 at their native size.
"""
import numpy as np

from ._common import resize
from .ct_volumes import (HEAD_PATH, VOLUMES, chest_path, ct_volume,  # noqa: F401 (public)
                         lps_orientation, pyradiomics_path, read_nrrd)

#: HU windows (lo, hi): x = (clip(hu, lo, hi) - lo) / (hi - lo).
WINDOWS = {
    "wide": (-1000.0, 1000.0),
    "soft-tissue": (-160.0, 240.0),
    "lung": (-1350.0, 150.0),
    "bone": (-450.0, 1050.0),
    "full": (-1024.0, 3071.0),
}

ORIENTATIONS = ("axial", "coronal", "sagittal")


def ct_blocks(depth, held_out=(0.45, 0.6), margin=2):
    """The z ranges of the test block and of the training blocks of a volume of ``depth`` slices.

    Parameters
    ----------
    depth : int
        number of axial slices.
    held_out : (float, float)
        the test block ``[start, stop)`` as fractions of ``depth``.
    margin : int
        slices left out on each side of the test block (in neither set).

    Returns
    -------
    dict
        ``{"test": [(z0, z1)], "train": [(z0, z1), ...]}`` half-open ranges; empty training
        blocks are dropped.
    """
    start, stop = held_out
    if not 0.0 <= start < stop <= 1.0:
        raise ValueError(f"held_out must be (start, stop) with 0 <= start < stop <= 1, "
                         f"got {held_out}.")
    z0, z1 = int(round(start * depth)), int(round(stop * depth))
    z1 = max(z1, z0 + 1)
    train = [(0, max(0, z0 - margin)), (min(depth, z1 + margin), depth)]
    return {"test": [(z0, z1)], "train": [b for b in train if b[1] > b[0]]}


def apply_window(hu, window="wide"):
    """HU to [0, 1]: ``(clip(hu, lo, hi) - lo) / (hi - lo)`` for a named or (lo, hi) window.

    Parameters
    ----------
    hu : numpy.ndarray
    window : str or (float, float)

    Returns
    -------
    numpy.ndarray
        float32 in [0, 1].
    """
    lo, hi = WINDOWS[window] if isinstance(window, str) else map(float, window)
    if not hi > lo:
        raise ValueError(f"a window needs lo < hi, got ({lo}, {hi}).")
    return ((np.clip(hu, lo, hi) - lo) / (hi - lo)).astype(np.float32)


def _square(img, row_spacing, col_spacing):
    """Resample a 2D slice to square pixels of ``col_spacing`` and pad it (with 0) to a square."""
    h, w = img.shape
    if abs(row_spacing - col_spacing) > 1e-6 * col_spacing:
        import torch
        import torch.nn.functional as F
        new_h = max(1, int(round(h * row_spacing / col_spacing)))
        t = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None, None]
        img = F.interpolate(t, size=(new_h, w), mode="bilinear", align_corners=False,
                            antialias=True)[0, 0].numpy()
        h = new_h
    side = max(h, w)
    out = np.zeros((side, side), np.float32)
    top, left = (side - h) // 2, (side - w) // 2
    out[top:top + h, left:left + w] = img
    return out


def _slices_of_block(vol, spacing, block, orientation, min_height=16):
    """2D slices (each square, float32) of ``vol[z0:z1]`` in one orientation."""
    z0, z1 = block
    sub = vol[z0:z1]
    dz, dy, dx = spacing
    if orientation == "axial":
        return [_square(s, dy, dx) for s in sub]
    if z1 - z0 < min_height:
        return []
    if orientation == "coronal":          # fixed y: (z, x), superior at the top
        return [_square(sub[::-1, j, :], dz, dx) for j in range(sub.shape[1])]
    return [_square(sub[::-1, :, i], dz, dy) for i in range(sub.shape[2])]  # sagittal: (z, y)


def ct_slices(volume="chest", split="train", orientation="axial", size=128, window="wide",
              n=None, augment=0, held_out=None, margin=2, seed=0, path=None, min_signal=0.02):
    """Slices of a real CT volume as images (N, size, size) in [0, 1], train or held out.

    Parameters
    ----------
    volume : {"chest", "lung1", "lung2", "head"}
        the volume (licences in :data:`VOLUMES`: weights trained on the GPL head never ship).
    split : {"train", "test", "all"}
        the training blocks, the held-out block, or both.
    orientation : {"axial", "coronal", "sagittal", "all"} or sequence of them
    size : int or None
        output side; None keeps each slice's own square side (512 for chest axial slices).
    window : str or (float, float)
        the HU window (:data:`WINDOWS`).
    n : int, optional
        at most this many slices, drawn at random with ``seed`` (kept in their order).
    augment : int
        extra randomly augmented copies of every slice (flips, rotations up to 10 degrees,
        crops of 80-100 % of the side), for training.
    held_out : (float, float), optional
        the test block as fractions of the depth (default: the volume's own, in :data:`VOLUMES`).
    margin : int
        slices on each side of the test block that belong to neither split.
    seed : int
    path : str, optional
        the volume's file, instead of the installed one.
    min_signal : float
        slices whose mean intensity is below this (empty air, e.g. far sagittal slices) are
        dropped.

    Returns
    -------
    numpy.ndarray
        float32 (N, size, size) in [0, 1].

    Raises
    ------
    FileNotFoundError
        when the volume is not installed (the message says how to install it).
    ValueError
        for an unknown split, orientation or window, or a size below 8.
    """
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}.")
    orientations = ORIENTATIONS if orientation == "all" else (
        (orientation,) if isinstance(orientation, str) else tuple(orientation))
    bad = [o for o in orientations if o not in ORIENTATIONS]
    if bad:
        raise ValueError(f"unknown orientation {bad[0]!r}: choose from {ORIENTATIONS} or 'all'.")
    if size is not None and int(size) < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}.")
    vol, spacing = ct_volume(volume, path)
    vol = apply_window(vol, window)
    blocks = ct_blocks(len(vol), held_out or VOLUMES[volume]["held_out"], margin)
    chosen = blocks["train"] * (split != "test") + blocks["test"] * (split != "train")
    images = []
    for block in chosen:
        for o in orientations:
            images += _slices_of_block(vol, spacing, block, o)
    images = [im for im in images if im.mean() >= min_signal]
    if not images:
        raise ValueError(f"no {split} slices of the {volume} CT in {orientations}.")
    side = size or images[0].shape[0]
    out = np.stack([resize(im[None], side)[0] for im in images]).astype(np.float32)
    if n is not None and n < len(out):
        pick = np.sort(np.random.default_rng(seed).permutation(len(out))[:int(n)])
        out = out[pick]
    if augment:
        out = np.concatenate([out] + [augmented(out, seed + 1 + k) for k in range(int(augment))])
    return np.ascontiguousarray(np.clip(out, 0.0, 1.0))


def augmented(images, seed=0, max_degrees=10.0, min_crop=0.8):
    """Randomly flipped, rotated (up to ``max_degrees``) and cropped (a ``min_crop``-1 fraction
    of the side, resized back) copies of images (N, H, W) in [0, 1], one per image.

    Parameters
    ----------
    images : numpy.ndarray
    seed : int
    max_degrees : float
    min_crop : float

    Returns
    -------
    numpy.ndarray
        float32 (N, H, W) in [0, 1].
    """
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(seed)
    n = len(images)
    angle = np.deg2rad(rng.uniform(-max_degrees, max_degrees, n))
    scale = rng.uniform(min_crop, 1.0, n)
    shift = rng.uniform(-1.0, 1.0, (n, 2)) * (1.0 - scale)[:, None]
    flip = np.where(rng.random((n, 2)) < 0.5, -1.0, 1.0)
    theta = np.zeros((n, 2, 3), np.float32)
    theta[:, 0, 0] = scale * np.cos(angle) * flip[:, 0]
    theta[:, 0, 1] = -scale * np.sin(angle)
    theta[:, 1, 0] = scale * np.sin(angle)
    theta[:, 1, 1] = scale * np.cos(angle) * flip[:, 1]
    theta[:, :, 2] = shift
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]
    grid = F.affine_grid(torch.from_numpy(theta), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out[:, 0].clamp(0.0, 1.0).numpy()


def ct_patches(volume="chest", split="train", patch=32, n=20000, window="wide", seed=0,
               held_out=None, margin=2, path=None, min_signal=0.02, flips=True):
    """Random ``patch x patch`` patches of a CT volume's axial slices at their native size.

    Patches are cut from the axial slices of one split's blocks only (:func:`ct_blocks`), so
    a training patch never holds a voxel of the held-out block.

    Parameters
    ----------
    volume : {"chest", "lung1", "lung2", "head"}
    split : {"train", "test"}
    patch : int
        patch side in pixels.
    n : int
        number of patches.
    window : str or (float, float)
    seed : int
    held_out : (float, float), optional
    margin : int
    path : str, optional
    min_signal : float
        patches whose mean is below this (air) are redrawn, up to a limit.
    flips : bool
        flip patches at random (both axes).

    Returns
    -------
    numpy.ndarray
        float32 (n, patch, patch) in [0, 1].
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test' for patches, got {split!r}.")
    slices = ct_slices(volume, split, "axial", size=None, window=window, held_out=held_out,
                       margin=margin, path=path, min_signal=0.0)
    return draw_patches(slices, patch, n, np.random.default_rng(seed), min_signal, flips)


def draw_patches(slices, patch, n, rng, min_signal=0.02, flips=True, return_index=False):
    """``n`` random ``patch x patch`` patches of images (M, S, S), mostly-air ones redrawn.

    Parameters
    ----------
    slices : numpy.ndarray
        float32 (M, S, S).
    patch, n : int
    rng : numpy.random.Generator
    min_signal : float
        patches whose mean is below this are redrawn, up to 50 rounds (fewer may come back).
    flips : bool
        flip patches at random (both axes).
    return_index : bool
        also return the index of the image each patch was cut from.

    Returns
    -------
    numpy.ndarray or (numpy.ndarray, numpy.ndarray)
        float32 (n, patch, patch) [and int (n,)].
    """
    m, side = len(slices), slices.shape[1]
    if patch > side:
        raise ValueError(f"patch {patch} is larger than the slices ({side}).")
    out = np.empty((int(n), patch, patch), np.float32)
    src = np.empty(int(n), np.int64)
    filled = 0
    for _ in range(50):
        k = 2 * (n - filled)
        i = rng.integers(0, m, k)
        r, c = rng.integers(0, side - patch + 1, (2, k))
        cand = np.stack([slices[a, b:b + patch, d:d + patch] for a, b, d in zip(i, r, c)])
        keep = np.flatnonzero(cand.mean(axis=(1, 2)) >= min_signal)[:n - filled]
        out[filled:filled + len(keep)] = cand[keep]
        src[filled:filled + len(keep)] = i[keep]
        filled += len(keep)
        if filled == n:
            break
    out, src = out[:filled], src[:filled]
    if flips:
        f = rng.random((filled, 2)) < 0.5
        out[f[:, 0]] = out[f[:, 0], ::-1]
        out[f[:, 1]] = out[f[:, 1], :, ::-1]
    out = np.ascontiguousarray(out)
    return (out, src) if return_index else out
