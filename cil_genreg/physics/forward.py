r"""The forward problem of a tomography experiment: geometries (parallel, limited-angle and fan
beam; 3D parallel-beam volumes), the CIL projector of a backend (ASTRA or TIGRE) on a device,
Gaussian noise on the data, and the initial reconstruction (FBP, or CGLS where the backend has
no FBP for the geometry).
"""
from ..utilities._cil import require_cil

require_cil()
import math

import numpy as np

from ..operators import SliceWiseOperator
from ..utilities.validation import DeviceUnavailableError, check_angles
from ..utilities.defaults import GEOMETRIES



def make_geometry(size, angles, geometry="parallel", panel=None, slices=None, limited_span=90):
    """ImageGeometry and AcquisitionGeometry of a 2D sparse-angle problem (or, with ``slices``,
    of a 3D parallel-beam volume of ``slices`` such problems stacked vertically).

    Parameters
    ----------
    size : int
        image side (pixels of size 1).
    angles : int
        number of projection angles: over 180° (``parallel``), over 90° (``limited``, a
        limited-angle problem), or over 360° (``fan``: fan beam, source 4 image widths from the
        centre, detector 2 widths on the other side).
    panel : int, optional
        detector pixels; default the smallest odd number :math:`\\ge \\sqrt{2}\\,n` (the
        image's diagonal, with a central pixel: 41 for 28×28, 91 for 64×64), magnified for
        the fan beam.
    limited_span : float
        the angular range of ``limited``, in degrees (default 90).
    slices : int, optional
        a 3D volume (slices, size, size) under a 3D parallel beam (``parallel`` or ``limited``
        only: a stack of fan beams is not a cone beam); the data are (vertical, angle,
        horizontal), ASTRA's order.
    """
    from cil.framework import AcquisitionGeometry, ImageGeometry
    if geometry not in GEOMETRIES:
        raise ValueError(f"geometry must be one of {GEOMETRIES}, got {geometry!r}")
    panel = int(panel or (math.ceil(math.sqrt(2) * size) | 1))
    if slices is not None:
        if geometry == "fan":
            raise ValueError("a volume takes geometry 'parallel' or 'limited' (a stack of fan "
                             "beams is not a cone beam).")
        ig = ImageGeometry(voxel_num_x=size, voxel_num_y=size, voxel_num_z=int(slices))
        span = 180 if geometry == "parallel" else limited_span
        ag = AcquisitionGeometry.create_Parallel3D().set_angles(
            np.linspace(0, span, angles, endpoint=False)).set_panel([panel, int(slices)])
        ag.set_labels(["vertical", "angle", "horizontal"])
        return ig, ag
    ig = ImageGeometry(voxel_num_x=size, voxel_num_y=size)
    if geometry == "fan":
        source, detector = 4.0 * size, 2.0 * size
        magnification = (source + detector) / source
        ag = AcquisitionGeometry.create_Cone2D(source_position=[0, -source],
                                               detector_position=[0, detector])
        ag.set_angles(np.linspace(0, 360, angles, endpoint=False))
        ag.set_panel(int(math.ceil(panel * magnification)))
    else:
        span = 180 if geometry == "parallel" else limited_span
        ag = AcquisitionGeometry.create_Parallel2D().set_angles(
            np.linspace(0, span, angles, endpoint=False)).set_panel(panel)
    return ig, ag


def _plugin(backend):
    """The CIL plugin module of ``backend`` ('astra' or 'tigre'), or a clear error."""
    if backend == "astra":
        import cil.plugins.astra as plugin
        return plugin
    if backend == "tigre":
        try:
            import tigre  # noqa: F401  (cil.plugins.tigre imports without it, then fails later)
            import cil.plugins.tigre as plugin
        except ImportError as err:
            raise DeviceUnavailableError(
                "backend='tigre' needs TIGRE, a conda package that runs on an NVIDIA GPU: "
                "`conda install -c ccpi tigre` on a machine with CUDA, or use backend='astra' "
                "(its 2D projectors run on the CPU).") from err
        return plugin
    raise ValueError(f"backend must be 'astra' or 'tigre', got {backend!r}")


#: ASTRA's 2D CPU parallel-beam projector kernels: CIL's default ``line`` and Joseph's ``linear``
KERNELS = ("line", "linear")


