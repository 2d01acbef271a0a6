r"""The seed's experiment, reusable: sparse-angle tomography of a set of images by FBP, TV and
the generative regularisers, with PSNR/SSIM tables, λ chosen both ways (discrepancy principle
and best against the ground truth), and a figure laid out like the talk.

Used by ``demos/*.py``, ``cil-genreg demo`` and ``cil-genreg reconstruct``.

Every method solves :math:`\min_x \|Ax - y\|^2 + \lambda R(x)` with CIL's FISTA from the FBP
image (or from :math:`z = 0` for the latent range method):

* ``tv``: :math:`R = \mathrm{TV}` (CIL's ``TotalVariation``);
* ``soft``, ``sparse``, ``range``: the generative regularisers of this package;
* ``latent``: the range method in latent space, :math:`\min_z \|A G(z) - y\|^2 + \lambda\|z\|^2`
  (``LatentLeastSquares``), image :math:`G(z)`.
"""
import csv
import json
import math
import os

import numpy as np

from . import SoftGenerativeRegulariser, RangeGenerativeRegulariser, \
    SparseDeviationGenerativeRegulariser, LatentLeastSquares
from .bridge import as_tensor
from .functions.patch import patch_prior_for
from .parameter_choice import discrepancy_principle

GEOMETRIES = ("parallel", "limited", "fan")
METHODS = ("fbp", "tv", "latent", "range", "soft", "sparse")
#: methods a demo runs when asked (``--methods ... hybrid``): TV + soft in one PDHG
EXTRA_METHODS = ("hybrid",)
ALL_METHODS = METHODS + EXTRA_METHODS
LABELS = {"fbp": "FBP", "tv": "TV", "latent": "range (latent)", "range": "range",
          "soft": "soft", "sparse": "sparse deviations", "hybrid": "TV + soft"}
# λ grids per method (5 values each, as for TV in the reference measurements)
LAMBDAS = {"tv": (0.3, 1.0, 2.0, 4.0, 8.0), "latent": (0.1, 0.3, 1.0, 3.0, 10.0),
           "range": (0.03, 0.1, 0.3, 1.0, 3.0), "soft": (10.0, 30.0, 60.0, 100.0, 200.0),
           "sparse": (1.0, 3.0, 10.0, 30.0, 100.0), "hybrid": (3.0, 10.0, 30.0)}
MU = {"soft": 1e-3, "sparse": 1e-2, "hybrid": 1e-3}
#: the hybrid's TV weight, as a fraction of the λ the discrepancy principle chose for TV alone
#: on the same data (its λ grid is that of the generative part)
HYBRID_TV_FRACTION = 0.5
#: how the figures name each forward problem
GEOMETRY_TITLES = {"parallel": "parallel beam (180°)", "limited": "limited angle (90°)",
                   "fan": "fan beam (360°)"}
CHOICES = ("initial", "discrepancy", "fixed", "best")
STARTS = ("fbp", "tv")


# -- the forward problem ---------------------------------------------------------------------
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
        the angular range of ``limited`` in degrees.
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
    if backend == "astra":
        import cil.plugins.astra as plugin
        return plugin
    if backend == "tigre":
        try:
            import tigre  # noqa: F401  (cil.plugins.tigre imports without it, then fails later)
            import cil.plugins.tigre as plugin
        except ImportError as err:
            raise RuntimeError(
                "backend='tigre' needs TIGRE, a conda package that runs on an NVIDIA GPU: "
                "`conda install -c ccpi tigre` on a machine with CUDA, or use backend='astra' "
                "(its 2D projectors run on the CPU).") from err
        return plugin
    raise ValueError(f"backend must be 'astra' or 'tigre', got {backend!r}")


