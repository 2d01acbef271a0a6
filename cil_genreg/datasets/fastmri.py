"""fastMRI knee images (https://fastmri.med.nyu.edu/) from local HDF5 files.

A fastMRI single-coil or multi-coil file holds ``reconstruction_esc`` (single-coil) or
``reconstruction_rss`` (multi-coil), float32 of shape (slices, 320, 320). As in the paper (and
the talk), each slice is centre-cropped to 320 x 320 (when larger), resized to ``size x size``
(bilinear, antialiased) and scaled to [0, 1] by its own maximum, ``x / max(x)``.
"""
import glob
import os

import numpy as np

from ._common import centre_crop, resize, take

KEYS = ("reconstruction_esc", "reconstruction_rss")
WHERE = ("fastMRI data cannot be downloaded automatically: request access at "
         "https://fastmri.med.nyu.edu/, download the knee files (e.g. knee_singlecoil_val.tar.xz) "
         "and pass the directory holding the extracted *.h5 files (or one .h5 file) as path.")


def fastmri_knee(path, n=None, size=128, crop=320, slices=None):
    """fastMRI knee slices as float32 (N, size, size) in [0, 1].

    Parameters
    ----------
    path : str
        one ``.h5`` file or a directory of them (read in sorted order).
    n : int, optional
        stop after ``n`` slices.
    size : int
        output side (128 as in the paper).
    crop : int
        centre crop before resizing (320: the reconstructions' own size).
    slices : slice, optional
        which slices of each volume to use (e.g. ``slice(10, -10)`` drops edge slices).

    Raises
    ------
    FileNotFoundError
        when ``path`` holds no HDF5 file; the message says where to get them.
    KeyError
        when a file has neither ``reconstruction_esc`` nor ``reconstruction_rss``.
    """
    import h5py

    path = os.fspath(path)
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, "*.h5")) + glob.glob(os.path.join(path, "*.hdf5")))
    elif os.path.isfile(path):
        files = [path]
    else:
        files = []
    if not files:
        raise FileNotFoundError(f"no fastMRI .h5 files at {path!r}. " + WHERE)
    out, total = [], 0
    for f in files:
        with h5py.File(f, "r") as h:
            key = next((k for k in KEYS if k in h), None)
            if key is None:
                raise KeyError(f"{f!r} has none of the datasets {KEYS} (found {list(h.keys())}); "
                               "is it a fastMRI knee file? " + WHERE)
            vol = np.asarray(h[key][slices if slices is not None else slice(None)], np.float32)
        if vol.ndim != 3:
            raise ValueError(f"{f!r}: {key} has shape {vol.shape}, expected (slices, H, W).")
        c = min(crop, vol.shape[1], vol.shape[2])
        vol = resize(centre_crop(vol, c), size)
        peak = vol.reshape(len(vol), -1).max(1)[:, None, None]
        vol = np.where(peak > 0, vol / np.where(peak > 0, peak, 1), 0).clip(0, 1)
        out.append(vol.astype(np.float32))
        total += len(vol)
        if n is not None and total >= n:
            break
    images = np.concatenate(out)
    return np.ascontiguousarray(take(images, n, f"the fastMRI files at {path!r}"))