def make_projector(ig, ag, backend="astra", device="cpu", kernel="line"):
    """The CIL projector of the chosen backend (ASTRA: 'cpu' or 'gpu'; TIGRE: GPU only).

    A 3D parallel-beam problem on the CPU (ASTRA's 3D projectors need a GPU) becomes a
    :class:`SliceWiseOperator`: the 2D CPU projector applied slice by slice. The angles are
    checked first (:func:`~cil_genreg.utilities.validation.check_angles`: ASTRA can hang on
    huge ones).

    ``kernel`` chooses ASTRA's 2D CPU parallel-beam kernel: ``"line"`` (CIL's own choice:
    the length of the ray in each pixel) or ``"linear"`` (Joseph's: linear interpolation along
    the ray). With ``"line"`` a ray that runs exactly along a pixel boundary (0° and 90° for an
    even image and an odd panel) is weighed on both sides, so data that were not made by the
    same operator (a real or simulated scanner) disagree with it by up to 8 % at those angles
    and FBP and iterative images show lines; ``"linear"`` halves the disagreement overall and
    removes the lines (:mod:`cil_genreg.physics.measurement` uses it for scanner data). Other
    backends and devices ignore it.
    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    if device not in ("cpu",) and not str(device).startswith(("cuda", "gpu")):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    check_angles(ag.angles, "the acquisition geometry's angles", ag.config.angles.angle_unit)
    plugin = _plugin(backend)
    if backend == "tigre" and device == "cpu":
        raise DeviceUnavailableError("TIGRE runs on an NVIDIA GPU only: pass --device cuda on a machine "
                           "with one, or use --backend astra on the CPU.")
    if len(ig.shape) == 3 and backend == "astra" and device == "cpu":
        return SliceWiseOperator.parallel(ig, ag)
    if backend == "astra" and str(device).startswith(("cuda", "gpu")):
        _check_astra_gpu()
    if backend == "astra":
        A = plugin.ProjectionOperator(ig, ag, device=_astra_device(device))
        if kernel != "line" and _astra_device(device) == "cpu" and ag.geom_type == "parallel":
            _set_astra_kernel(A, kernel)
        return A
    return plugin.ProjectionOperator(ig, ag)


def _set_astra_kernel(A, kernel):
    """Give CIL's 2D ASTRA CPU projector ``A`` (forward and back projection) ASTRA's
    ``kernel`` projector, through the processors' ``set_projector`` (CIL's hook for this)."""
    import astra
    from cil.plugins.astra.utilities import convert_geometry_to_astra_vec_2D
    vol, proj = convert_geometry_to_astra_vec_2D(A.domain_geometry(), A.range_geometry())
    projector = astra.create_projector(kernel, proj, vol)
    A.operator.fp.set_projector(projector)
    A.operator.bp.set_projector(projector)


def _astra_device(device):
    """CIL's ASTRA plugin names the GPU 'gpu' (anything else means its CPU code): 'cuda',
    'cuda:0' and 'gpu' all become 'gpu'."""
    return "gpu" if str(device).startswith(("cuda", "gpu")) else "cpu"


def _check_astra_gpu():
    try:
        import astra
        ok = bool(astra.use_cuda())
    except Exception:  # noqa: BLE001 - any failure means: no usable CUDA in ASTRA
        ok = False
    if not ok:
        raise DeviceUnavailableError("device='cuda' needs ASTRA built with CUDA and an NVIDIA GPU "
                           "(astra.use_cuda() is False here): use --device cpu.")


def add_noise(y, level=0.05, rng=None):
    """``y + level * max(y) * N(0, 1)``; returns the noisy data and the noise's σ."""
    rng = np.random.default_rng(rng)
    sigma = float(level * y.max())
    noisy = y.copy()
    noisy += (sigma * rng.standard_normal(y.shape)).astype(np.float32)
    return noisy, sigma


def initial_reconstruction(A, y, backend="astra", device="cpu"):
    """FBP, where the backend has one for the geometry; else 10 CGLS iterations (ASTRA's CPU
    FBP is parallel-beam only). Returns the image and its label."""
    ig, ag = A.domain_geometry(), A.range_geometry()
    if isinstance(A, SliceWiseOperator) and ag.geom_type == "parallel":
        fbp2 = _plugin("astra").FBP(A.operator.domain_geometry(), A.operator.range_geometry(),
                                    device="cpu")
        x = ig.allocate(0)
        xs, ys = x.as_array(), y.as_array()
        data = A.operator.range_geometry().allocate(None)
        for k in range(A.slices):
            data.fill(np.take(ys, k, axis=A.axis))
            xs[k] = fbp2(data).as_array()
        return x, "FBP"
    if ag.geom_type == "parallel" or device != "cpu" or backend == "tigre":
        options = {"device": _astra_device(device)} if backend == "astra" else {}
        fbp = _plugin(backend).FBP(ig, ag, **options)
        return fbp(y), "FBP"
    from cil.optimisation.algorithms import CGLS
    cgls = CGLS(initial=ig.allocate(0), operator=A, data=y, update_objective_interval=1000)
    cgls.run(10, verbose=0)
    return cgls.solution, "CGLS"


def check_backend(backend, device):
    """Fail early, with what to do, when the projector backend cannot run here."""
    _plugin(backend)
    if backend == "tigre" and device == "cpu":
        raise DeviceUnavailableError("TIGRE runs on an NVIDIA GPU only: pass --device cuda on a machine "
                           "with one, or use --backend astra on the CPU.")
    if device == "cuda":
        import torch
        if not torch.cuda.is_available():
            raise DeviceUnavailableError("--device cuda but torch sees no GPU (torch.cuda.is_available() "
                               "is False): use --device cpu.")
        if backend == "astra":
            _check_astra_gpu()


