"""3D phantoms whose every slice belongs to the paper's *shapes* family: balls (circular
slices) and square frustums (square slices), tilted, so that the slices change smoothly
along z. For volumes regularised by a 2D generator trained on :func:`~.synthetic.shapes`."""
import numpy as np

from .synthetic import _check, _downsample, _grid


def shape_volumes(n, slices=16, size=64, seed=0):
    r"""``n`` volumes of ``slices`` slices, each one solid object on a background of 0:

    * a **ball** of radius :math:`R \sim U(0.32, 0.45)` cut at heights
      :math:`t \in [-0.8R, 0.8R]`: circles of radius :math:`\sqrt{R^2 - t^2}` (0.6R to R);
    * a **square frustum**: squares whose half-side goes linearly from
      :math:`a_0 \sim U(0.12, 0.2)` to :math:`a_1 \sim U(0.25, 0.35)` (or back);

    each with a centre :math:`c(t) = c_0 + s\,t`, :math:`c_0 \sim U([-0.3, 0.3]^2)`,
    :math:`s \sim U([-0.4, 0.4]^2)` (a tilted object), intensity 1, in the units of
    :func:`~.synthetic.shapes` (an image spans :math:`[-1, 1]^2`), edges supersampled.

    Parameters
    ----------
    n : int
        number of volumes.
    slices : int
        slices per volume (at least 2).
    size : int
        slice side in pixels.
    seed : int
        seed of :func:`numpy.random.default_rng`.

    Returns
    -------
    numpy.ndarray
        float32 (n, slices, size, size) in [0, 1].

    Raises
    ------
    ValueError
        when ``n < 0``, ``slices < 2`` or ``size < 8``.
    """
    n, size = _check(n, size)
    if int(slices) < 2:
        raise ValueError(f"slices must be at least 2, got {slices}.")
    slices = int(slices)
    rng = np.random.default_rng(seed)
    yy, xx = _grid(size)
    out = np.zeros((n, slices, size, size), np.float32)
    u = np.linspace(-1.0, 1.0, slices)
    for i in range(n):
        ball = rng.random() < 0.5
        c0 = rng.uniform(-0.3, 0.3, size=2)
        tilt = rng.uniform(-0.4, 0.4, size=2)
        if ball:
            R = rng.uniform(0.32, 0.45)
            heights = 0.8 * R * u
        else:
            a0, a1 = rng.uniform(0.12, 0.2), rng.uniform(0.25, 0.35)
            if rng.random() < 0.5:
                a0, a1 = a1, a0
            heights = 0.3 * u
        for k, t in enumerate(heights):
            cy, cx = c0 + tilt * t
            if ball:
                r2 = R * R - t * t
                hi = (yy - cy) ** 2 + (xx - cx) ** 2 <= r2
            else:
                a = a0 + (a1 - a0) * (u[k] + 1) / 2
                hi = (np.abs(yy - cy) <= a) & (np.abs(xx - cx) <= a)
            out[i, k] = _downsample(hi.astype(np.float32), size)
    return out