def make_projector(ig, ag, backend="astra", device="cpu"):
    """The CIL projector of the chosen backend (ASTRA: 'cpu' or 'gpu'; TIGRE: GPU only).

    A 3D parallel-beam problem on the CPU (ASTRA's 3D projectors need a GPU) becomes a
    :class:`SliceWiseOperator`: the 2D CPU projector applied slice by slice."""
    if device not in ("cpu",) and not str(device).startswith(("cuda", "gpu")):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    plugin = _plugin(backend)
    if backend == "tigre" and device == "cpu":
        raise RuntimeError("TIGRE runs on an NVIDIA GPU only: pass --device cuda on a machine "
                           "with one, or use --backend astra on the CPU.")
    if len(ig.shape) == 3 and backend == "astra" and device == "cpu":
        return SliceWiseOperator.parallel(ig, ag)
    if backend == "astra" and str(device).startswith(("cuda", "gpu")):
        _check_astra_gpu()
    if backend == "astra":
        return plugin.ProjectionOperator(ig, ag, device=_astra_device(device))
    return plugin.ProjectionOperator(ig, ag)


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
        raise RuntimeError("device='cuda' needs ASTRA built with CUDA and an NVIDIA GPU "
                           "(astra.use_cuda() is False here): use --device cpu.")


class SliceWiseOperator:
    """Placeholder replaced below (needs CIL's LinearOperator at import time)."""


def _slice_wise_operator_class():
    from cil.optimisation.operators import LinearOperator

    class SliceWiseOperator(LinearOperator):
        r"""A 3D problem as independent 2D problems: a 2D linear operator applied to every
        slice of a volume (e.g. the ASTRA 2D CPU projector on each slice of a 3D parallel-beam
        volume). Domain: (slices, H, W); range: the 2D range with a ``vertical`` axis added
        (at the position it has in ``range_geometry``).

        Parameters
        ----------
        operator : LinearOperator
            the 2D operator, domain (H, W).
        domain_geometry : ImageGeometry of shape (slices, H, W)
        range_geometry : AcquisitionGeometry (or any geometry) with a ``vertical`` axis of
            length slices, the other axes those of the 2D range.
        """

        def __init__(self, operator, domain_geometry, range_geometry):
            super().__init__(domain_geometry=domain_geometry, range_geometry=range_geometry)
            self.operator = operator
            labels = [str(getattr(lab, "value", lab)) for lab in range_geometry.dimension_labels]
            self.axis = labels.index("vertical")
            self.slices = int(domain_geometry.shape[0])
            if range_geometry.shape[self.axis] != self.slices:
                raise ValueError(f"the volume has {self.slices} slices but the data have "
                                 f"{range_geometry.shape[self.axis]} vertical rows.")
            self._x = operator.domain_geometry().allocate(0)
            self._y = operator.range_geometry().allocate(0)

        @classmethod
        def parallel(cls, ig, ag):
            """For a 3D parallel-beam ``ag`` and volume ``ig``: the ASTRA 2D CPU projector of
            one slice, applied to each."""
            from cil.plugins.astra import ProjectionOperator
            ig2 = ig.get_slice(vertical=0)
            ag2 = ag.get_slice(vertical=0)
            return cls(ProjectionOperator(ig2, ag2, device="cpu"), ig, ag)

        def _loop(self, x, out, forward):
            src, dst = (self._x, self._y) if forward else (self._y, self._x)
            geometry = self.range_geometry() if forward else self.domain_geometry()
            ret = out if out is not None else geometry.allocate(None)
            xs, rs = x.as_array(), ret.as_array()
            apply = self.operator.direct if forward else self.operator.adjoint
            for k in range(self.slices):
                src.fill(np.take(xs, k, axis=0 if forward else self.axis))
                apply(src, out=dst)
                index = [slice(None)] * rs.ndim
                index[self.axis if forward else 0] = k
                rs[tuple(index)] = dst.as_array()
            return ret

        def direct(self, x, out=None):
            return self._loop(x, out, True)

        def adjoint(self, x, out=None):
            return self._loop(x, out, False)

        def calculate_norm(self):
            # block diagonal with equal blocks: the norm of one block
            return self.operator.norm()

    return SliceWiseOperator


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


# -- quality -------------------------------------------------------------------------------
def psnr(x, truth, data_range=1.0):
    """:math:`10 \\log_{10}(r^2 / \\text{MSE})`."""
    x, truth = _arr(x), _arr(truth)
    return float(10 * np.log10(data_range ** 2 / max(np.mean((x - truth) ** 2), 1e-30)))


