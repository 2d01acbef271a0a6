r"""The data of an experiment, two ways: how a truth becomes the sinogram that is reconstructed.

* :class:`ScannerMeasurement` (the CT experiments' default): a CT scanner without the inverse
  crime (:mod:`.scanner`): the truth at its native resolution (512² at 0.7 mm) projected on a
  4× finer detector, Beer–Lambert photon counts with Poisson noise (:math:`I_0` photons per
  bin), back to line integrals by CIL's ``TransmissionAbsorptionConverter``, reconstructed on a
  coarser grid and scored against the truth's block mean on that grid;
* :class:`GaussianMeasurement`: the **inverse crime**, named as such: the data made by the very
  projector that reconstructs, on the same grid, :math:`y = Ax + \sigma\varepsilon`,
  :math:`\sigma` a fraction of :math:`\max Ax` (the MNIST and shapes experiments, and the CT
  tables before realistic physics).

Each gives, for one truth and the reconstruction's projector :math:`A`, the data :math:`y`, the
noise level :math:`\sigma` the discrepancy principle needs (:math:`\mathbb E\|y - \bar y\|^2
\approx m\sigma^2` over the :math:`m` data; for Poisson data estimated from the counts, by the
delta method :math:`\mathrm{Var}\, y_i \approx 1 / (N_i\, s^2)`, no truth used) and the
reference image the reconstruction is scored against; a scan also gives the weights of the
Poisson-weighted data term :math:`\|Ax - y\|_W^2` (:mod:`.weights`) and the noise level
:math:`\sigma_W` its discrepancy principle needs.
"""
from dataclasses import dataclass

import numpy as np

from .scanner import NORMAL_DOSE, ScannerSettings, scan
from .weights import DATA_TERMS, poisson_weights, weighted_noise_level


@dataclass
class Measured:
    """What a measurement gives: the data, its noise level and the reference image.

    Parameters
    ----------
    data : AcquisitionData
        :math:`y`, on the reconstruction's acquisition geometry.
    sigma : float
        the root mean noise variance per datum (for the discrepancy principle).
    truth : ImageData
        the reference on the reconstruction's image geometry.
    weights : AcquisitionData or None
        the Poisson weights :math:`w_i = \\max(N_i, \\varepsilon) / \\mathrm{mean}_j
        \\max(N_j, \\varepsilon)` of the counts (mean 1: :func:`.weights.poisson_weights`), or
        None when there are no counts (Gaussian measurement).
    weighted_sigma : float or None
        :math:`\\sigma_W`, the noise standard deviation of a datum of weight 1
        (:math:`w_i \\mathrm{Var}\\, y_i \\approx \\sigma_W^2`,
        :func:`.weights.weighted_noise_level`), None without counts.
    """
    data: object
    sigma: float
    truth: object
    weights: object = None
    weighted_sigma: float = None

    def data_term(self, kind="ls"):
        """The weights and noise level of the data term ``kind``: ``"ls"`` (None,
        ``sigma``) or ``"weighted"`` (``weights``, ``weighted_sigma``).

        Returns
        -------
        (AcquisitionData or None, float)

        Raises
        ------
        ValueError
            for an unknown ``kind``, or ``"weighted"`` without counts.
        """
        if kind not in DATA_TERMS:
            raise ValueError(f"the data term must be one of {DATA_TERMS}, got {kind!r}")
        if kind == "ls":
            return None, self.sigma
        if self.weights is None:
            raise ValueError("the weighted data term needs photon counts: use the scanner "
                             "measurement (--physics scanner); Gaussian data have equal "
                             "variances, for which 'ls' is the weighted term")
        return self.weights, self.weighted_sigma


class GaussianMeasurement:
    r"""The inverse crime: :math:`y = A x + \sigma \varepsilon`, :math:`\sigma = \ell \max Ax`,
    the truth on the reconstruction's own grid (ASTRA's CIL-default ``line`` kernel, as in
    every table measured before realistic physics).

    Parameters
    ----------
    level : float
        :math:`\ell`, the noise's σ as a fraction of the noise-free sinogram's maximum.
    """
    name = "gaussian"
    #: the ASTRA CPU kernel of the reconstruction's projector
    kernel = "line"

    def __init__(self, level=0.05):
        if not np.isfinite(level) or level < 0:
            raise ValueError(f"the Gaussian noise level must be finite and >= 0, got {level!r}")
        self.level = float(level)

    def native_size(self, size):
        """The truth's side for a reconstruction of side ``size``: the same (the inverse crime)."""
        return int(size)

    def describe(self):
        """A few words for tables and figures."""
        return f"{100 * self.level:g}% Gaussian noise (inverse crime)"

    def measure(self, image, A, rng=None):
        """The data of ``image`` (an array of ``A``'s domain shape) under ``A``.

        Returns
        -------
        Measured
        """
        from .forward import add_noise
        truth = A.domain_geometry().allocate(None)
        image = np.asarray(image, dtype=np.float32)
        if image.shape != truth.shape:
            raise ValueError(f"an image of shape {image.shape} does not fit the reconstruction's "
                             f"geometry {truth.shape}: the inverse crime needs them equal")
        truth.fill(image)
        y, sigma = add_noise(A.direct(truth), self.level, rng)
        return Measured(y, sigma, truth)


