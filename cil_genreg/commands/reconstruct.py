"""``cil-genreg reconstruct``: one method on a user's tomographic data, the image written out.

The data: a sinogram (angles × detector pixels) as ``.npy`` with its geometry from
``--angles ANGLES.npy`` (degrees) or ``--angles-deg N`` (N angles over the ``--geometry``'s
span), ``--panel`` and ``--image-size``; or a CIL NeXus file (``.nxs``, written by
``cil.io.NEXUSDataWriter``), which carries its own geometry.

The learned peers run on 2D sinograms: ``--method pnp --denoiser FILE`` (PnP-FISTA),
``--method dpir --denoiser FILE`` (DPIR) and ``--method postprocess --postprocess FILE``
(:mod:`._peers`).

A 3D parallel-beam sinogram (``.npy`` of shape (slices, angles, pixels), or a 3D NeXus file)
is reconstructed as a volume, slice-batched (2D TV per slice; the generative regularisers take
all slices as one batch, coupled along z with ``--latent-coupling``). Under
``torchrun --nproc_per_node N -m cil_genreg.cli reconstruct ...`` the slices are split into N
slabs, one per process (:mod:`cil_genreg.experiments.slabs`), and rank 0 writes the gathered volume.
"""
import math
import os

import numpy as np

from ..utilities.defaults import DPIR_ITERATIONS, METHODS, lambda_grids
from ..utilities.output_safety import check_output_file
from . import _peers, _posterior
from .options import add_latent_prior_option, add_precision_option, check_precision_option
from ..utilities.validation import check_angles, check_finite_array
from ._data import load_sinogram, read_angles
from ._images import IMAGE_SUFFIXES, write_image

NAME = "reconstruct"
HELP = ("reconstruct an image from a sinogram by FBP, TV, a generative regulariser or a learned "
        "peer (Plug-and-Play, post-processing)")

DEFAULT_LAMBDA = lambda_grids("default")
#: latent iterations per proximal map of the generative methods under FISTA, each warm-started:
#: for soft, 2 kept the PSNR of 3 at 128² and 512² and of the regulariser's own 50 at 128², for
#: a fraction of the generator passes (benchmarks/README.md, "CT speed")
DEFAULT_INNER_ITERATIONS = 2


