r"""Image quality, in one place.

* :func:`psnr`, :func:`ssim`: of one image (or volume) against the truth, as NumPy arrays or CIL
  DataContainers (the CIL side; the mean squared error is CIL's
  :func:`cil.utilities.quality_measures.mse`);
* fine detail, which PSNR (a reward for the mean) does not see: :func:`hfen` (the relative
  error after a Laplacian of Gaussian, Ravishankar & Bresler 2011) and :func:`masked_ssim`
  inside a region, e.g. the lungs of a CT slice (:func:`lung_mask`, :func:`lung_ssim`);
* :func:`batch_psnr`: per image of a torch batch (the torch side: training, evaluation).

PSNR is :math:`10 \log_{10}(r^2 / \mathrm{MSE})` with data range :math:`r`.
"""
import numpy as np


def psnr(x, truth, data_range=1.0):
    """PSNR (dB) of ``x`` against ``truth``: :math:`10 \\log_{10}(r^2 / \\text{MSE})`.

    Parameters
    ----------
    x, truth : numpy.ndarray or DataContainer
        the image and the ground truth, the same shape.
    data_range : float
        :math:`r`, the intensity range (1 for images in [0, 1]).

    Returns
    -------
    float
        the PSNR in dB (the MSE floored at 1e-30, so identical images give 300 dB).
    """
    from cil.utilities.quality_measures import mse
    error = float(mse(_container(x), _container(truth)))
    return float(10 * np.log10(data_range ** 2 / max(error, 1e-30)))


def ssim(x, truth, data_range=1.0, sigma=1.5):
    """Structural similarity (Wang et al. 2004) with a Gaussian window of width σ = 1.5
    (truncated at 3.5σ: 11 taps); of a volume (slices, H, W), the mean of its slices'.

    Parameters
    ----------
    x, truth : numpy.ndarray or DataContainer
        the image and the ground truth, the same shape.
    data_range : float
        the intensity range.
    sigma : float
        width of the Gaussian window.

    Returns
    -------
    float
    """
    return float(_ssim_map(x, truth, data_range, sigma).mean())


def _ssim_map(x, truth, data_range, sigma):
    """The local SSIM of every pixel (of every slice of a volume, each slice on its own)."""
    from scipy.ndimage import gaussian_filter
    x, truth = _array(x).astype(np.float64), _array(truth).astype(np.float64)
    if x.shape != truth.shape:
        raise ValueError(f"the image {x.shape} and the truth {truth.shape} differ in shape.")
    if truth.ndim == 3:
        return np.stack([_ssim_map(a, b, data_range, sigma) for a, b in zip(x, truth)])
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    blur = lambda a: gaussian_filter(a, sigma, truncate=3.5)  # noqa: E731
    mx, my = blur(x), blur(truth)
    vx, vy, cxy = blur(x * x) - mx ** 2, blur(truth * truth) - my ** 2, blur(x * truth) - mx * my
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))


def masked_ssim(x, truth, mask, data_range=1.0, sigma=1.5):
    r"""SSIM inside a region: the mean of the local SSIM map (:func:`ssim`'s, computed on the
    whole image, so the window sees the region's edges) over the pixels where ``mask`` is
    true. With an all-true mask it is :func:`ssim`.

    Parameters
    ----------
    x, truth : numpy.ndarray or DataContainer
        the image and the ground truth, the same shape.
    mask : numpy.ndarray of bool or None
        the region, the images' shape.
    data_range, sigma : float
        as :func:`ssim`.

    Returns
    -------
    float
        NaN when ``mask`` is None or empty (no region to score).
    """
    if mask is None or not np.any(mask):
        return float("nan")
    s = _ssim_map(x, truth, data_range, sigma)
    mask = np.asarray(mask, bool)
    if mask.shape != s.shape:
        raise ValueError(f"the mask {mask.shape} is not of the images' shape {s.shape}.")
    return float(s[mask].mean())


#: the width (pixels) of the Gaussian of :func:`hfen`'s Laplacian of Gaussian
HFEN_SIGMA = 1.5