def ssim(x, truth, data_range=1.0, sigma=1.5):
    """Structural similarity (Wang et al. 2004) with a Gaussian window of width σ = 1.5
    (truncated at 3.5σ: 11 taps); of a volume (slices, H, W), the mean of its slices'."""
    from scipy.ndimage import gaussian_filter
    x, truth = _arr(x).astype(np.float64), _arr(truth).astype(np.float64)
    if truth.ndim == 3:
        return float(np.mean([ssim(a, b, data_range, sigma) for a, b in zip(x, truth)]))
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    blur = lambda a: gaussian_filter(a, sigma, truncate=3.5)  # noqa: E731
    mx, my = blur(x), blur(truth)
    vx, vy, cxy = blur(x * x) - mx ** 2, blur(truth * truth) - my ** 2, blur(x * truth) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return float(s.mean())


def _arr(x):
    return np.asarray(x.as_array() if hasattr(x, "as_array") else x)


# -- the methods ----------------------------------------------------------------------------
def reconstruct(method, A, y, lam, generator=None, x0=None, iterations=100, mu=None,
                callbacks=None, tv_per_slice=False, lam_tv=None, **solver_options):
    """One reconstruction by ``method`` (see :data:`METHODS`) with weight ``lam``.

    Parameters
    ----------
    method : str
        "tv", "soft", "sparse", "range" (the regulariser, under FISTA) or "latent"
        (``LatentLeastSquares`` + :math:`\\lambda\\|z\\|^2` under FISTA).
    A, y : the projector and the data.
    lam : float
    generator : torch.nn.Module, for the generative methods.
    x0 : DataContainer, the start (default: zeros).
    iterations : int, FISTA iterations.
    mu : float, the latent weight of soft / sparse (default :data:`MU`).
    callbacks : list, CIL callbacks (e.g. a progress bar).
    tv_per_slice : bool, for a volume: 2D TV of each slice instead of 3D TV.
    lam_tv : float, the TV weight of "hybrid" (``lam`` is its generative weight).

    A generator of images smaller than the reconstruction (a patch model) regularises it
    through the tiles of a :class:`~cil_genreg.PatchGenerativeRegulariser` (soft, sparse,
    range, hybrid).
    """
    from cil.optimisation.algorithms import FISTA
    from cil.optimisation.functions import L2NormSquared, LeastSquares, TotalVariation
    if method not in ALL_METHODS or method == "fbp":
        raise ValueError(f"method must be one of {ALL_METHODS[1:]}, got {method!r}")
    if method != "tv" and generator is None:
        raise ValueError(f"method {method!r} needs a generator")
    ig = A.domain_geometry()
    if method == "hybrid":
        from .hybrid import hybrid_reconstruction
        return hybrid_reconstruction(A, y, lam_tv, lam, generator, x0=x0, iterations=iterations,
                                     mu=MU["hybrid"] if mu is None else mu, callbacks=callbacks,
                                     **solver_options)
    if method == "latent":
        f = LatentLeastSquares(A, generator, y, **solver_options)
        algo = FISTA(initial=_encoded(generator, x0, f), f=f, g=lam * L2NormSquared(),
                     update_objective_interval=iterations)
        algo.run(iterations, verbose=0, callbacks=callbacks)
        return f.image(algo.solution)
    if method == "tv":
        g = TotalVariation(max_iteration=10, warm_start=True)
        if tv_per_slice and len(ig.shape) == 3:
            g = SliceWiseFunction(lambda: TotalVariation(max_iteration=10, warm_start=True),
                                  ig.shape[0])
    elif method == "soft":
        g = SoftGenerativeRegulariser(generator, mu=MU["soft"] if mu is None else mu,
                                      **solver_options)
    elif method == "sparse":
        g = SparseDeviationGenerativeRegulariser(generator, mu=MU["sparse"] if mu is None else mu,
                                                 **solver_options)
    else:
        g = RangeGenerativeRegulariser(generator, **solver_options)
    if method != "tv":
        g = patch_prior_for(g, ig)
    algo = FISTA(initial=x0 if x0 is not None else ig.allocate(0), f=LeastSquares(A, y),
                 g=lam * g, update_objective_interval=iterations)
    algo.run(iterations, verbose=0, callbacks=callbacks)
    return algo.solution


