r"""The weights of the Poisson-weighted least-squares data term (PWLS).

The negative Poisson log-likelihood of the counts :math:`N_i`, written in the line integrals
:math:`y_i = -\log(N_i / I_0) / s` and expanded to second order about the data (Sauer &
Bouman, *IEEE TSP* 41, 1993; Fessler, *IEEE TMI* 13, 1994), is the weighted least squares

.. math:: \|Ax - y\|_W^2 = \sum_i w_i\, (Ax - y)_i^2, \qquad
          w_i \propto \frac{1}{\mathrm{Var}\, y_i} \approx N_i\, s^2

(the delta method: :math:`\mathrm{Var}\, y_i \approx 1 / (N_i s^2)`). A ray through air (many
photons) is trusted more than one through the body (few), by orders of magnitude at low dose;
the unweighted :math:`\|Ax - y\|^2` treats them alike.

The weights here are normalised to mean 1,

.. math:: w_i = \frac{\max(N_i, \varepsilon)}{\frac1m \sum_j \max(N_j, \varepsilon)},

with :math:`\varepsilon` the zero-count floor of
:func:`~cil_genreg.physics.scanner.counts_to_line_integrals` (0.1 photon: a zero count gets a
small, finite weight), so that a λ of the unweighted data term keeps its units: the weighted
term is the unweighted one when all counts are equal. Each weighted residual then has about the
same variance,

.. math:: w_i\, \mathrm{Var}\, y_i \approx \sigma_W^2 = \frac{1}{\bar N s^2}, \qquad
          \bar N = \frac1m \sum_j \max(N_j, \varepsilon),

so :math:`\mathbb E \|A\bar x - y\|_W^2 \approx m \sigma_W^2`: the target of the discrepancy
principle with weights (:func:`weighted_noise_level`). The weights come from the measured
counts alone (no truth); using the noisy :math:`N_i` for their mean is the usual plug-in of
PWLS, its bias small where the counts are large.
"""
import numpy as np

from .scanner import ZERO_COUNTS

#: the data terms of the reconstructions: ``"ls"`` :math:`\|Ax - y\|^2`, ``"weighted"``
#: :math:`\|Ax - y\|_W^2` with the Poisson weights of the counts
DATA_TERMS = ("ls", "weighted")


def _floored_counts(counts, zero_counts):
    """The counts as float64, each at least ``zero_counts`` (refused unless finite and >= 0)."""
    values = np.asarray(counts.as_array() if hasattr(counts, "as_array") else counts,
                        dtype=np.float64)
    if not np.isfinite(zero_counts) or zero_counts <= 0:
        raise ValueError(f"zero_counts must be a finite number > 0, got {zero_counts!r}")
    if values.size == 0 or not np.all(np.isfinite(values)) or values.min() < 0:
        raise ValueError("the counts must be a non-empty array of finite photon counts >= 0 "
                         "(pass the raw counts, e.g. Scan.counts, not line integrals)")
    return np.maximum(values, float(zero_counts))


def poisson_weights(counts, zero_counts=ZERO_COUNTS):
    r"""The PWLS weights of photon counts, normalised to mean 1:
    :math:`w_i = \max(N_i, \varepsilon) / \mathrm{mean}_j \max(N_j, \varepsilon)`.

    Parameters
    ----------
    counts : AcquisitionData
        the photon counts :math:`N_i \ge 0` per bin (e.g. :attr:`.scanner.Scan.counts`).
    zero_counts : float
        :math:`\varepsilon > 0`, the floor of a zero count (the converter's, 0.1 photon).

    Returns
    -------
    AcquisitionData
        :math:`w`, float32, in the counts' geometry: finite, > 0, mean 1.
    """
    if getattr(counts, "geometry", None) is None:
        raise TypeError("counts must be an AcquisitionData (e.g. Scan.counts), whose geometry "
                        f"the weights take, got {type(counts).__name__}")
    floored = _floored_counts(counts, zero_counts)
    weights = counts.geometry.allocate(None)
    weights.fill((floored / floored.mean()).astype(np.float32))
    return weights


def weighted_noise_level(counts, scale, zero_counts=ZERO_COUNTS):
    r""":math:`\sigma_W = 1 / (s \sqrt{\bar N})`, the noise standard deviation of a datum of
    weight 1 under :func:`poisson_weights` (:math:`w_i \mathrm{Var}\, y_i \approx
    \sigma_W^2`): the discrepancy principle's :math:`\sigma` with those weights.

    Parameters
    ----------
    counts : AcquisitionData or array
        the photon counts :math:`N_i \ge 0`.
    scale : float
        :math:`s`, line integrals per image unit (:attr:`.scanner.Scan.scale`).
    zero_counts : float
        :math:`\varepsilon`.

    Returns
    -------
    float
    """
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    return float(1.0 / (scale * np.sqrt(_floored_counts(counts, zero_counts).mean())))


def check_weights(weights, geometry, name="weights"):
    """``weights`` refused, saying what to do, unless a DataContainer of ``geometry``'s shape
    with finite values >= 0, not all zero (None passes: the unweighted data term).

    Parameters
    ----------
    weights : DataContainer or None
    geometry : AcquisitionGeometry
        the data's (the operator's range).
    name : str
        the argument's name, for the message.

    Returns
    -------
    DataContainer or None
        ``weights``.
    """
    if weights is None:
        return None
    if not hasattr(weights, "as_array"):
        raise TypeError(f"{name} must be a CIL DataContainer in the data's geometry (e.g. "
                        f"poisson_weights(scan.counts)), got {type(weights).__name__}: wrap an "
                        "array with A.range_geometry().allocate() and .fill(array)")
    if tuple(weights.shape) != tuple(geometry.shape):
        raise ValueError(f"{name} has shape {tuple(weights.shape)} but the data have shape "
                         f"{tuple(geometry.shape)}: one weight per datum")
    values = weights.as_array()
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} has non-finite values: weights are finite (a zero count "
                         "gets a small weight, poisson_weights)")
    if values.min() < 0:
        raise ValueError(f"{name} has negative values (min {values.min():.3g}): weights are "
                         "inverse variances, >= 0")
    if not values.max() > 0:
        raise ValueError(f"{name} are all zero: no datum would count")
    return weights