def add_parser(subparsers):
    p = subparsers.add_parser(
        NAME, help=HELP,
        description=HELP + ". Methods: fbp; tv (CIL's TotalVariation under FISTA); latent (the "
        "range method in latent space: LatentLeastSquares + λ‖z‖² under FISTA); range, soft, "
        "sparse (the generative regularisers under FISTA, started from FBP); pnp (Plug-and-Play "
        "FISTA with --denoiser); dpir (DPIR: Plug-and-Play half-quadratic splitting with "
        "--denoiser at a decreasing noise level, its 8 iterations); postprocess (the --postprocess network on the FBP image). "
        "With several --lam and --sigma, λ is chosen by the discrepancy principle.")
    p.add_argument("--method", required=True, choices=METHODS + tuple(_peers.PEERS))
    p.add_argument("--data", required=True,
                   help="sinogram: .npy (angles × pixels) or CIL NeXus .nxs (with geometry)")
    p.add_argument("--angles", help="projection angles in degrees, .npy (or .txt)")
    p.add_argument("--angles-deg", type=int, metavar="N",
                   help="N equispaced angles over the geometry's span (instead of --angles)")
    p.add_argument("--geometry", default="parallel", choices=("parallel", "limited", "fan"),
                   help="with --angles-deg: parallel (180°), limited (90°) or fan (360°; the "
                   "fan of `cil_genreg.physics.forward.make_geometry`)")
    p.add_argument("--panel", type=int, help="detector pixels (default: the sinogram's width)")
    p.add_argument("--image-size", type=int,
                   help="image side in pixels (default: the model's, else panel/√2)")
    p.add_argument("--model", default="mnist-vae",
                   help="shipped model name (e.g. mnist-vae, shapes-vae) or a checkpoint path")
    _peers.add_options(p)
    add_latent_prior_option(p)
    p.add_argument("--lam", type=float, nargs="+",
                   help="regularisation weight(s); default per method " + str(DEFAULT_LAMBDA))
    p.add_argument("--sigma", type=float,
                   help="noise standard deviation per datum: with several --lam, choose λ by "
                   "the discrepancy principle")
    p.add_argument("--mu", type=float, help="latent weight μ of soft / sparse")
    p.add_argument("--iterations", type=int, default=100,
                   help="FISTA iterations (dpir runs the 8 of its noise schedule)")
    p.add_argument("--start", default="fbp", choices=("fbp", "tv"),
                   help="start of the generative methods: the FBP image, or TV (λ = "
                   "--start-lam) — better where FBP is poor, e.g. limited angle")
    p.add_argument("--start-lam", type=float, default=DEFAULT_LAMBDA["tv"],
                   help="λ of the TV start")
    p.add_argument("--backend", default="astra", choices=("astra", "tigre"))
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    add_precision_option(p)
    p.add_argument("--inner-iterations", type=int, metavar="N",
                   default=DEFAULT_INNER_ITERATIONS,
                   help="latent iterations per proximal map of soft, sparse, range, hybrid, "
                        "each warm-started from the previous map's latent (default "
                        f"{DEFAULT_INNER_ITERATIONS}: for soft at 128² as accurate as the "
                        "regulariser's own 50 and 4.5x faster; benchmarks/README.md, 'CT "
                        "speed')")
    p.add_argument("--latent-coupling", type=float, default=0.0, metavar="LAMBDA_Z",
                   help="volumes: couple neighbouring slices' latents, λ_z Σ‖z_k+1 − z_k‖² "
                   "(soft, range, sparse; 0 = independent slices)")
    p.add_argument("--out", required=True,
                   help="output image: .npy, .tif/.tiff or .png (a volume: .npy or .tif)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out (never one of the inputs)")
    p.add_argument("--angles-unit", choices=("degree", "radian"),
                   help="unit of the --angles file (default degree; angles that all lie within "
                   "2π are refused as likely radians unless the unit is given)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _posterior.add_options(p)
    return p


def read_sinogram(args):
    """The data as AcquisitionData, and its ImageGeometry, from the options."""
    from cil.framework import ImageGeometry
    from ..physics import forward

    path = args.data
    if not os.path.exists(path):
        raise FileNotFoundError(f"--data {path!r} does not exist.")
    if args.angles is not None and args.angles_deg is not None:
        raise ValueError("--angles FILE and --angles-deg N both give the angles: keep one "
                         "(--angles for the measured angles, --angles-deg for N equispaced).")
    if path.lower().endswith((".nxs", ".nx", ".nexus")):
        data = _read_nexus(path)
        ag = data.geometry
        if ag is None or not hasattr(ag, "geom_type"):
            raise ValueError(f"{path!r} holds no AcquisitionData (an acquisition geometry).")
        if args.angles is not None or args.angles_deg is not None:
            raise ValueError(f"--data {path!r} is a NeXus file with its own angles: leave out "
                             "--angles / --angles-deg.")
        check_finite_array(data, f"--data {path!r}")
        check_angles(ag.angles, f"the angles of --data {path!r}", ag.config.angles.angle_unit)
        size = args.image_size or _default_size(args, ag.pixel_num_h)
        check_model_size(args, size)
        if ag.dimension == "3D":
            kind = str(getattr(ag.geom_type, "name", ag.geom_type)).lower()
            if not ag.geom_type == "parallel" and args.device == "cpu":
                raise ValueError(f"{path!r} is a 3D {kind}-beam acquisition: on the CPU "
                                 "only parallel beams are reconstructed (slice by slice); a cone "
                                 "beam needs --device cuda, in one process.")
            return data, ImageGeometry(voxel_num_x=size, voxel_num_y=size,
                                       voxel_num_z=ag.pixel_num_v)
        return data, ImageGeometry(voxel_num_x=size, voxel_num_y=size)
    if not path.lower().endswith(".npy"):
        raise ValueError(f"--data must be a .npy sinogram or a CIL NeXus .nxs file, got {path!r}")
    sino = load_sinogram(path, args)
    slices = sino.shape[0] if sino.ndim == 3 else None
    if slices is not None and args.geometry == "fan":
        raise ValueError("a 3D sinogram is taken as a parallel beam (--geometry parallel or "
                         "limited); a stack of fan beams is not a cone beam.")
    panel = args.panel or sino.shape[-1]
    if panel != sino.shape[-1]:
        raise ValueError(f"--panel {panel} but the sinogram has {sino.shape[-1]} detector "
                         "pixels.")
    size = args.image_size or _default_size(args, panel)
    check_model_size(args, size)
    check_fits_panel(size, panel, args.geometry)
    if args.angles is not None:
        angles = read_angles(args.angles, args.angles_unit)
        rows = sino.shape[-2]
        if len(angles) != rows:
            raise ValueError(f"--angles {args.angles!r} holds {len(angles)} angle(s) but the "
                             f"sinogram has {rows} rows (one per angle).")
        ig, ag = forward.make_geometry(size, len(angles), args.geometry, panel=panel,
                                       slices=slices)
        ag.set_angles(angles)
    elif args.angles_deg is not None:
        ig, ag = forward.make_geometry(size, args.angles_deg, args.geometry, panel=panel,
                                       slices=slices)
    else:
        raise ValueError("give the angles: --angles ANGLES.npy (degrees) or --angles-deg N.")
    if args.geometry == "fan":
        ag.set_panel(panel)  # the file's panel, as given (make_geometry magnifies its own)
    if tuple(ag.shape) != sino.shape:
        raise ValueError(f"the geometry has data shape {tuple(ag.shape)} ({'slices × ' if slices else ''}"
                         f"angles × pixels) but the sinogram has shape {sino.shape}: check "
                         "--angles / --panel.")
    data = ag.allocate(None)
    data.fill(sino)
    return data, ig


def _read_nexus(path):
    """AcquisitionData from a CIL NeXus file; a clear error for a corrupt or foreign file."""
    from cil.io import NEXUSDataReader
    try:
        return NEXUSDataReader(file_name=path).read()
    except Exception as err:  # noqa: BLE001 - h5py/CIL raise many kinds for a bad file
        raise ValueError(f"--data {path!r} is not a readable CIL NeXus file "
                         f"({type(err).__name__}: {err}); write it with "
                         "cil.io.NEXUSDataWriter, or pass a .npy sinogram.") from None


#: the magnification of :func:`cil_genreg.physics.forward.make_geometry`'s fan beam, (4 + 2) / 4
FAN_MAGNIFICATION = 1.5
def check_fits_panel(size, panel, geometry):
    """Refuse an image wider than the detector sees (for the fan beam: magnified)."""
    magnification = FAN_MAGNIFICATION if geometry == "fan" else 1.0
    if size * magnification > panel:
        raise ValueError(f"a {size}x{size} image does not fit the {panel}-pixel panel"
                         f"{' (magnified 1.5x by the fan beam)' if magnification > 1 else ''}: "
                         "pass a smaller --image-size, or use a model made for images of "
                         f"at most {int(panel / magnification)} pixels.")


def check_model_size(args, size):
    """Refuse, before any computation, an image size the generative method's model cannot
    make (the model is loaded once and kept for the run)."""
    if args.method in ("fbp", "tv"):
        return
    if args.method in _peers.PEERS:
        return _peers.check_size(args, size)
    side = _model_side(args)
    if side != size:
        raise ValueError(f"--image-size {size} but the model {args.model!r} makes "
                         f"{side}x{side} images: leave --image-size out, or use a model "
                         f"trained on {size}x{size} images.")


def _model_side(args):
    """The image side of ``--model``, loaded once (kept as ``args._generator`` for the run), or
    of the pnp / postprocess network (the side it was trained at)."""
    if args.method in _peers.PEERS:
        return int(_peers.network(args).image_shape[-1])
    if getattr(args, "_generator", None) is None:
        from ..experiments.methods import load_generator
        args._generator = load_generator(args.model, args.latent_prior)
    return int(args._generator.image_shape[-1])


def _default_size(args, panel):
    if args.method not in ("fbp", "tv"):
        return _model_side(args)
    return int(math.floor(panel / math.sqrt(2) / (FAN_MAGNIFICATION if args.geometry == "fan"
                                                  else 1.0)))


def run(args):
    from ..utilities import distributed
    from ..physics import forward
    from ..experiments import methods

    _peers.check_options(args)
    for path in (args.out,) + _posterior.output_paths(args):
        check_output_file(path, overwrite=args.overwrite, suffixes=IMAGE_SUFFIXES,
                          inputs=[args.data, args.angles, args.model, args.denoiser,
                                  args.postprocess])
    check_precision_option(args, args.method)
    y, ig = read_sinogram(args)
    if len(ig.shape) == 3:
        if args.samples is not None:
            raise ValueError("--samples draws the posterior of a 2D slice: not of a volume.")
        return _run_volume(args, y, ig)
    if distributed.launched():
        raise ValueError("a 2D sinogram has no slices to split over processes: run "
                         "`cil-genreg reconstruct` without torchrun.")
    if args.latent_coupling:
        raise ValueError("--latent-coupling couples the slices of a volume: it needs 3D data.")
    A = forward.make_projector(ig, y.geometry, args.backend, args.device)
    x0, label = forward.initial_reconstruction(A, y, args.backend, args.device)
    generator, lam = None, None
    if args.method == "fbp":
        image = x0
        if label != "FBP":
            print(f"(no FBP for this geometry on {args.device}: {label} instead)")
    elif args.method == "postprocess":
        # the network's warning (another geometry) is shown; its image is still written
        image = methods.reconstruct("postprocess", A, y, None, x0=x0,
                                    postprocessor=_peers.network(args))
    else:
        if args.method not in ("tv", "pnp", "dpir"):
            generator = getattr(args, "_generator", None) or \
                methods.load_generator(args.model, args.latent_prior)
        lam, image = _iterative(args, A, y, x0, generator)
    array = np.asarray(image.as_array(), dtype=np.float32)
    if getattr(args, "_single_slice", False) and not args.out.lower().endswith(".png"):
        array = array[None]  # the stack had one slice: a one-slice volume
    write_image(array, args.out)
    residual = (A.direct(image) - y).norm()
    print(f"{args.method}{'' if lam is None else f' (λ = {lam:g})'}: image {array.shape} written "
          f"to {args.out}; ‖Ax − y‖ = {residual:.4g}")
    if args.samples is not None:
        _posterior.sample_and_write(args, A, y, lam, generator, image, write_image)
    return 0


def _iterative(args, A, y, x0, generator):
    """An iterative method (tv, pnp, the generative ones) at ``--lam``, or at the λ the
    discrepancy principle chooses among several; returns (λ, image)."""
    from tqdm.auto import tqdm

    from ..experiments import methods
    from ..experiments.parameter_choice import discrepancy_principle
    lams = args.lam or [DEFAULT_LAMBDA[args.method]]
    if len(lams) > 1 and args.sigma is None:
        raise ValueError("several --lam need --sigma (the noise level) to choose among them "
                         "by the discrepancy principle.")
    opts = {} if args.method == "tv" or args.device == "cpu" else {"device": args.device}
    if args.mu is not None and args.method in ("soft", "sparse"):
        opts["mu"] = args.mu
    if args.method in ("pnp", "dpir"):
        opts["denoiser"] = _peers.network(args)
    opts.update(_regulariser_options(args))
    if args.start == "tv" and args.method != "tv":
        x0 = methods.reconstruct("tv", A, y, args.start_lam, x0=x0, iterations=args.iterations)
    steps = DPIR_ITERATIONS if args.method == "dpir" else args.iterations
    bar = tqdm(total=len(lams) * steps, desc=f"{args.method}", disable=args.quiet)

    def solve(lam):
        bar.set_postfix(lam=lam)
        return methods.reconstruct(args.method, A, y, lam, generator, x0=x0,
                                   iterations=args.iterations,
                                   callbacks=[_TqdmCallback(bar)], **opts)

    try:
        if len(lams) == 1:
            return lams[0], solve(lams[0])
        choice = discrepancy_principle(solve, A, y, args.sigma, lams)
        for value, residual in choice.table:
            print(f"λ = {value:g}: ‖Ax − y‖² = {residual:.4g} (bound {choice.bound:.4g})")
        print(f"discrepancy principle: λ = {choice.lam:g}"
              + ("" if choice.satisfied else " (no λ fits the noise level: the smallest "
                 "residual)"))
        return choice.lam, choice.x
    finally:
        bar.close()


def _run_volume(args, y, ig):
    """A 3D parallel-beam sinogram: slice-batched in one process, slab-parallel under torchrun."""
    from tqdm.auto import tqdm

    from ..utilities import distributed
    from ..experiments import methods
    from ..experiments import slabs

    if args.out.lower().endswith(".png"):
        raise ValueError("a volume cannot be written as PNG: use --out VOLUME.npy or .tif")
    if args.lam and len(args.lam) > 1:
        raise ValueError("a volume takes one --lam (the discrepancy principle over several is "
                         "for 2D data).")
    _peers.refuse_volume(args)
    ctx = distributed.init(args.device)
    try:
        if distributed.launched():
            slabs.check_splittable(y.geometry)
        generator = None
        if args.method not in ("fbp", "tv"):
            generator = getattr(args, "_generator", None) or \
                methods.load_generator(args.model, args.latent_prior)
        lam = (args.lam or [DEFAULT_LAMBDA.get(args.method, 0.0)])[0]
        opts = {"mu": args.mu} if args.mu is not None and args.method in ("soft", "sparse") \
            else {}
        opts.update(_regulariser_options(args))
        bar = tqdm(total=args.iterations, desc=f"{args.method} ({ctx.world_size} process"
                   f"{'es' if ctx.world_size > 1 else ''})",
                   disable=args.quiet or not ctx.is_main or args.method == "fbp")
        volume, residual = slabs.reconstruct_slab(
            args.method, y, ig, lam, generator, ctx, iterations=args.iterations,
            latent_coupling=args.latent_coupling, callbacks=[_TqdmCallback(bar)],
            start=args.start, start_lam=args.start_lam, backend=args.backend, **opts)
        bar.close()
        if ctx.is_main:
            write_image(volume, args.out)
            print(f"{args.method}{'' if args.method == 'fbp' else f' (λ = {lam:g})'}: volume "
                  f"{volume.shape} from {ctx.world_size} process(es) written to {args.out}; "
                  f"‖Ax − y‖ = {residual:.4g}")
    finally:
        distributed.shutdown(ctx)
    return 0


def _regulariser_options(args):
    """``--precision`` and ``--inner-iterations`` as regulariser options (generative methods)."""
    from .options import PRECISION_METHODS, precision_options
    opts = precision_options(args)
    if args.inner_iterations is not None and args.method in PRECISION_METHODS:
        opts["max_iteration"] = args.inner_iterations
    return opts


class _TqdmCallback:
    """A CIL callback advancing a tqdm bar by one per outer iteration."""

    def __init__(self, bar):
        self.bar = bar

    def __call__(self, algorithm):
        self.bar.update()
