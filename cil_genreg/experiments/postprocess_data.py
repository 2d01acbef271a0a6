r"""Post-processing (FBPConvNet, Jin et al. 2017) for one scanning geometry: the training pairs
(FBP of the simulated data, truth), the geometry a network was trained for, and the network
applied to an FBP image with a warning when the geometry is another.

A post-processing network :math:`P` learns :math:`x \approx P(\mathrm{FBP}(y))` for the data
:math:`y = Ax + \text{noise}` of *one* projector :math:`A`: the streaks it removes are those of
that angle set. Its checkpoint keeps the geometry (:func:`geometry_of`) in its metadata
(``"geometry"``), and :func:`postprocess` warns, naming both, when it is applied to another,
and still returns the result (measuring that loss is the point of the comparison).
"""
import warnings

import numpy as np
import torch

from ..physics.forward import initial_reconstruction, make_geometry, make_projector
from ..physics.measurement import GaussianMeasurement
from ..utilities.bridge import as_tensor, from_tensor


def geometry_of(A):
    """The facts of a projector's geometry a post-processing network depends on.

    Parameters
    ----------
    A : CIL operator
        a 2D projector (or a slice-wise one: its slices' geometry).

    Returns
    -------
    dict
        ``type`` ("parallel" or "cone"), ``angles`` (count), ``span`` (degrees covered, as
        ``linspace(0, span, angles, endpoint=False)``), ``size`` (image side), ``panel``.
    """
    ag, ig = A.range_geometry(), A.domain_geometry()
    angles = np.asarray(ag.angles, dtype=np.float64)
    n = len(angles)
    span = float(abs(angles[-1] - angles[0]) * n / (n - 1)) if n > 1 else 0.0
    return {"type": str(ag.geom_type).lower(), "angles": int(n), "span": round(span, 3),
            "size": int(ig.shape[-1]), "panel": int(ag.pixel_num_h)}


def describe(geometry):
    """``"parallel beam, 30 angles over 180°, 128² images"`` for a :func:`geometry_of` dict.

    Parameters
    ----------
    geometry : dict

    Returns
    -------
    str
    """
    return (f"{geometry['type']} beam, {geometry['angles']} angles over {geometry['span']:g}°, "
            f"{geometry['size']}² images")


def same_geometry(a, b):
    """Whether two :func:`geometry_of` dicts describe the same scan (type, angles, span, size).

    Parameters
    ----------
    a, b : dict

    Returns
    -------
    bool
    """
    keys = ("type", "angles", "size")
    return all(a.get(k) == b.get(k) for k in keys) and \
        abs(float(a.get("span", 0)) - float(b.get("span", 0))) < 1e-2


def fbp_pairs(images, angles, geometry="parallel", noise=0.02, limited_span=90, seed=0,
              backend="astra", device="cpu"):
    r"""Training pairs of a post-processing network for one geometry: for each truth
    :math:`x`, :math:`(\mathrm{FBP}(Ax + \sigma\varepsilon), x)`, :math:`\sigma` = ``noise``
    × max Ax (:class:`~cil_genreg.physics.measurement.GaussianMeasurement`, the demos'
    model), FBP by :func:`~cil_genreg.physics.forward.initial_reconstruction`.

    Parameters
    ----------
    images : array (N, H, H)
        truths in [0, 1].
    angles : int
    geometry : {"parallel", "limited", "fan"}
    noise : float
    limited_span : float
        degrees covered by "limited".
    seed : int
        seeds the noise.
    backend, device : str

    Returns
    -------
    (numpy.ndarray, dict)
        pairs (N, 2, H, H) float32 (FBP image, truth) and the geometry (:func:`geometry_of`,
        with ``noise``) for the checkpoint's metadata.
    """
    images = np.asarray(images, dtype=np.float32)
    ig, ag = make_geometry(images.shape[-1], angles, geometry, limited_span=limited_span)
    A = make_projector(ig, ag, backend, device)
    measurement, rng = GaussianMeasurement(noise), np.random.default_rng(seed)
    pairs = np.empty((len(images), 2) + images.shape[1:], np.float32)
    for k, image in enumerate(images):
        measured = measurement.measure(image, A, rng)
        pairs[k, 0] = initial_reconstruction(A, measured.data, backend, device)[0].as_array()
        pairs[k, 1] = measured.truth.as_array()
    return pairs, dict(geometry_of(A), noise=float(noise))


def check_geometry(network, A):
    """Warn when ``network`` was trained for another geometry than ``A``'s (or does not say),
    naming both.

    Parameters
    ----------
    network : PostProcessingUNet
        with ``metadata["geometry"]``.
    A : CIL operator

    Returns
    -------
    bool
        True when the geometries agree.
    """
    here = geometry_of(A)
    trained = (getattr(network, "metadata", None) or {}).get("geometry")
    if not isinstance(trained, dict):
        warnings.warn("this post-processing network does not say which geometry it was trained "
                      f"for; applied to {describe(here)}.", stacklevel=3)
        return False
    if same_geometry(trained, here):
        return True
    warnings.warn(f"this post-processing network was trained for {describe(trained)} and is "
                  f"applied to {describe(here)}: a post-processing network learns the artefacts "
                  "of one geometry, expect it to do worse here (retrain it for this geometry, "
                  "`cil-genreg train --model postprocess ...`).", stacklevel=3)
    return False


def postprocess(network, A, y, x0=None, backend="astra", device="cpu"):
    r""":math:`P(x_0)`, :math:`x_0` the FBP image of ``y`` (or the given ``x0``), slice by slice
    for a volume; warns (:func:`check_geometry`) when ``A`` is not the network's geometry.

    Parameters
    ----------
    network : PostProcessingUNet
    A, y : the projector and the data.
    x0 : DataContainer, optional
        the FBP image (default computed here).
    backend, device : str
        of the FBP.

    Returns
    -------
    ImageData
    """
    from ..models.denoiser import require_kind
    require_kind(network, "postprocess", "method 'postprocess'")
    check_geometry(network, A)
    if x0 is None:
        x0 = initial_reconstruction(A, y, backend, device)[0]
    p = next(network.parameters())
    batch = as_tensor(x0, device=p.device).reshape(-1, 1, *x0.shape[-2:])
    with torch.inference_mode():
        out = network.eval()(batch)
    return from_tensor(out, out=A.domain_geometry().allocate(None))
