"""Synthetic image families: the paper's shapes (circles, squares, empty) and random ellipses.

Both are drawn on a ``size x size`` grid over ``[-1, 1]^2`` with 4 x 4 supersampling per pixel
(antialiased edges), deterministically from ``seed``; float32 (N, size, size) in [0, 1].
"""
import numpy as np

#: subpixels per pixel along each axis: every pixel is the mean of SUPERSAMPLE^2 point samples.
SUPERSAMPLE = 4


def _grid(size):
    """Supersampled pixel-centre coordinates, shape (size*s, size*s) each, in [-1, 1]."""
    m = size * SUPERSAMPLE
    c = (np.arange(m, dtype=np.float32) + 0.5) / m * 2.0 - 1.0
    return np.meshgrid(c, c, indexing="ij")  # (row = y, col = x)


def _downsample(img, size):
    return img.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE).mean(axis=(1, 3))


def _check(n, size):
    n, size = int(n), int(size)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}.")
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}.")
    return n, size


def shapes(n, size=64, seed=0, probabilities=(1 / 3, 1 / 3, 1 / 3), return_labels=False):
    """The paper's *shapes*: each image is one white circle, one white square, or empty.

    A circle has centre ``c ~ U([-0.6, 0.6]^2)`` and radius ``r ~ U(0.15, 0.4)``; a square
    (axis-aligned) has centre ``c ~ U([-0.6, 0.6]^2)`` and half-side ``a ~ U(0.12, 0.35)``;
    both have intensity 1 on a background of 0 (in units where the image spans [-1, 1]).

    Parameters
    ----------
    n : int
        number of images.
    size : int
        side in pixels (28, 64 and 128 are the usual ones).
    seed : int
        seed of :func:`numpy.random.default_rng`: the same seed gives the same images.
    probabilities : 3 floats
        of circle, square, empty.
    return_labels : bool
        also return labels (0 circle, 1 square, 2 empty).

    Returns
    -------
    numpy.ndarray
        float32 (n, size, size) in [0, 1] (and int64 labels (n,) with ``return_labels``).

    Raises
    ------
    ValueError
        when ``n < 0``, ``size < 8``, or ``probabilities`` are not 3 non-negative numbers with
        a positive sum.
    """
    n, size = _check(n, size)
    p = np.asarray(probabilities, dtype=float)
    if p.shape != (3,) or np.any(p < 0) or p.sum() <= 0:
        raise ValueError("probabilities must be 3 non-negative numbers (circle, square, empty).")
    rng = np.random.default_rng(seed)
    yy, xx = _grid(size)
    out = np.zeros((n, size, size), np.float32)
    labels = rng.choice(3, size=n, p=p / p.sum())
    for i, kind in enumerate(labels):
        cy, cx = rng.uniform(-0.6, 0.6, size=2)
        if kind == 0:
            r = rng.uniform(0.15, 0.4)
            hi = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r)
        elif kind == 1:
            a = rng.uniform(0.12, 0.35)
            hi = (np.abs(yy - cy) <= a) & (np.abs(xx - cx) <= a)
        else:
            continue
        out[i] = _downsample(hi.astype(np.float32), size)
    return (out, labels.astype(np.int64)) if return_labels else out


def ellipses(n, size=64, seed=0, max_ellipses=6):
    r"""Random-ellipse phantoms: a sum of random ellipses, scaled to a maximum of 1.

    Each image holds :math:`K \sim U\{1, \dots, \text{max\_ellipses}\}` ellipses

    .. math:: E_k = \Big\{ (x, y) : \frac{u^2}{a_k^2} + \frac{w^2}{b_k^2} \le 1 \Big\},
              \quad u = (x - c_x) \cos\theta_k + (y - c_y) \sin\theta_k, \quad
              w = -(x - c_x) \sin\theta_k + (y - c_y) \cos\theta_k,

    with centre :math:`c_k \sim U([-0.5, 0.5]^2)`, semi-axes :math:`a_k, b_k \sim U(0.08, 0.5)`,
    angle :math:`\theta_k \sim U(0, \pi)` and intensity :math:`v_k \sim U(0.2, 1)`, all
    independent; the image is

    .. math:: f = \frac{\bar f}{\max \bar f}, \qquad
              \bar f = \text{pixel means of } \sum_{k=1}^K v_k \mathbf{1}_{E_k},

    so its maximum is 1 and overlapping ellipses are brighter (``x`` runs along columns, ``y``
    along rows, both over [-1, 1]; ellipses may extend past the border, where they are cut).

    Parameters
    ----------
    n : int
        number of images.
    size : int
        side in pixels, at least 8.
    seed : int
        seed of :func:`numpy.random.default_rng`: the same seed gives the same images.
    max_ellipses : int
        largest number of ellipses per image, at least 1 (default 6).

    Returns
    -------
    numpy.ndarray
        float32 (n, size, size) in [0, 1], each image's maximum 1.

    Raises
    ------
    ValueError
        when ``n < 0``, ``size < 8`` or ``max_ellipses < 1``.
    """
    n, size = _check(n, size)
    if int(max_ellipses) < 1:
        raise ValueError("max_ellipses must be >= 1.")
    rng = np.random.default_rng(seed)
    yy, xx = _grid(size)
    out = np.zeros((n, size, size), np.float32)
    for i in range(n):
        f = np.zeros_like(yy)
        for _ in range(rng.integers(1, int(max_ellipses) + 1)):
            cy, cx = rng.uniform(-0.5, 0.5, size=2)
            a, b = rng.uniform(0.08, 0.5, size=2)
            t = rng.uniform(0, np.pi)
            u = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)
            w = -(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)
            f += rng.uniform(0.2, 1.0) * ((u / a) ** 2 + (w / b) ** 2 <= 1.0)
        img = _downsample(f, size)
        out[i] = img / img.max() if img.max() > 0 else img
    return out