def _encoded(generator, x0, f):
    """The start of the latent method: the encoder's mean of the initial image when the
    generator has an encoder (a VAE / AE), else z = 0 (the prior's mean)."""
    import torch
    z = f.latent_geometry.allocate(0)
    encode = getattr(generator, "encode", None)
    if x0 is None or encode is None:
        return z
    spec = f.generator_operator.spec
    with torch.no_grad():
        image = as_tensor(x0, device=spec.device)
        code = encode(image.reshape(-1, 1, *spec.image_shape))
    code = code[0] if isinstance(code, (tuple, list)) else code
    z.fill(code.reshape(-1).cpu().numpy())
    return z


def compare(images, generator, angles=10, geometry="parallel", noise=0.05, methods=METHODS,
            lambdas=None, iterations=100, backend="astra", device="cpu", seed=0,
            progress=True, mu=None, tv_per_slice=False, start_from="tv", limited_span=90):
    """Reconstruct each image by each method over its λ grid; keep, per method, the λ of the
    discrepancy principle and the best λ against the ground truth.

    ``images`` is a stack (N, H, W) of 2D problems, or (N, slices, H, W) of 3D parallel-beam
    volumes (each regularised slice by slice through the generator, in one batch). ``mu``
    overrides :data:`MU` per method (e.g. ``{"soft": 1e-2}``). ``start_from``: the start of
    the generative methods, "tv" (default: the TV image at the λ the discrepancy principle
    chose, no ground truth used; TV at the middle of its grid when "tv" is not among the
    methods; its encoding for the latent method) or "fbp" (the initial reconstruction). Measured
    on 10 held-out digits: the same PSNR within 0.25 dB in parallel beam, and where FBP is poor
    (limited angle) the FBP start sends the latent method into the wrong basin (13.1 dB, below
    TV's 15.1) while the TV start gets 18.3 dB.

    Returns
    -------
    dict with ``rows`` (one per image × method × choice: image, angles, geometry, method,
    choice ("discrepancy" or "best"), lam, psnr, ssim), ``summary`` (mean PSNR/SSIM per method
    and choice) and ``examples`` (the first image's truth, data and reconstructions, for the
    figure).
    """
    from tqdm.auto import tqdm
    lambdas = dict(LAMBDAS, **(lambdas or {}))
    if start_from not in STARTS:
        raise ValueError(f"start_from must be one of {STARTS}, got {start_from!r}")
    order = {m: i for i, m in enumerate(ALL_METHODS)}
    methods = sorted(methods, key=lambda m: order.get(m, 99))  # fbp, tv first
    rng = np.random.default_rng(seed)
    images = np.asarray(images)
    size = images.shape[-1]
    ig, ag = make_geometry(size, angles, geometry,
                           slices=images.shape[1] if images.ndim == 4 else None,
                           limited_span=limited_span)
    A = make_projector(ig, ag, backend, device)
    gen_opts = {} if device == "cpu" else {"device": device}
    mu = dict(MU, **(mu or {}))
    rows, examples, grid = [], None, []
    work = [(k, m) for k in range(len(images)) for m in methods]
    bar = tqdm(total=sum(1 if m == "fbp" else len(lambdas[m]) for _, m in work),
               desc=f"{geometry} {angles} angles", disable=not progress)
    for k, image in enumerate(images):
        truth = ig.allocate(None)
        truth.fill(np.asarray(image, dtype=np.float32))
        y, sigma = add_noise(A.direct(truth), noise, rng)
        x0, x0_label = initial_reconstruction(A, y, backend, device)
        recons = {}
        start, tv_start = x0, None
        for method in methods:
            if method == "fbp":
                recons[method] = ("initial", None, x0)
                bar.update()
                continue
            if method != "tv" and start is x0 and start_from == "tv":
                start = tv_start if tv_start is not None else reconstruct(
                    "tv", A, y, lambdas["tv"][len(lambdas["tv"]) // 2], x0=x0,
                    iterations=iterations, tv_per_slice=tv_per_slice)
            found = {}

            tv_lam = recons["tv"][1] if "tv" in recons else \
                lambdas["tv"][len(lambdas["tv"]) // 2]
            extra = {"lam_tv": HYBRID_TV_FRACTION * tv_lam} if method == "hybrid" else {}

            def run(lam, method=method, extra=extra):
                x = reconstruct(method, A, y, lam, generator,
                                x0=x0 if method == "tv" else start, iterations=iterations,
                                mu=mu.get(method), tv_per_slice=tv_per_slice,
                                **extra, **(gen_opts if method != "tv" else {}))
                found[lam] = x
                bar.update()
                return x

            choice = discrepancy_principle(run, A, y, sigma, lambdas[method])
            for lam in lambdas[method]:  # the rest of the grid, for the best against truth
                if lam not in found:
                    run(lam)
            for lam, x in found.items():
                grid.append({"image": k, "method": method, "lam": lam, "psnr": psnr(x, truth),
                             "ssim": ssim(x, truth)})
            best = max(found, key=lambda lam: psnr(found[lam], truth))
            recons[method] = ("discrepancy", choice.lam, choice.x)
            recons[method + "*"] = ("best", best, found[best])
            if method == "tv":
                tv_start = choice.x  # TV at the discrepancy principle's λ: no ground truth
        for key, (choice, lam, x) in recons.items():
            rows.append({"image": k, "angles": angles, "geometry": geometry,
                         "method": key.rstrip("*") if key != "fbp" else x0_label.lower(),
                         "choice": choice, "lam": lam, "psnr": psnr(x, truth),
                         "ssim": ssim(x, truth)})
        if examples is None:
            examples = {"truth": truth.as_array().copy(), "data": y.as_array().copy(),
                        "recons": {key: x.as_array().copy() for key, (_, _, x) in recons.items()},
                        "initial_label": x0_label}
    bar.close()
    rows += _fixed_lambda_rows(grid, angles, geometry)
    return {"rows": rows, "summary": summarise(rows), "examples": examples, "grid": grid}


def _fixed_lambda_rows(grid, angles, geometry):
    """Rows of choice "fixed": per method, the one λ of the grid with the best mean PSNR over
    all images (as a user tuning λ once for a data set would), applied to every image."""
    rows = []
    for method in dict.fromkeys(g["method"] for g in grid):
        mine = [g for g in grid if g["method"] == method]
        lams = sorted({g["lam"] for g in mine})
        best = max(lams, key=lambda lam: np.mean([g["psnr"] for g in mine if g["lam"] == lam]))
        rows += [{"image": g["image"], "angles": angles, "geometry": geometry, "method": method,
                  "choice": "fixed", "lam": best, "psnr": g["psnr"], "ssim": g["ssim"]}
                 for g in mine if g["lam"] == best]
    return rows


def summarise(rows):
    """Mean PSNR and SSIM per (geometry, angles, method, choice), in the order of
    :data:`METHODS` and of the choices "initial", "discrepancy" (λ by the discrepancy principle,
    per image), "fixed" (the one λ best on average over the images) and "best" (λ best
    against the truth, per image: an oracle)."""
    groups = {}
    for r in rows:
        groups.setdefault((r["geometry"], r["angles"], r["method"], r["choice"]), []).append(r)
    order = {m: i for i, m in enumerate(("fbp", "cgls") + ALL_METHODS[1:])}
    choices = {c: i for i, c in enumerate(CHOICES)}
    keys = sorted(groups, key=lambda k: (str(k[0]), k[1], order.get(k[2], 99),
                                         choices.get(k[3], 99)))
    return [{"geometry": g, "angles": a, "method": m, "choice": c, "images": len(rs),
             "psnr": float(np.mean([r["psnr"] for r in rs])),
             "ssim": float(np.mean([r["ssim"] for r in rs])),
             "lam": (float(np.median([r["lam"] for r in rs])) if rs[0]["lam"] is not None
                     else None)}
            for (g, a, m, c), rs in ((k, groups[k]) for k in keys)]


# -- the MNIST experiment --------------------------------------------------------------------
SOFT_OVER_TV_TARGET = {10: 2.0, 30: 0.5}  # dB by which soft should beat TV (both at best λ)
QUICK_LAMBDAS = {"tv": (1.0, 4.0), "latent": (0.3, 3.0), "range": (0.3, 1.0),
                 "soft": (30.0, 100.0), "sparse": (10.0, 30.0)}


def load_generator(name_or_path):
    """A shipped model by name (``models.available_pretrained()``) or a checkpoint path."""
    from . import models
    if name_or_path in models.available_pretrained():
        return models.pretrained(name_or_path)
    return models.load(name_or_path)


def held_out_digits(n, seed=0):
    """``n`` MNIST test digits (the split no shipped model has seen), chosen with ``seed``."""
    from . import datasets
    digits = datasets.mnist(split="test")
    rng = np.random.default_rng(seed)
    return digits[np.sort(rng.choice(len(digits), size=min(n, len(digits)), replace=False))]


def mnist_comparison(n=20, angles=(10, 30), geometries=("parallel",), noise=0.05,
                     iterations=100, methods=METHODS, model="mnist-vae", lambdas=None,
                     out=os.path.join("outputs", "mnist"), backend="astra", device="cpu",
                     seed=0, progress=True, echo=print, start_from="tv"):
    """The talk's comparison on held-out MNIST digits, for each geometry and angle count:
    tables (``mnist_GEOMETRY_ANGLES.csv/.json``), figures (``.png``) and ``summary.json`` in
    ``out``; the tables and soft's margin over TV are printed. Returns the summary rows."""
    return run_comparison(held_out_digits(n, seed), load_generator(model), "mnist",
                          angles=angles, geometries=geometries, noise=noise,
                          iterations=iterations, methods=methods, lambdas=lambdas, out=out,
                          backend=backend, device=device, seed=seed, progress=progress,
                          echo=echo, meta={"model": model, "data": "MNIST test split",
                                           "start": start_from},
                          targets=SOFT_OVER_TV_TARGET, start_from=start_from, title="MNIST")


def run_comparison(images, generator, name, angles=(10, 30), geometries=("parallel",),
                   noise=0.05, iterations=100, methods=METHODS, lambdas=None, out="outputs",
                   backend="astra", device="cpu", seed=0, progress=True, echo=print,
                   meta=None, targets=None, title=None, mu=None, start_from="tv",
                   limited_span=90):
    """:func:`compare` for each geometry and angle count, with the outputs: tables
    (``NAME_GEOMETRY_ANGLES.csv/.json``), figures (``.png``) and ``summary.json`` in ``out``;
    the tables and soft's margin over TV are printed (``targets``: angles → dB soft should
    beat TV by, in parallel beam). Returns the summary rows."""
    summary = []
    label = title or name
    for geometry in geometries:
        for count in angles:
            results = compare(images, generator, angles=count, geometry=geometry, noise=noise,
                              methods=methods, lambdas=lambdas, iterations=iterations,
                              backend=backend, device=device, seed=seed, progress=progress,
                              mu=mu, start_from=start_from, limited_span=limited_span)
            stem = f"{name}_{geometry}_{count}"
            save_results(results, out, stem)
            where = GEOMETRY_TITLES.get(geometry, geometry).replace("90°", f"{limited_span:g}°")
            talk_figure(results["examples"], os.path.join(out, stem + ".png"),
                        f"{label}, {where}, {count} angles, {100 * noise:g}% noise")
            echo(f"\n{len(images)} held-out {label} images, {geometry}, {count} angles:")
            echo(format_table(results["summary"]))
            margin = soft_over_tv(results["summary"])
            if margin is not None:
                target = (targets or {}).get(count)
                verdict = "" if target is None or geometry != "parallel" else \
                    f" (target ≥ +{target:.1f} dB: {'met' if margin >= target else 'NOT met'})"
                echo(f"soft − TV (best λ per image, each) = {margin:+.2f} dB{verdict}")
                fixed = soft_over_tv(results["summary"], "fixed")
                echo(f"soft − TV (one λ for all images, each) = {fixed:+.2f} dB")
            summary += results["summary"]
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(dict(meta or {}, n=len(images), noise=noise, iterations=iterations, seed=seed,
                       summary=summary), f, indent=1)
    echo(f"\ntables, figures and summary.json written to {out}")
    return summary


def soft_over_tv(summary, choice="best", method="soft"):
    """PSNR of ``method`` minus that of TV, both with λ chosen by ``choice`` (None if either is
    missing)."""
    best = {s["method"]: s["psnr"] for s in summary if s["choice"] == choice}
    return best[method] - best["tv"] if method in best and "tv" in best else None


# -- the demos' command lines ----------------------------------------------------------------
def demo_parser(description, n, out, model, angles=(10, 30), geometries=GEOMETRIES):
    """The options every comparison demo shares (``demos/*_tomography.py``)."""
    import argparse
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--n", type=int, default=n, help="number of held-out test images")
    p.add_argument("--angles", type=int, nargs="+", default=list(angles),
                   help="numbers of projection angles")
    p.add_argument("--geometry", nargs="+", default=["parallel"], choices=geometries,
                   help="forward problems: parallel beam over 180°, limited angle (parallel "
                   "over 90°), fan beam over 360° (same generator: no retraining)")
    p.add_argument("--noise", type=float, default=0.05,
                   help="Gaussian noise σ as a fraction of the sinogram maximum")
    p.add_argument("--iterations", type=int, default=100, help="FISTA iterations per method")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=ALL_METHODS,
                   help="hybrid: TV + soft in one PDHG, TV's weight half the λ the "
                   "discrepancy principle chose for TV alone")
    p.add_argument("--model", default=model,
                   help="a shipped model name or a checkpoint written by `cil-genreg train`")
    p.add_argument("--lambdas", type=json.loads, default=None,
                   help='λ grids per method as JSON, e.g. \'{"soft": [30, 100]}\'')
    p.add_argument("--out", default=out, help="output folder")
    p.add_argument("--backend", default="astra", choices=("astra", "tigre"),
                   help="projector: ASTRA (2D on CPU or GPU) or TIGRE (GPU only)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                   help="projector and generator device")
    p.add_argument("--seed", type=int, default=0, help="seed of the image choice and the noise")
    p.add_argument("--start", default="tv", choices=STARTS,
                   help="start of the generative methods: the TV image at the discrepancy "
                   "principle's λ (no ground truth; its encoding for the latent range method), "
                   "or the FBP image (as good in parallel beam, poor in limited angle)")
    p.add_argument("--quick", action="store_true",
                   help="at most 2 images, 30 iterations, 2 λ per method: a smoke run")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def demo_lambdas(args, grids, quick_grids):
    """The λ grids of a demo run: ``grids`` (or ``quick_grids`` with ``--quick``, which also
    caps images and iterations) updated by ``--lambdas``."""
    lambdas = dict(quick_grids if args.quick else grids)
    if args.quick:
        args.n, args.iterations = min(args.n, 2), min(args.iterations, 30)
    lambdas.update({k: tuple(v) for k, v in (args.lambdas or {}).items()})
    return lambdas


def check_backend(backend, device):
    """Fail early, with what to do, when the projector backend cannot run here."""
    _plugin(backend)
    if backend == "tigre" and device == "cpu":
        raise RuntimeError("TIGRE runs on an NVIDIA GPU only: pass --device cuda on a machine "
                           "with one, or use --backend astra on the CPU.")
    if device == "cuda":
        import torch
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda but torch sees no GPU (torch.cuda.is_available() "
                               "is False): use --device cpu.")
        if backend == "astra":
            _check_astra_gpu()


# -- output ---------------------------------------------------------------------------------
def format_table(summary):
    """The summary as a plain-text table."""
    lines = [f"{'geometry':9} {'angles':>6} {'method':18} {'λ choice':12} {'λ':>7} "
             f"{'PSNR':>7} {'SSIM':>6}"]
    for s in summary:
        lam = "" if s["lam"] is None else f"{s['lam']:.3g}"
        lines.append(f"{s['geometry']:9} {s['angles']:>6} {LABELS.get(s['method'], s['method'].upper()):18} "
                     f"{s['choice']:12} {lam:>7} {s['psnr']:7.2f} {s['ssim']:6.3f}")
    return "\n".join(lines)


def backend_refusal(args):
    """For a demo's ``main``: None when ``args.backend`` / ``args.device`` can run here, else
    print ``error: ...`` (what to do instead) and return the exit status 1."""
    import sys
    try:
        check_backend(args.backend, args.device)
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return None


def format_markdown(summary, choices=("discrepancy", "fixed", "best")):
    """The summary as a Markdown table: one row per method, one PSNR / SSIM column pair per λ
    choice (for docs)."""
    keys = list(dict.fromkeys((s["geometry"], s["angles"]) for s in summary))
    lines = []
    for geometry, angles in keys:
        mine = [s for s in summary if (s["geometry"], s["angles"]) == (geometry, angles)]
        present = [c for c in choices if any(s["choice"] == c for s in mine)]
        lines += [f"**{geometry}, {angles} angles** ({mine[0]['images']} images)", "",
                  "| method | " + " | ".join(f"{c} PSNR / SSIM (λ)" for c in present) + " |",
                  "|---|" + "---|" * len(present)]
        for method in dict.fromkeys(s["method"] for s in mine):
            cells = []
            for c in present:
                hit = next((s for s in mine if s["method"] == method and s["choice"] == c),
                           None)
                if hit is None and c != "initial":
                    hit = next((s for s in mine if s["method"] == method
                                and s["choice"] == "initial"), None)
                cells.append("" if hit is None else f"{hit['psnr']:.2f} / {hit['ssim']:.3f}" +
                             ("" if hit["lam"] is None else f" ({hit['lam']:g})"))
            lines.append(f"| {LABELS.get(method, method.upper())} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def save_results(results, out_dir, name="results"):
    """Write ``NAME.csv`` (every row), ``NAME.json`` (rows and summary); return the paths."""
    os.makedirs(out_dir, exist_ok=True)
    csv_path = os.path.join(out_dir, f"{name}.csv")
    json_path = os.path.join(out_dir, f"{name}.json")
    rows = results["rows"]
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(json_path, "w") as f:
        json.dump({"rows": rows, "summary": results["summary"]}, f, indent=1)
    return csv_path, json_path


def talk_figure(examples, path, title=""):
    """Ground truth, data, then one panel per method (λ best against the truth) with its PSNR
    in the title, as in the talk's slides; written as PNG."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    truth = examples["truth"]
    order = ["fbp"] + [m + "*" for m in ALL_METHODS[1:] if m + "*" in examples["recons"]]
    panels = [("Ground truth", truth, "gray"), ("Data", examples["data"], "viridis")]
    for key in order:
        if key in examples["recons"]:
            x = examples["recons"][key]
            label = examples["initial_label"] if key == "fbp" else LABELS[key.rstrip("*")]
            panels.append((f"{label}\nPSNR={psnr(x, truth):.2f}", x, "gray"))
    fig, axes = plt.subplots(1, len(panels), figsize=(2.2 * len(panels), 2.6))
    for ax, (name, img, cmap) in zip(np.atleast_1d(axes), panels):
        ax.imshow(img, cmap=cmap, vmin=0 if cmap == "gray" else None,
                  vmax=1 if cmap == "gray" else None, aspect="auto" if cmap != "gray" else None)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


SliceWiseOperator = _slice_wise_operator_class()


def _slice_wise_function_class():
    from cil.optimisation.functions import Function

    class SliceWiseFunction(Function):
        """:math:`F(x) = \\sum_k f_k(x_k)` over the slices :math:`x_k` of a volume, each
        :math:`f_k` a 2D CIL function made by ``make()`` (e.g. a 2D TotalVariation per slice,
        whose proximal maps are computed slice by slice)."""

        def __init__(self, make, slices):
            super().__init__()
            self.functions = [make() for _ in range(int(slices))]
            self._slice = None

        def _slices(self, x):
            from cil.framework import ImageGeometry
            if self._slice is None:
                self._slice = ImageGeometry(voxel_num_x=x.shape[2], voxel_num_y=x.shape[1])
            for k, f in enumerate(self.functions):
                s = self._slice.allocate(None)
                s.fill(x.as_array()[k])
                yield k, f, s

        def __call__(self, x):
            return sum(f(s) for _, f, s in self._slices(x))

        def proximal(self, x, tau, out=None):
            ret = out if out is not None else x.geometry.allocate(None)
            arr = ret.as_array()
            for k, f, s in self._slices(x):
                arr[k] = f.proximal(s, tau).as_array()
            return ret

    return SliceWiseFunction


SliceWiseFunction = _slice_wise_function_class()
