r"""Image quality, in one place.

* :func:`psnr`, :func:`ssim`: of one image (or volume) against the truth, as NumPy arrays or CIL
  DataContainers (the CIL side; the mean squared error is CIL's
  :func:`cil.utilities.quality_measures.mse`);
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
    from scipy.ndimage import gaussian_filter
    x, truth = _array(x).astype(np.float64), _array(truth).astype(np.float64)
    if truth.ndim == 3:
        return float(np.mean([ssim(a, b, data_range, sigma) for a, b in zip(x, truth)]))
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    blur = lambda a: gaussian_filter(a, sigma, truncate=3.5)  # noqa: E731
    mx, my = blur(x), blur(truth)
    vx, vy, cxy = blur(x * x) - mx ** 2, blur(truth * truth) - my ** 2, blur(x * truth) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return float(s.mean())


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
