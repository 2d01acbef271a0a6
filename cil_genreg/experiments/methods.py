r"""The reconstruction methods, one call each: :func:`reconstruct` with the method's name, and
one table of default weights (:data:`LAMBDAS`, :data:`MU`).

Every method solves :math:`\min_x \|Ax - y\|^2 + \lambda R(x)` with CIL's FISTA from a start
image (or from its encoding, for the latent range method), or with ``weights=W`` the
Poisson-weighted :math:`\min_x \|Ax - y\|_W^2 + \lambda R(x)`, :math:`\|r\|_W^2 = \sum_i
w_i r_i^2` (:mod:`cil_genreg.physics.weights`; CIL's ``LeastSquares(A, y, weight=W)``, whose
FISTA step is :math:`1 / (2\|A\|^2 \max_i w_i)`):

* ``tv``: :math:`R = \mathrm{TV}` (CIL's ``TotalVariation``);
* ``soft``, ``sparse``, ``range``: the generative regularisers of this package;
* ``soft-structured``: soft under the decoder's own sparse precision
  (:class:`~cil_genreg.functions.StructuredSoftRegulariser`; the generator must be a
  :class:`~cil_genreg.models.StructuredVAE`, whose mean alone is what the other methods see);
* ``latent``: the range method in latent space, :math:`\min_z \|A G(z) - y\|^2 + \lambda\|z\|^2`
  (``LatentLeastSquares``), image :math:`G(z)`;
* ``pnp``: Plug-and-Play FISTA, :math:`x_{k+1} = D_{\sqrt{\tau\lambda}}(x_k - \tau\nabla
  \|Ax_k - y\|^2)` with a trained denoiser (:class:`~cil_genreg.functions.DenoiserPrior`);
* ``dpir``: DPIR (Zhang et al. 2021), Plug-and-Play half-quadratic splitting with the same
  denoiser at a decreasing noise level, :math:`x_{k+1} = (A^TA + \mu_k I)^{-1}(A^Ty + \mu_k
  z_k)`, :math:`z_{k+1} = D_{\sigma_k}(x_{k+1})`, :math:`\mu_k = \lambda / (2\sigma_k^2)`
  (:class:`~cil_genreg.algorithms.PlugAndPlayHQS`, not FISTA): the Plug-and-Play a user
  meets first (deepinv's ``DPIR``);
* ``postprocess``: FBPConvNet, :math:`P(\mathrm{FBP}(y))`, no λ
  (:func:`~cil_genreg.experiments.postprocess_data.postprocess`, which warns when the
  geometry is not the one the network was trained for).

``fbp`` (the initial reconstruction, :func:`cil_genreg.physics.forward.initial_reconstruction`) is
listed with them for the comparisons and the command line.

A generator of smaller images than the reconstruction regularises it whole when it is fully
convolutional (a latent-grid model, through :func:`cil_genreg.models.at_size`), else through
the moving tiles of a :class:`~cil_genreg.PatchGenerativeRegulariser`.
"""
import warnings

from ..utilities._cil import require_cil

require_cil()
from ..functions import (DenoiserPrior, LatentLeastSquares, RangeGenerativeRegulariser, SliceWiseFunction,
                        SoftGenerativeRegulariser, SparseDeviationGenerativeRegulariser,
                        StructuredSoftRegulariser)
from ..functions.patch import patch_prior_for
from ..algorithms import LatentLBFGS
from ..utilities.validation import check_domain, check_positive
from ..physics.weights import check_weights
from ..utilities.defaults import (ALL_METHODS, EXTRA_METHODS, HYBRID_TV_FRACTION, LABELS,  # noqa: F401
                       LAMBDAS, METHODS, MU, NO_LAMBDA, lambda_grids)

#: the ``latent_prior`` choices of :func:`load_generator`
LATENT_PRIORS = ("auto", "fitted", "standard")


def load_model(name_or_path, kind):
    """A shipped model by name or a checkpoint path, refused (naming what it is) unless it is
    of ``kind``.

    Parameters
    ----------
    name_or_path : str
    kind : {"generator", "denoiser", "postprocess"}

    Returns
    -------
    torch.nn.Module
    """
    from .. import models
    if name_or_path in models.available_pretrained():
        name_or_path = models.pretrained_path(name_or_path)
    return models.load(name_or_path, kind=kind)


