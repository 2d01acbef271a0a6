r"""A CT scanner simulation without the inverse crime, after LoDoPaB-CT (Leuschner et al.,
*Sci. Data* 8, 109, 2021): the truth is projected at its native resolution onto a finer
detector, turned into Poisson photon counts by the Beer–Lambert law, and only then brought
back to line integrals on the reconstruction's (coarser) grid.

Units. The package's images are HU windowed linearly with the wide window (-1000, 1000) HU,
:math:`x = (\mathrm{HU} + 1000) / 2000 \in [0, 1]`, so the linear attenuation is

.. math:: \mu = \mu_w (1 + \mathrm{HU}/1000) = 2 \mu_w x \qquad (\mu_w = 0.019\ \mathrm{mm}^{-1}).

The scan, for a native :math:`N \times N` truth of pixel :math:`h` mm and a reconstruction of
:math:`n \times n` unit pixels (each :math:`c = h N / n` mm), on a detector of ``panel`` bins of
width :math:`c` mm, each split into :math:`u` (``upsample``) sub-bins:

1. line integrals :math:`p_{ik} = \int_{L_{ik}} \mu \, dl` (dimensionless: mm⁻¹ × mm) of the
   sub-rays :math:`k = 1..u` of bin :math:`i`, ASTRA's CPU projector on the native grid;
2. the bin's mean transmission :math:`T_i = \frac1u \sum_k e^{-p_{ik}}` (a detector integrates
   photons: the mean of :math:`e^{-p}`, not :math:`e^{-\text{mean}\,p}`, the nonlinear
   partial-volume effect);
3. counts :math:`N_i \sim \mathrm{Poisson}(I_0 T_i)` (:math:`I_0 = 10^4` per bin: LoDoPaB's
   normal dose; :math:`2 \cdot 10^3`: low dose);
4. :math:`\hat p_i = -\log(\max(N_i, \varepsilon) / I_0)` by CIL's
   :class:`~cil.processors.TransmissionAbsorptionConverter`, a zero count replaced by
   :math:`\varepsilon = 0.1` photon (LoDoPaB's choice: finite data, :math:`\hat p \le
   \log(10 I_0)`);
5. the data in image units on the reconstruction grid, :math:`y_i = \hat p_i / (2 \mu_w c)`,
   so that :math:`y \approx A \bar x` where :math:`A` is CIL's projector on the
   :math:`n \times n` unit-pixel grid and :math:`\bar x` the truth's block mean (area average)
   on that grid. The gap :math:`y - A\bar x` holds the discretisation, the partial-volume
   effect and the noise: no inverse crime.

By the delta method :math:`\mathrm{Var}\,\hat p_i \approx 1 / (I_0 T_i)`.

Example: a CT comparison on LoDoPaB-like data (a 512² truth at 0.7 mm, reconstructed at 128²)::

    scan = simulate_scan(truth512, angles=30, size=128, settings=ScannerSettings(I0=LOW_DOSE), rng=0)
    y, truth128, A = scan.data, scan.truth, scan.projector()
    # ... reconstruct from (A, y), score against truth128 (PSNR, SSIM)
"""
import math
import warnings
from dataclasses import dataclass

import numpy as np

#: photons per detector bin of LoDoPaB-CT's normal-dose data
NORMAL_DOSE = 1e4
#: photons per detector bin of a low-dose scan (a fifth of the normal dose)
LOW_DOSE = 2e3
#: the count a zero count is replaced by before the logarithm, and the floor of the weights
ZERO_COUNTS = 0.1


