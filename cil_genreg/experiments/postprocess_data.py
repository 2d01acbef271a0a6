r"""Post-processing (FBPConvNet, Jin et al. 2017) for one scanning geometry: the training pairs
(FBP of the simulated data, truth), the geometry a network was trained for, and the network
applied to an FBP image with a warning when the geometry is another.

A post-processing network :math:`P` learns :math:`x \approx P(\mathrm{FBP}(y))` for the data
:math:`y` of *one* projector :math:`A` and *one* measurement (:mod:`cil_genreg.physics.measurement`:
the scanner's Poisson counts at a dose, or Gaussian noise on :math:`Ax`, the inverse crime):
the streaks and noise it removes are those of that angle set and that dose. Its checkpoint
keeps both (:func:`geometry_of` and :func:`conditions_of`) in its metadata (``"geometry"``),
and :func:`postprocess` warns, naming both, when it is applied to another, and still returns
the result (measuring that loss is the point of the comparison).
"""
import math
import warnings

import numpy as np
import torch

from ..physics.forward import initial_reconstruction, make_geometry, make_projector
from ..physics.measurement import for_images
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


def conditions_of(measurement):
    """The facts of a measurement a post-processing network depends on: ``physics`` and its
    level (``dose``, photons per bin, for the scanner; ``noise``, σ as a fraction of
    :math:`\max Ax`, for the Gaussian inverse crime).

    Parameters
    ----------
    measurement : GaussianMeasurement or ScannerMeasurement

    Returns
    -------
    dict
        ``{"physics": "scanner", "dose": I0, "native": N}`` or ``{"physics": "gaussian",
        "noise": level}``.
    """
    if measurement.name == "scanner":
        return {"physics": "scanner", "dose": float(measurement.settings.I0),
                "native": int(measurement.native)}
    return {"physics": measurement.name, "noise": float(measurement.level)}


#: the level that makes two measurements of one physics differ (``native`` is descriptive)
LEVELS = {"scanner": "dose", "gaussian": "noise"}


def _physics(geometry):
    """The physics of a geometry dict; older checkpoints (a ``noise`` and no ``physics``) were
    trained on Gaussian data; None when unknown."""
    return geometry.get("physics", "gaussian" if "noise" in geometry else None)


def describe(geometry):
    """``"parallel beam, 30 angles over 180°, 128² images, scanner counts at dose 1e4"`` for
    a :func:`geometry_of` dict (with :func:`conditions_of`' entries when it has them).

    Parameters
    ----------
    geometry : dict

    Returns
    -------
    str
    """
    text = (f"{geometry['type']} beam, {geometry['angles']} angles over {geometry['span']:g}°, "
            f"{geometry['size']}² images")
    physics = _physics(geometry)
    if physics == "scanner":
        text += f", scanner counts at dose {float(geometry['dose']):.0e}".replace("e+0", "e")
    elif physics == "gaussian":
        text += f", Gaussian noise {100 * float(geometry['noise']):g}% (inverse crime)"
    return text


def same_geometry(a, b):
    """Whether two :func:`geometry_of` dicts describe the same scan (type, angles, span, size)
    and, when both say, the same measurement (physics, and its dose or noise level within
    1e-6 relatively).

    Parameters
    ----------
    a, b : dict

    Returns
    -------
    bool
    """
    keys = ("type", "angles", "size")
    if not all(a.get(k) == b.get(k) for k in keys) or \
            abs(float(a.get("span", 0)) - float(b.get("span", 0))) >= 1e-2:
        return False
    pa, pb = _physics(a), _physics(b)
    if pa is None or pb is None:
        return True
    level = LEVELS.get(pa)
    return pa == pb and (level is None or math.isclose(
        float(a.get(level, math.nan)), float(b.get(level, math.nan)), rel_tol=1e-6))