def load_generator(name_or_path, latent_prior="auto"):
    """A shipped model by name (``models.available_pretrained()``) or a checkpoint path.

    Parameters
    ----------
    name_or_path : str
    latent_prior : {"auto", "fitted", "standard"}
        "standard": the model as trained, whose methods penalise ‖z‖² (the prior
        :math:`N(0, I)`); "fitted": the model reparametrised by the latent Gaussian its
        checkpoint carries (:func:`cil_genreg.models.whitened`; ``cil-genreg fit-prior`` adds
        one); "auto" (default): "fitted" when the checkpoint carries a prior, else "standard".

    Returns
    -------
    torch.nn.Module

    Raises
    ------
    ValueError
        for an unknown ``latent_prior``, or "fitted" for a model without a prior.
    """
    from .. import models
    if latent_prior not in LATENT_PRIORS:
        raise ValueError(f"latent_prior must be one of {LATENT_PRIORS}, got {latent_prior!r}")
    model = load_model(name_or_path, "generator")
    has_prior = getattr(model, "latent_prior", None) is not None
    if latent_prior == "fitted" or (latent_prior == "auto" and has_prior):
        return models.whitened(model)
    return model


def reconstruct(method, A, y, lam, generator=None, x0=None, iterations=100, mu=None,
                callbacks=None, tv_per_slice=False, lam_tv=None, denoiser=None,
                postprocessor=None, measurement=None, weights=None, **solver_options):
    """One reconstruction by ``method`` (see :data:`METHODS`) with weight ``lam``.

    Parameters
    ----------
    method : str
        "tv", "soft", "sparse", "range" (the regulariser, under FISTA) or "latent"
        (``LatentLeastSquares`` + :math:`\\lambda\\|z\\|^2` under
        :class:`~cil_genreg.algorithms.LatentLBFGS`, from the encoder's code of ``x0``).
    A, y : the projector and the data.
    lam : float
    generator : torch.nn.Module, for the generative methods.
    x0 : DataContainer, the start (default: zeros).
    iterations : int, FISTA iterations (for "latent": quasi-Newton iterations at most; not
        used by "dpir", which runs the K iterations of its noise schedule, DPIR's 8, or
        ``schedule_iterations=K``).
    mu : float, the latent weight of soft / sparse (default :data:`MU`).
    callbacks : list, CIL callbacks (e.g. a progress bar).
    tv_per_slice : bool, for a volume: 2D TV of each slice instead of 3D TV.
    lam_tv : float, the TV weight of "hybrid" (``lam`` is its generative weight; see
        :func:`cil_genreg.algorithms.hybrid.hybrid_fista`).
    denoiser : torch.nn.Module, the denoiser of "pnp" (``lam`` sets its noise level
        :math:`\\sqrt{\\tau\\lambda}`) and "dpir" (``lam`` sets the couplings
        :math:`\\mu_k = \\lambda / (2\\sigma_k^2)`; ``solver_options``: ``sigma_max``,
        ``sigma_min``, ``schedule_iterations``, ``cg_iterations``, ``cg_tolerance`` of
        :class:`~cil_genreg.algorithms.PlugAndPlayHQS`).
    postprocessor : torch.nn.Module, the network of "postprocess" (``lam`` unused; ``x0`` is
        taken as the FBP image when given).
    measurement : how ``y`` was made (:mod:`cil_genreg.physics.measurement`), when known: for
        "postprocess", whose network warns when trained for another dose or noise level.
    weights : AcquisitionData, the per-datum weights :math:`W` of the data term
        :math:`\\|Ax - y\\|_W^2` (:func:`cil_genreg.physics.weights.poisson_weights`, mean 1: the
        λ of the unweighted term keep their units); default None, :math:`\\|Ax - y\\|^2`. Not
        for "dpir" (its half-quadratic step solves the unweighted normal equations) nor
        "postprocess" (no data term): refused.

    At CT sizes pass ``max_iteration=2`` (latent iterations per proximal map, warm-started:
    the regulariser's default 50 is what the digit tables use), ``iterations=50`` at 128² and
    ``precision="bfloat16"`` at 512²: the times of benchmarks/README.md, "CT speed"
    (``cil-genreg reconstruct`` defaults to 2 inner iterations).

    A generator of images of another size than the reconstruction (a patch model) is used at
    the reconstruction's size when it is fully convolutional (:func:`generator_for`), else it
    regularises the image through the moving tiles of a
    :class:`~cil_genreg.PatchGenerativeRegulariser` (soft, sparse, range, hybrid).
    """
    from cil.optimisation.algorithms import FISTA
    from cil.optimisation.functions import LeastSquares, TotalVariation
    if method not in ALL_METHODS or method == "fbp":
        raise ValueError(f"method must be one of {ALL_METHODS[1:]}, got {method!r}")
    needs = {"pnp": ("denoiser", denoiser), "dpir": ("denoiser", denoiser),
             "postprocess": ("postprocessor", postprocessor)}
    what, model = needs.get(method, ("generator", generator))
    if method != "tv" and model is None:
        raise ValueError(f"method {method!r} needs a {what} ({what}=...)")
    if weights is not None and method in ("dpir", "postprocess"):
        raise ValueError(f"method {method!r} has no weighted data term: run it with "
                         "weights=None (data term 'ls')")
    weights = check_weights(weights, A.range_geometry())
    if method == "postprocess":
        from .postprocess_data import postprocess
        return postprocess(postprocessor, A, y, x0=x0, measurement=measurement)
    lam = check_positive(lam, "lam")
    check_domain(x0, A, "x0")
    ig = A.domain_geometry()
    if method == "dpir":
        return dpir(A, y, lam, denoiser, x0, callbacks, **solver_options)
    if generator is not None:
        generator = generator_for(generator, ig)
    if method == "hybrid":
        from ..algorithms.hybrid import hybrid_fista
        return hybrid_fista(A, y, lam_tv, lam, generator, x0=x0, iterations=iterations,
                            mu=MU["hybrid"] if mu is None else mu, callbacks=callbacks,
                            weights=weights, **solver_options)
    if method == "latent":
        f, z = latent_map(A, y, lam, generator, x0, iterations, callbacks, weights=weights,
                          **solver_options)
        return f.image(z)
    if method == "tv":
        g = TotalVariation(max_iteration=10, warm_start=True)
        if tv_per_slice and len(ig.shape) == 3:
            g = SliceWiseFunction(lambda: TotalVariation(max_iteration=10, warm_start=True),
                                  ig.shape[0])
    elif method == "pnp":
        g = DenoiserPrior(denoiser, **solver_options)
    elif method == "soft":
        g = SoftGenerativeRegulariser(generator, mu=MU["soft"] if mu is None else mu,
                                      **solver_options)
    elif method == "soft-structured":
        g = StructuredSoftRegulariser(generator, mu=MU[method] if mu is None else mu,
                                      **solver_options)
    elif method == "sparse":
        g = SparseDeviationGenerativeRegulariser(generator, mu=MU["sparse"] if mu is None else mu,
                                                 **solver_options)
    else:
        g = RangeGenerativeRegulariser(generator, **solver_options)
    if method not in ("tv", "pnp"):
        g = patch_prior_for(g, ig)
    algo = FISTA(initial=x0 if x0 is not None else ig.allocate(0), f=LeastSquares(A, y, weight=weights),
                 g=lam * g, update_objective_interval=iterations)
    algo.run(iterations, verbose=0, callbacks=callbacks)
    return algo.solution