class ScannerMeasurement:
    r"""A CT scan of a native-resolution truth (:func:`.scanner.scan`), Poisson counts at dose
    :math:`I_0`, reconstructed on :math:`A`'s coarser grid.

    Parameters
    ----------
    I0 : float
        photons per detector bin (1e4 normal dose, 2e3 low dose).
    native : int
        the truth's side :math:`N` (512: the 0.703 mm pixels over the 360 mm field of view of
        :func:`cil_genreg.datasets.patient_slices`); a multiple of the reconstruction's side.
        The attenuation is scaled with ``pixel_mm`` (ScannerSettings' 0.7 mm by default: the
        published tables used it, 0.45 % off the datasets' 0.703 mm; pass
        ``pixel_mm=datasets.patients.PIXEL_MM`` for the exact one).
    **settings
        further :class:`~.scanner.ScannerSettings` (``mu_water``, ``pixel_mm``, ``upsample``,
        ``zero_counts``, ``poisson``).
    """
    name = "scanner"
    #: the reconstruction's ASTRA CPU kernel: Joseph's, which agrees with scanner data at 0° and
    #: 90° where CIL's default ``line`` kernel does not (:func:`.forward.make_projector`)
    kernel = "linear"

    def __init__(self, I0=NORMAL_DOSE, native=512, **settings):
        self.settings = ScannerSettings(I0=I0, **settings)
        if isinstance(native, bool) or int(native) != native or native < 1:
            raise ValueError(f"native must be the truth's side in pixels (>= 1), got {native!r}")
        self.native = int(native)

    def native_size(self, size):
        """The truth's side for a reconstruction of side ``size`` (a divisor of it)."""
        if self.native % int(size):
            raise ValueError(f"a reconstruction of {size}² does not divide the native "
                             f"{self.native}² truth: choose a size that divides {self.native}")
        return self.native

    def describe(self):
        """A few words for tables and figures."""
        return f"Poisson counts, I0 = {self.settings.I0:.0e} per bin (scanner, {self.native}² truth)"

    def measure(self, image, A, rng=None):
        """The scan of the native ``image`` for the reconstruction projector ``A``.

        Returns
        -------
        Measured
            ``sigma`` estimated from the counts: :math:`\\sqrt{\\mathrm{mean}_i\\, 1 /
            (\\max(N_i, \\varepsilon)\\, s^2)}`; ``weights`` and ``weighted_sigma`` of the
            weighted data term from the same counts (:mod:`.weights`).
        """
        size = A.domain_geometry().voxel_num_x
        s = scan(image, A.range_geometry(), size, self.settings, rng)
        counts = np.maximum(s.counts.as_array().astype(np.float64), self.settings.zero_counts)
        sigma = float(np.sqrt(np.mean(1.0 / counts)) / s.scale)
        truth = A.domain_geometry().allocate(None)
        truth.fill(s.truth.as_array())
        eps = self.settings.zero_counts
        return Measured(s.data, sigma, truth, weights=poisson_weights(s.counts, eps),
                        weighted_sigma=weighted_noise_level(s.counts, s.scale, eps))


def measurement(physics="scanner", noise=0.02, dose=NORMAL_DOSE, native=512):
    """The measurement a command line names: ``"scanner"`` (dose ``dose``, native side
    ``native``) or ``"gaussian"`` (level ``noise``, the inverse crime)."""
    if physics == "scanner":
        return ScannerMeasurement(I0=dose, native=native)
    if physics == "gaussian":
        return GaussianMeasurement(noise)
    raise ValueError(f"physics must be 'scanner' or 'gaussian', got {physics!r}")


def for_images(images, measurement=None, noise=0.02, size=None, made="a"):
    r"""The measurement of truths ``images`` and the side they are reconstructed at.

    Parameters
    ----------
    images : array (..., n, n)
        the truths, at the measurement's native side for ``size``.
    measurement : GaussianMeasurement or ScannerMeasurement, optional
        default ``GaussianMeasurement(noise)`` (the reconstruction grid: ``n`` = ``size``).
    noise : float
    size : int, optional
        the reconstruction's side (default ``n``).
    made : str
        what is made at ``size``, for the message (e.g. "a" reconstruction, "training pairs").

    Returns
    -------
    (measurement, int)

    Raises
    ------
    ValueError
        when ``n`` is not ``measurement.native_size(size)``.
    """
    measurement = measurement or GaussianMeasurement(noise)
    side = int(np.shape(images)[-1])
    size = int(size or side)
    if measurement.native_size(size) != side:
        raise ValueError(f"{measurement.describe()} needs images of side "
                         f"{measurement.native_size(size)} for {made} {size}², got {side}")
    return measurement, size
