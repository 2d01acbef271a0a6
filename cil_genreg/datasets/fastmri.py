"""fastMRI knee images (https://fastmri.med.nyu.edu/) from local HDF5 files.

A fastMRI single-coil or multi-coil file holds ``reconstruction_esc`` (single-coil) or
``reconstruction_rss`` (multi-coil), float32 of shape (slices, 320, 320). As in the paper (and
the talk), each slice is centre-cropped to 320 x 320 (when larger), resized to ``size x size``
(bilinear, antialiased) and scaled to [0, 1] by its own maximum, ``x / max(x)``.

fastMRI's *test* and *challenge* sets ship k-space only (no reconstructions): they cannot be
used here; the single-coil *val* and *train* files can.
"""
import glob
import os

import numpy as np

from ._common import centre_crop, resize

KEYS = ("reconstruction_esc", "reconstruction_rss")
WHERE = ("fastMRI data cannot be downloaded automatically: request access at "
         "https://fastmri.med.nyu.edu/, download the knee files (e.g. knee_singlecoil_val.tar.xz) "
         "and pass the directory holding the extracted *.h5 files (or one .h5 file) as path.")
USE_VAL = ("use the single-coil *val* or *train* files (knee_singlecoil_val.tar.xz, "
           "knee_singlecoil_train.tar.xz), which hold the image reconstructions")


class FastMRIError(ValueError):
    """A fastMRI file or selection that cannot give images; the message says what to do."""


class MissingReconstructionError(FastMRIError, KeyError):
    """A file without ``reconstruction_esc``/``reconstruction_rss`` (e.g. fastMRI's test set,
    which ships k-space only). Also a :class:`KeyError`, for callers that catch one."""

    def __str__(self):  # KeyError would print the message quoted
        return str(self.args[0]) if self.args else ""


class NoSlicesError(FastMRIError):
    """The files (after the ``slices`` selection) hold no slice at all."""


def _files(path):
    if os.path.isdir(path):
        return sorted(glob.glob(os.path.join(path, "*.h5"))
                      + glob.glob(os.path.join(path, "*.hdf5")))
    return [path] if os.path.isfile(path) else []


def _read(f, slices):
    """The selected slices of one file's reconstruction, float32 (slices, H, W)."""
    import h5py
    try:
        h = h5py.File(f, "r")
    except OSError as err:
        raise FastMRIError(
            f"{f!r} is not a readable HDF5 file ({err}). Is the download complete and the "
            "archive extracted (tar -xJf knee_singlecoil_val.tar.xz)? Download it again, or "
            "remove the file from the folder.") from err
    with h:
        key = next((k for k in KEYS if k in h), None)
        if key is None:
            found = ", ".join(sorted(h.keys())) or "nothing"
            if "kspace" in h:
                why = ("fastMRI's test (and challenge) set ships k-space only; " + USE_VAL)
            else:
                why = "is it a fastMRI knee file? " + WHERE
            raise MissingReconstructionError(
                f"{f!r} has no 'reconstruction_esc' or 'reconstruction_rss' (it holds: "
                f"{found}): {why}.")
        try:
            vol = np.asarray(h[key][slices if slices is not None else slice(None)], np.float32)
        except (OSError, TypeError, ValueError) as err:
            raise FastMRIError(f"{f!r}: cannot read {key} ({err}); the file looks damaged: "
                               "download it again.") from err
    if vol.ndim != 3:
        raise FastMRIError(f"{f!r}: {key} has shape {vol.shape}, expected (slices, H, W); "
                           "is it a fastMRI knee file?")
    return vol


def fastmri_knee(path, n=None, size=128, crop=320, slices=None, allow_fewer=False):
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
    allow_fewer : bool
        when the files hold fewer than ``n`` slices, return those (default: an error).

    Returns
    -------
    numpy.ndarray
        C-contiguous float32 (N, size, size) in [0, 1]: the slices in file order (files sorted
        by name), each centre-cropped to ``min(crop, H, W)`` square, resized and divided by its
        own maximum (an all-zero slice stays zero). N is ``n``, or every selected slice when
        ``n`` is None (fewer than ``n`` only with ``allow_fewer``; (0, size, size) for ``n=0``).

    Raises
    ------
    FileNotFoundError
        when ``path`` holds no HDF5 file; the message says where to get them.
    ValueError
        when ``n < 0``.
    MissingReconstructionError
        (a :class:`FastMRIError` and a :class:`KeyError`) when a file has neither
        ``reconstruction_esc`` nor ``reconstruction_rss``, as in fastMRI's k-space-only test set.
    NoSlicesError
        (a :class:`FastMRIError`) when no slice is left (e.g. ``slices`` drops them all).
    FastMRIError
        (a :class:`ValueError`) when a file is not readable HDF5 or a reconstruction is not
        (slices, H, W), or, without ``allow_fewer``, when fewer than ``n`` slices exist.
    """
    path = os.fspath(path)
    files = _files(path)
    if not files:
        raise FileNotFoundError(f"no fastMRI .h5 files at {path!r}. " + WHERE)
    if n is not None and int(n) < 0:
        raise ValueError(f"n must be >= 0, got {n}.")
    out, total, counts = [], 0, []
    for f in files:
        if n is not None and total >= n:
            break
        vol = _read(f, slices)
        counts.append(f"{os.path.basename(f)}: {len(vol)}")
        if len(vol) == 0:
            continue
        if n is not None:
            vol = vol[:n - total]
        c = min(crop, vol.shape[1], vol.shape[2])
        vol = resize(centre_crop(vol, c), size)
        peak = vol.reshape(len(vol), -1).max(1)[:, None, None]
        vol = np.where(peak > 0, vol / np.where(peak > 0, peak, 1), 0).clip(0, 1)
        out.append(vol.astype(np.float32))
        total += len(vol)
    selected = "" if slices is None else \
        f" in the selection slices[{slices.start}:{slices.stop}] of each volume"
    if total == 0 and n != 0:
        raise NoSlicesError(f"the fastMRI files at {path!r} hold no slices{selected} "
                            f"(slices per file: {', '.join(counts[:5])}"
                            f"{', ...' if len(counts) > 5 else ''}).")
    if n is not None and total < n and not allow_fewer:
        raise FastMRIError(f"asked for n={n} slices but the fastMRI files at {path!r} hold only "
                           f"{total}{selected}: ask for fewer or add files.")
    if not out:
        return np.zeros((0, size, size), np.float32)
    return np.ascontiguousarray(np.concatenate(out))