def dpir(A, y, lam, denoiser, x0=None, callbacks=None, device=None, **options):
    r"""DPIR's image: :class:`~cil_genreg.algorithms.PlugAndPlayHQS` run over its noise
    schedule (K iterations, DPIR's 8 unless ``schedule_iterations`` says otherwise), from
    ``x0`` (default zeros).

    Parameters
    ----------
    A, y : the projector and the data.
    lam : float
        λ of :math:`\|Ax - y\|^2 + \lambda R(x)`: :math:`\mu_k = \lambda / (2\sigma_k^2)`.
    denoiser : torch.nn.Module
    x0 : DataContainer, optional
    callbacks : list, optional
        CIL callbacks, called after each of the K iterations.
    device : str, optional
        the denoiser's (default its own).
    **options
        ``sigma_max``, ``sigma_min``, ``schedule_iterations``, ``cg_iterations``,
        ``cg_tolerance``.

    Returns
    -------
    DataContainer
        :math:`z_K`, the last denoised image.
    """
    from ..algorithms.dpir import PlugAndPlayHQS
    algo = PlugAndPlayHQS(initial=x0, operator=A, data=y, denoiser=DenoiserPrior(
        denoiser, device=device), lam=lam, **options)
    algo.update_objective_interval = 0  # no value to log: the callbacks see the K iterations
    algo.run(len(algo.sigmas), verbose=0, callbacks=callbacks)
    return algo.solution


