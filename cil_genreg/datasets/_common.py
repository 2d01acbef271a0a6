"""Helpers shared by the dataset loaders: checks, [0, 1] scaling and resizing."""
import numpy as np

from ..utilities.validation import real_array


def as_images(array, name="images"):
    r"""A float32 array (N, H, W) in [0, 1] from images (N, H, W), (H, W) or (N, 1, H, W).

    Values already all in [0, 1] are kept as they are; anything else is min-max scaled over the
    whole array (not per image),

    .. math:: x \leftarrow \frac{x - \min x}{\max x - \min x},

    and a constant array outside [0, 1] becomes zeros.

    Parameters
    ----------
    array : array_like
        the images, any real dtype.
    name : str
        what to call them in error messages (default ``"images"``).

    Returns
    -------
    numpy.ndarray
        C-contiguous float32 (N, H, W) in [0, 1]; a (H, W) input gives N = 1.

    Raises
    ------
    ValueError
        for another shape, no values, or NaN or infinite values (see
        :func:`cil_genreg.validation.real_array`).
    TypeError
        for complex, text or object values.
    """
    a = real_array(array, name, booleans=True)
    if a.ndim == 2:
        a = a[None]
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 3:
        raise ValueError(f"{name} must have shape (N, H, W) or (H, W) (or (N, 1, H, W)); "
                         f"got shape {a.shape}.")
    lo, hi = float(a.min()), float(a.max())
    if lo < 0.0 or hi > 1.0:
        a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    return np.ascontiguousarray(a, dtype=np.float32)


def image_batch(images, name="images", device=None):
    """A torch batch (N, 1, H, W), float32 in [0, 1], from what :func:`as_images` takes, a
    DataContainer or a tensor.

    Parameters
    ----------
    images : array-like, DataContainer or torch.Tensor
    name : str
        what the error messages call it.
    device : torch.device, optional
        where the batch goes (default: the CPU).

    Returns
    -------
    torch.Tensor
    """
    import torch
    if hasattr(images, "as_array") and not isinstance(images, np.ndarray):
        images = images.as_array()
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    batch = torch.from_numpy(as_images(images, name))[:, None]
    return batch if device is None else batch.to(device)


def resize(images, size):
    """Resize a stack (N, H, W) to (N, size, size) with bilinear (antialiased) interpolation.

    ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False, antialias=True)``:
    each output pixel is a non-negative weighted mean of input pixels, so values stay within
    the input's range (images in [0, 1] stay in [0, 1]).

    Parameters
    ----------
    images : array_like
        (N, H, W), any real dtype (converted to float32); H and W need not be equal.
    size : int
        side of the output.

    Returns
    -------
    numpy.ndarray
        float32 (N, size, size); ``images`` as float32, unresized, when already that size.
    """
    import torch
    import torch.nn.functional as F

    images = np.asarray(images, dtype=np.float32)
    if images.shape[1:] == (size, size):
        return images
    t = torch.from_numpy(np.ascontiguousarray(images))[:, None]
    out = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False,
                        antialias=True)
    return out[:, 0].numpy()


def centre_crop(images, crop):
    """The central ``crop x crop`` square of each image in a stack (N, H, W)."""
    n, h, w = images.shape
    if crop > h or crop > w:
        raise ValueError(f"cannot crop {crop}x{crop} from images of shape {h}x{w}.")
    top, left = (h - crop) // 2, (w - crop) // 2
    return images[:, top:top + crop, left:left + crop]


def take(images, n, name):
    """The first ``n`` images (all when ``n`` is None), with a clear error when too few."""
    if n is None:
        return images
    n = int(n)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}.")
    if n > len(images):
        raise ValueError(f"asked for n={n} images but {name} has only {len(images)}.")
    return images[:n]