def fbp_pairs(images, angles, geometry="parallel", noise=0.02, limited_span=90, seed=0,
              backend="astra", device="cpu", measurement=None, size=None):
    r"""Training pairs of a post-processing network for one geometry and one measurement: for
    each truth :math:`x`, :math:`(\mathrm{FBP}(y), \bar x)`, :math:`y` and :math:`\bar x` from
    ``measurement.measure(x, A, rng)`` (:mod:`cil_genreg.physics.measurement`):

    * default, :class:`~cil_genreg.physics.measurement.GaussianMeasurement` (``noise``):
      :math:`y = Ax + \sigma\varepsilon`, :math:`\sigma` = ``noise`` × max Ax,
      :math:`\bar x = x` (the inverse crime);
    * :class:`~cil_genreg.physics.measurement.ScannerMeasurement`: :math:`x` at the native
      side (e.g. 512), Poisson counts at its dose, :math:`\bar x` the block mean of
      :math:`x` at ``size`` (e.g. 128).

    :math:`A` is the projector the comparisons reconstruct with (``measurement.kernel``:
    Joseph's ``linear`` for scanner data) and FBP is
    :func:`~cil_genreg.physics.forward.initial_reconstruction`, so the inputs are exactly
    what method ``postprocess`` gets in :func:`cil_genreg.experiments.comparison.compare` for
    the same data.

    Parameters
    ----------
    images : array (N, M, M)
        truths in [0, 1], :math:`M` = ``measurement.native_size(size)``.
    angles : int
    geometry : {"parallel", "limited", "fan"}
        (the scanner simulates parallel beams only).
    noise : float
        the Gaussian level when ``measurement`` is None.
    limited_span : float
        degrees covered by "limited".
    seed : int
        seeds the noise (one generator for all images, in order).
    backend, device : str
    measurement : GaussianMeasurement or ScannerMeasurement, optional
    size : int, optional
        the reconstruction's side (default the images').

    Returns
    -------
    (numpy.ndarray, dict)
        pairs (N, 2, size, size) float32 (FBP image, truth) and the geometry
        (:func:`geometry_of` with :func:`conditions_of`) for the checkpoint's metadata.

    Raises
    ------
    ValueError
        when the images' side is not the one the measurement needs for ``size``.
    """
    images = np.asarray(images, dtype=np.float32)
    measurement, size = for_images(images, measurement, noise, size, made="training pairs of")
    ig, ag = make_geometry(size, angles, geometry, limited_span=limited_span)
    A = make_projector(ig, ag, backend, device, kernel=measurement.kernel)
    rng = np.random.default_rng(seed)
    pairs = np.empty((len(images), 2, size, size), np.float32)
    for k, image in enumerate(images):
        measured = measurement.measure(image, A, rng)
        pairs[k, 0] = initial_reconstruction(A, measured.data, backend, device)[0].as_array()
        pairs[k, 1] = measured.truth.as_array()
    return pairs, dict(geometry_of(A), **conditions_of(measurement))


def check_geometry(network, A, measurement=None):
    """Warn when ``network`` was trained for another geometry than ``A``'s, or for another
    measurement than ``measurement`` (physics, dose or noise level; not compared when None),
    or does not say, naming both.

    Parameters
    ----------
    network : PostProcessingUNet
        with ``metadata["geometry"]``.
    A : CIL operator
    measurement : GaussianMeasurement or ScannerMeasurement, optional
        how the data at hand were made, when known.

    Returns
    -------
    bool
        True when the geometries (and measurements) agree.
    """
    here = geometry_of(A)
    if measurement is not None:
        here.update(conditions_of(measurement))
    trained = (getattr(network, "metadata", None) or {}).get("geometry")
    if not isinstance(trained, dict):
        warnings.warn("this post-processing network does not say which geometry it was trained "
                      f"for; applied to {describe(here)}.", stacklevel=3)
        return False
    if same_geometry(trained, here):
        return True
    warnings.warn(f"this post-processing network was trained for {describe(trained)} and is "
                  f"applied to {describe(here)}: a post-processing network learns the artefacts "
                  "of one geometry and one dose, expect it to do worse here (retrain it for "
                  f"these data: `cil-genreg train --model postprocess {_train_options(here)} "
                  "...`).", stacklevel=3)
    return False


def _train_options(geometry):
    """The ``cil-genreg train`` options of a geometry dict, e.g. ``--geometry parallel
    --angles 30 --size 128 --physics scanner --dose 1e4``."""
    span = float(geometry["span"])
    kind = "fan" if geometry["type"] == "cone" else "parallel" if abs(span - 180) < 1e-2 \
        else f"limited --limited-span {span:g}"
    text = f"--geometry {kind} --angles {geometry['angles']} --size {geometry['size']}"
    physics = _physics(geometry)
    if physics == "scanner":
        text += f" --physics scanner --dose {float(geometry['dose']):.0e}".replace("e+0", "e")
    elif physics == "gaussian":
        text += f" --physics gaussian --noise {float(geometry['noise']):g}"
    return text


def postprocess(network, A, y, x0=None, backend="astra", device="cpu", measurement=None):
    r""":math:`P(x_0)`, :math:`x_0` the FBP image of ``y`` (or the given ``x0``), slice by slice
    for a volume; warns (:func:`check_geometry`) when ``A`` (or ``measurement``) is not the
    network's geometry (or measurement).

    Parameters
    ----------
    network : PostProcessingUNet
    A, y : the projector and the data.
    x0 : DataContainer, optional
        the FBP image (default computed here).
    backend, device : str
        of the FBP.
    measurement : GaussianMeasurement or ScannerMeasurement, optional
        how ``y`` was made, when known (then a network of another dose warns too).

    Returns
    -------
    ImageData
    """
    from ..models.denoiser import require_kind
    require_kind(network, "postprocess", "method 'postprocess'")
    check_geometry(network, A, measurement)
    if x0 is None:
        x0 = initial_reconstruction(A, y, backend, device)[0]
    p = next(network.parameters())
    batch = as_tensor(x0, device=p.device).reshape(-1, 1, *x0.shape[-2:])
    with torch.inference_mode():
        out = network.eval()(batch)
    return from_tensor(out, out=A.domain_geometry().allocate(None))