def hfen(x, truth, sigma=HFEN_SIGMA):
    r"""High-frequency error norm (Ravishankar & Bresler 2011): the relative error of the
    images' fine detail, seen through a Laplacian of Gaussian of width ``sigma`` pixels,

    .. math:: \mathrm{HFEN}(x) = \frac{\|\mathrm{LoG}_\sigma(x) - \mathrm{LoG}_\sigma(x^\dagger)\|_2}
              {\|\mathrm{LoG}_\sigma(x^\dagger)\|_2} ;

    0 for the truth itself, lower is better. Unlike PSNR it punishes blur: a smooth image loses
    the truth's edges and textures, which the LoG keeps. A volume (slices, H, W) is filtered
    slice by slice (no filtering along the slices).

    Parameters
    ----------
    x, truth : numpy.ndarray or DataContainer
        the image and the ground truth, the same shape.
    sigma : float
        the Gaussian's width in pixels (:data:`HFEN_SIGMA` = 1.5, the literature's
        15 × 15 kernel).

    Returns
    -------
    float
        NaN when the truth has no detail at all (a constant image).
    """
    from scipy.ndimage import gaussian_laplace
    x, truth = _array(x).astype(np.float64), _array(truth).astype(np.float64)
    if x.shape != truth.shape:
        raise ValueError(f"the image {x.shape} and the truth {truth.shape} differ in shape.")
    def log(a):  # slice by slice; the mean removed (the discrete LoG of a constant is ~1e-4)
        a = a - truth.mean()
        return np.stack([gaussian_laplace(s, sigma) for s in a.reshape(-1, *a.shape[-2:])])

    reference = log(truth)
    norm = np.linalg.norm(reference)
    if norm <= 1e-12 * max(np.abs(truth).max(), 1.0) * np.sqrt(truth.size):
        return float("nan")
    return float(np.linalg.norm(log(x) - reference) / norm)


#: the lungs' threshold (HU) of :func:`lung_mask`: air-filled tissue is below it
LUNG_HU = -400.0
#: the fewest pixels a lung region of :func:`lung_mask` has, as a fraction of the image
LUNG_MIN_FRACTION = 0.005


def lung_mask(truth, window=(-1000.0, 1000.0), hu=LUNG_HU, min_fraction=LUNG_MIN_FRACTION):
    r"""The lungs of a CT slice in [0, 1] (``x = (HU - lo) / (hi - lo)`` of the HU ``window``,
    the 'wide' window by default): the pixels below ``hu`` HU that are *inside the body* (the
    air around the patient, connected to the image's border, is left out), eroded by one pixel
    (so partial-volume edges do not count), keeping the connected regions of at least
    ``min_fraction`` of the image's pixels.

    Parameters
    ----------
    truth : numpy.ndarray or DataContainer
        the ground truth, (H, W) or a volume (slices, H, W) taken slice by slice.
    window : (float, float)
        the HU window the image was made with.
    hu : float
        the threshold (:data:`LUNG_HU` = −400 HU).
    min_fraction : float
        the smallest region kept.

    Returns
    -------
    numpy.ndarray of bool or None
        None when no lung is found (e.g. an MNIST digit or a head slice): there is nothing to
        score inside.
    """
    from scipy import ndimage
    image = _array(truth).astype(np.float64)
    if image.ndim == 3:
        masks = [lung_mask(s, window, hu, min_fraction) for s in image]
        if all(m is None for m in masks):
            return None
        return np.stack([np.zeros(s.shape, bool) if m is None else m for m, s in zip(masks, image)])
    low, high = window
    air = image * (high - low) + low < hu
    labels, count = ndimage.label(air)
    border = set(np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])))
    inside = air & ~np.isin(labels, list(border - {0}))
    inside = ndimage.binary_erosion(inside)
    labels, count = ndimage.label(inside)
    if count == 0:
        return None
    sizes = ndimage.sum(inside, labels, range(1, count + 1))
    keep = 1 + np.flatnonzero(sizes >= min_fraction * image.size)
    return np.isin(labels, keep) if keep.size else None


def lung_ssim(x, truth, mask=None, data_range=1.0):
    """:func:`masked_ssim` inside the truth's :func:`lung_mask` (computed when not given):
    the structure of the lungs' vessels. NaN when the truth has no lungs.

    Parameters
    ----------
    x, truth : numpy.ndarray or DataContainer
    mask : numpy.ndarray of bool, optional
        the lung mask, when already computed.
    data_range : float

    Returns
    -------
    float
    """
    return masked_ssim(x, truth, lung_mask(truth) if mask is None else mask, data_range)


def batch_psnr(x, y, data_range=1.0):
    """Per-image PSNR (dB) of torch batches (B, ...): ``10 log10(range^2 / mean((x - y)^2))``.

    Parameters
    ----------
    x, y : torch.Tensor
        batches of the same shape (B, ...).
    data_range : float
        the intensity range.

    Returns
    -------
    torch.Tensor
        shape (B,), the MSE floored at 1e-12 (120 dB).
    """
    import torch
    mse = ((x - y) ** 2).flatten(1).mean(1).clamp_min(1e-12)
    return 10.0 * torch.log10(data_range ** 2 / mse)


def _array(x):
    return np.asarray(x.as_array() if hasattr(x, "as_array") else x)


def _container(x):
    from cil.framework import DataContainer
    return x if isinstance(x, DataContainer) else DataContainer(_array(x))