@dataclass(frozen=True)
class ScannerSettings:
    r"""The physics of a simulated scan (validated on construction).

    Parameters
    ----------
    I0 : float
        mean photons per reconstruction detector bin with nothing in the beam, :math:`I_0 > 0`
        (:data:`NORMAL_DOSE` 1e4, :data:`LOW_DOSE` 2e3).
    mu_water : float
        linear attenuation of water, mm⁻¹ (0.019: about 60 keV); :math:`\mu = 2 \mu_w x`.
    pixel_mm : float
        the native truth's pixel size in mm (0.7: LoDoPaB's 512² over 358 mm).
    upsample : int
        sub-bins per reconstruction detector bin in the simulation (4).
    zero_counts : float
        the count a zero count is replaced by before the logarithm (0.1 photon, as LoDoPaB).
    poisson : bool
        draw Poisson counts (True), or keep the expected counts :math:`I_0 T` (noise-free).
    """
    I0: float = NORMAL_DOSE
    mu_water: float = 0.019
    pixel_mm: float = 0.7
    upsample: int = 4
    zero_counts: float = ZERO_COUNTS
    poisson: bool = True

    def __post_init__(self):
        for name in ("I0", "mu_water", "pixel_mm", "zero_counts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) \
                    or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if isinstance(self.upsample, bool) or not isinstance(self.upsample, (int, np.integer)) \
                or self.upsample < 1:
            raise ValueError(f"upsample must be an integer >= 1, got {self.upsample!r}")


@dataclass
class Scan:
    r"""A simulated scan: the data, the reference truth, and what made them.

    Parameters
    ----------
    data : AcquisitionData
        :math:`y = \hat p / (2 \mu_w c)`, on the reconstruction's geometry (image units).
    truth : ImageData
        the truth's block mean on the reconstruction's :math:`n \times n` grid, in [0, 1].
    counts : AcquisitionData
        the photon counts :math:`N_i` per reconstruction bin (before the zero-count fix).
    transmission : AcquisitionData
        the expected transmission :math:`T_i = \frac1u \sum_k e^{-p_{ik}}` (noise-free).
    settings : ScannerSettings
        the physics used.
    scale : float
        :math:`2 \mu_w c`: line integrals per image unit, :math:`\hat p = \text{scale} \cdot y`.
    """
    data: object
    truth: object
    counts: object
    transmission: object
    settings: ScannerSettings
    scale: float

    def projector(self):
        """The reconstruction's projector :math:`A` (CIL's ASTRA CPU ``ProjectionOperator``)
        from the truth's geometry to the data's, for which :math:`y \\approx A \\bar x`.

        At exactly 0° and 90° its rays run along pixel boundaries (even :math:`n`, odd panel)
        and ASTRA's CPU 'line' kernel mis-weighs them (a 128² disc: 1 % of the mass off at 90°),
        a gap to the simulated data that is the projector's, not the scanner's.

        Returns
        -------
        Operator
            ``ProjectionOperator(truth.geometry, data.geometry, device='cpu')``.
        """
        from cil.plugins.astra import ProjectionOperator
        return ProjectionOperator(self.truth.geometry, self.data.geometry, device="cpu")


def check_truth(truth, size):
    """The truth as a float64 array, refused unless 2D, square, finite, non-negative and of a
    side that is a multiple of ``size``; values above 1 (denser than +1000 HU: bone beyond the
    window, metal) are physical, so they only warn: the reference in [0, 1] units cannot match.

    Parameters
    ----------
    truth : array_like or ImageData
        the native truth, :math:`N \\times N`, in the package's [0, 1] units.
    size : int
        the reconstruction's side :math:`n`.

    Returns
    -------
    numpy.ndarray
        the truth, float64.
    """
    x = np.asarray(truth.as_array() if hasattr(truth, "as_array") else truth, dtype=float)
    if isinstance(size, bool) or int(size) != size or size < 1:
        raise ValueError(f"size must be an integer >= 1, got {size!r}")
    if x.ndim != 2 or x.shape[0] != x.shape[1]:
        raise ValueError(f"the truth must be a square 2D image (N, N), got shape {x.shape}")
    if x.shape[0] % int(size):
        works = [k for k in range(1, x.shape[0] + 1) if x.shape[0] % k == 0]
        raise ValueError(f"the truth's side {x.shape[0]} is not a multiple of the reconstruction "
                         f"size {size}: use a size dividing {x.shape[0]} ({works}), or a truth "
                         f"of side k*{size}")
    if not np.all(np.isfinite(x)):
        raise ValueError("the truth has non-finite values")
    if x.min() < 0:
        raise ValueError(f"the truth has values below 0 (min {x.min():.3g}): a negative "
                         "attenuation is unphysical; images are in [0, 1] (-1000..1000 HU)")
    if x.max() > 1:
        warnings.warn(f"the truth has values above 1 (max {x.max():.3g}, > +1000 HU): simulated "
                      "as they are, but the reference is not in the package's [0, 1] units",
                      stacklevel=3)
    return x


def counts_to_line_integrals(counts, I0, zero_counts=ZERO_COUNTS):
    r"""Photon counts to line integrals by CIL's
    :class:`~cil.processors.TransmissionAbsorptionConverter`:
    :math:`\hat p = -\log(\max(N, \varepsilon) / I_0)`.

    Parameters
    ----------
    counts : AcquisitionData
        photon counts :math:`N \ge 0` (finite).
    I0 : float
        the flat-field count :math:`I_0 > 0` (the converter's ``white_level``).
    zero_counts : float
        :math:`\varepsilon > 0`, what a zero count becomes (the converter's ``min_intensity``
        is :math:`\varepsilon / I_0`, since it clips after dividing by ``white_level``).

    Returns
    -------
    AcquisitionData
        :math:`\hat p`, finite, at most :math:`\log(I_0 / \varepsilon)`.
    """
    from cil.processors import TransmissionAbsorptionConverter
    ScannerSettings(I0=I0, zero_counts=zero_counts)  # the same refusals
    values = counts.as_array()
    if not np.all(np.isfinite(values)):
        raise ValueError("the count sinogram has non-finite values: counts are finite photons")
    if values.min() < 0:
        raise ValueError(f"the count sinogram has negative values (min {values.min():.3g}): "
                         "photon counts are >= 0 (pass raw counts, not line integrals or "
                         "offset-corrected data)")
    converter = TransmissionAbsorptionConverter(white_level=float(I0),
                                                min_intensity=float(zero_counts) / float(I0),
                                                accelerated=False)
    converter.set_input(counts)
    return converter.get_output()


def sub_ray_line_integrals(truth, ag, size, settings=None):
    r"""The line integrals :math:`p_{ik} = \int_{L_{ik}} \mu\,dl` of the ``upsample`` sub-rays
    of each reconstruction bin, projected on the truth's native grid in mm (ASTRA, CPU).

    Parameters
    ----------
    truth : numpy.ndarray
        the native :math:`N \times N` truth in [0, 1] units (:math:`\mu = 2 \mu_w x`).
    ag : AcquisitionGeometry
        the reconstruction's 2D parallel-beam geometry (:func:`~cil_genreg.physics.forward.make_geometry`), in units of
        its pixel, :math:`c = h N / n` mm.
    size : int
        the reconstruction's side :math:`n`.
    settings : ScannerSettings, optional
        ``mu_water``, ``pixel_mm`` :math:`h` and ``upsample`` :math:`u`.

    Returns
    -------
    numpy.ndarray
        :math:`p`, float64, shape (angles, bins, u): sub-ray :math:`k` of bin :math:`i`.
    """
    from cil.framework import AcquisitionGeometry, ImageGeometry
    from cil.plugins.astra import ProjectionOperator
    settings = settings or ScannerSettings()
    x = np.asarray(truth, dtype=float)
    N, u, h = x.shape[0], int(settings.upsample), float(settings.pixel_mm)
    bins = int(ag.config.panel.num_pixels[0])
    coarse_mm = h * N / int(size) * float(ag.config.panel.pixel_size[0])  # unit bins: c mm
    ig_fine = ImageGeometry(voxel_num_x=N, voxel_num_y=N, voxel_size_x=h, voxel_size_y=h)
    ag_fine = AcquisitionGeometry.create_Parallel2D().set_angles(ag.angles) \
        .set_panel(bins * u, pixel_size=coarse_mm / u)
    mu = ig_fine.allocate(None)
    mu.fill((2 * settings.mu_water * x).astype(np.float32))
    p = ProjectionOperator(ig_fine, ag_fine, device="cpu").direct(mu).as_array()
    return p.astype(float).reshape(len(ag.angles), bins, u)


def scan(truth, ag, size, settings=None, rng=None):
    r"""Simulate the scan of a native-resolution truth for the reconstruction geometry ``ag``
    (an :math:`n \times n` image of unit pixels, a 2D parallel beam): the module's maths.

    Parameters
    ----------
    truth : array_like or ImageData
        the :math:`N \times N` truth in [0, 1] units at ``settings.pixel_mm`` mm a pixel;
        :math:`N` a multiple of ``size``.
    ag : AcquisitionGeometry
        the reconstruction's 2D parallel-beam geometry, in units of its pixel
        (:func:`cil_genreg.physics.forward.make_geometry`).
    size : int
        the reconstruction's side :math:`n`.
    settings : ScannerSettings, optional
        dose, units and sampling (default :class:`ScannerSettings`\ ()).
    rng : int or numpy.random.Generator, optional
        the seed or generator of the Poisson counts.

    Returns
    -------
    Scan
        the data :math:`y` (on ``ag``), the block-mean truth, the counts, the expected
        transmission, the settings and the scale :math:`2 \mu_w c`.
    """
    from cil.framework import ImageGeometry
    settings = settings or ScannerSettings()
    x = check_truth(truth, size)
    if ag.geom_type != "parallel" or ag.dimension != "2D":
        raise ValueError(f"the scanner simulates a 2D parallel beam, got a {ag.dimension} "
                         f"{ag.geom_type} geometry: use geometry 'parallel' or 'limited'")
    N, n = x.shape[0], int(size)
    t = np.exp(-sub_ray_line_integrals(x, ag, n, settings)).mean(axis=2)
    transmission = ag.allocate(None)
    transmission.fill(t.astype(np.float32))
    counts = ag.allocate(None)
    expected = settings.I0 * t
    if settings.poisson:
        expected = np.random.default_rng(rng).poisson(expected)
    counts.fill(np.asarray(expected, dtype=np.float32))
    scale = 2 * settings.mu_water * settings.pixel_mm * N / n
    data = counts_to_line_integrals(counts, settings.I0, settings.zero_counts)
    data /= scale
    reference = ImageGeometry(voxel_num_x=n, voxel_num_y=n).allocate(None)
    reference.fill(x.reshape(n, N // n, n, N // n).mean(axis=(1, 3)).astype(np.float32))
    return Scan(data=data, truth=reference, counts=counts, transmission=transmission,
                settings=settings, scale=scale)


def simulate_scan(truth, angles, size, geometry="parallel", panel=None, limited_span=90,
                  settings=None, rng=None):
    r"""Simulate a parallel-beam CT scan of a native-resolution truth on the geometry of
    :func:`cil_genreg.physics.forward.make_geometry` (:func:`scan` does the work).

    Parameters
    ----------
    truth : array_like or ImageData
        the :math:`N \times N` truth in [0, 1] units at ``settings.pixel_mm`` mm a pixel.
    angles : int or array_like
        the number of angles (over 180°, or ``limited_span`` for ``limited``), or the angles
        themselves in degrees.
    size : int
        the reconstruction's side :math:`n`.
    geometry : str
        ``'parallel'`` or ``'limited'``.
    panel : int, optional
        the reconstruction's detector bins (default the smallest odd :math:`\ge \sqrt2 n`).
    limited_span : float
        the angular range of ``limited``, degrees.
    settings : ScannerSettings, optional
    rng : int or numpy.random.Generator, optional

    Returns
    -------
    Scan

    Examples
    --------
    A LoDoPaB-like low-dose scan of a 512² truth at 0.7 mm, reconstructed at 128²:

    >>> low = ScannerSettings(I0=LOW_DOSE)
    >>> scan_ = simulate_scan(truth512, 30, 128, settings=low, rng=0)  # doctest: +SKIP
    >>> y, truth128, A = scan_.data, scan_.truth, scan_.projector()  # doctest: +SKIP
    """
    from .forward import make_geometry
    if geometry not in ("parallel", "limited"):
        raise ValueError(f"geometry must be 'parallel' or 'limited' (a parallel-beam scanner), "
                         f"got {geometry!r}")
    degrees = None if np.ndim(angles) == 0 else np.asarray(angles, dtype=float).ravel()
    if degrees is not None and (degrees.size == 0 or not np.all(np.isfinite(degrees))):
        raise ValueError("angles must be a count >= 1 or a non-empty array of finite degrees")
    count = angles if degrees is None else degrees.size
    if isinstance(count, bool) or int(count) != count or count < 1:
        raise ValueError(f"angles must be a count >= 1 or an array of degrees, got {angles!r}")
    _, ag = make_geometry(int(size), int(count), geometry, panel=panel,
                          limited_span=limited_span)
    if degrees is not None:
        ag.set_angles(degrees)
    return scan(truth, ag, size, settings, rng)