def latent_map(A, y, lam, generator, x0=None, iterations=100, callbacks=None, weights=None,
               **solver_options):
    r"""The latent method's solution :math:`z^* = \arg\min_z \|A G(z) - y\|_W^2 +
    \lambda\|z\|^2` (:math:`W = I` without ``weights``) by
    :class:`~cil_genreg.algorithms.LatentLBFGS` from the encoder's code of ``x0`` (z = 0
    without an encoder); at :math:`\lambda = \sigma^2` the mode of the latent
    posterior that :class:`~cil_genreg.algorithms.LatentPosteriorSampler` samples.

    Parameters
    ----------
    A, y : the projector and the data.
    lam : float
    generator : torch.nn.Module (at the image's size: see :func:`generator_for`).
    x0 : DataContainer, optional
    iterations : int
    callbacks : list, optional
    weights : AcquisitionData, optional
        :math:`W` (default None: unweighted).

    Returns
    -------
    (LatentLeastSquares, VectorData)
        :math:`f(z) = \|A G(z) - y\|_W^2` and :math:`z^*`.
    """
    from cil.optimisation.functions import L2NormSquared
    f = LatentLeastSquares(A, generator, y, weight=weights, **solver_options)
    algo = LatentLBFGS(initial=_encoded(x0, f), f=f + lam * L2NormSquared(),
                       max_iteration=iterations, update_objective_interval=iterations)
    algo.run(iterations, verbose=0, callbacks=callbacks)
    return f, algo.solution


def generator_for(generator, geometry):
    """``generator`` at the size of ``geometry``'s images (or slices) when it is fully
    convolutional (``latent_grid > 0``) and makes images of another size that the size allows
    (:func:`cil_genreg.models.at_size`, the same weights; a fitted latent prior, which belongs
    to the model's own size, is then dropped with a warning); otherwise ``generator`` itself
    (a dense model of smaller images is then a patch prior).

    Parameters
    ----------
    generator : torch.nn.Module
    geometry : ImageGeometry

    Returns
    -------
    torch.nn.Module
    """
    from ..models import WhitenedGenerator, at_size
    shape = tuple(geometry.shape[-2:])
    made = tuple(getattr(generator, "image_shape", shape))
    if isinstance(generator, WhitenedGenerator) and made != shape and \
            getattr(generator.generator, "latent_grid", 0):
        warnings.warn(f"the model's fitted latent prior is of its {made[0]}² latent: at "
                      f"{shape[0]}² the model runs with the standard prior N(0, I).",
                      stacklevel=2)
        generator = generator.generator
    grid = getattr(generator, "latent_grid", 0)
    if not grid or made == shape or shape[0] != shape[1] or shape[0] % (made[0] // grid):
        return generator
    return at_size(generator, shape[0])


def _encoded(x0, f):
    """The start of the latent method: the encoder's mean of the initial image when the
    generator has an encoder (a VAE / AE), else z = 0 (the prior's mean)."""
    code = None if x0 is None else f.generator_operator.encode(x0)
    return code if code is not None else f.latent_geometry.allocate(0)
