r"""The common part of the generative regularisers: a CIL Function built on a latent solver.

Each regulariser is :math:`R_G(x) = \min_z D(x, G(z)) + c\|z\|^2` for a generator
:math:`G: \mathbb{R}^d \to X`, and each of its proximal maps is a *latent step*

.. math:: z^* = \underset{z}{\text{argmin}}\; \varphi_\tau(v - G(z)) + c\|z\|^2

followed by a closed-form image update. This base class turns CIL DataContainers into batches
for the generator (a 2D image is a batch of one; a 3D volume of shape (slices, H, W) is a batch
of its slices, regularised slice by slice through the generator in one pass), checks them, runs
the latent solver, and writes results back into CIL containers.
"""
import torch
from cil.optimisation.functions import Function, ScaledFunction

from ..utilities.bridge import as_tensor, from_tensor
from ..latent import LatentChain, LatentSolver, encode_mean
from ..latent.schedule import as_schedule
from ..utilities.validation import (InputError, check_image, check_non_negative, check_out,
                                    check_positive, check_real)


def weighted(function, scalar):
    """CIL's :class:`ScaledFunction` ``scalar * function`` (what ``lam * R`` builds), refusing
    a weight λ that is not a finite number > 0 where it is given, not later as a step size.

    Raises
    ------
    TypeError, InputError
        naming λ and the regulariser.
    """
    name = f"the weight λ of λ * {type(function).__name__}"
    try:
        check_real(scalar, name, low=0.0, low_open=True)
    except ValueError as err:
        raise InputError(f"{err} A regulariser's weight must be a positive finite number "
                         "(e.g. 60 * R); for no regularisation leave R out.") from None
    return ScaledFunction(function, scalar)


class GenerativeRegulariser(Function):
    r"""Base class of the generative regularisers (not used on its own),

    .. math:: R_G(x) = \min_z D(x, G(z)) + c\|z\|_2^2 ,

    a CIL Function whose latent problems are solved by a
    :class:`~cil_genreg.latent.LatentSolver`.

    Parameters
    ----------
    generator : torch.nn.Module
        :math:`G`, mapping a latent batch (B, d) to images (B, 1, H, W); e.g.
        ``cil_genreg.models.pretrained("mnist-vae")``. It runs in eval mode on ``device``;
        the module passed is never changed (one in training mode or on another device is
        copied, see :func:`cil_genreg.latent.generator.own_copy`).
    latent_dim : int, optional
        :math:`d`, for a module without a ``latent_dim`` attribute.
    geometry : ImageGeometry, optional
        when given, every input must have this geometry (else a ValueError names both).
    optimiser : {"auto", "bfgs", "lbfgs", "adam"}
        inner optimiser of the latent step (see :class:`~cil_genreg.latent.LatentSolver`).
    max_iteration : int
        inner iterations per latent step.
    tolerance : float
        relative tolerance of the inner optimiser (the tightest used when
        ``adaptive_tolerance``).
    adaptive_tolerance : bool
        follow the outer iteration (inexact proximal maps, as CIL's ``TotalVariation`` with its
        few warm-started inner iterations): a latent step whose input moved by
        :math:`\delta = \|v_k - v_{k-1}\| / \|v_k\|` since the previous call is solved to
        :math:`\text{clip}(\delta^2, \text{tolerance}, \text{tolerance\_max})` — loose while the outer
        algorithm moves fast, tight as it settles (the inexact-prox idea of Schmidt, Le Roux &
        Bach 2011, where summable inner errors keep the outer rate). While it is at
        ``tolerance_max`` (and for the first proximal map, the start of an outer iteration) the
        step also runs at most ``inexact_max_iteration`` inner iterations, continued from its
        warm start at the next call. The first value or gradient is solved to ``tolerance``.
    tolerance_max : float
        the loosest inner tolerance of ``adaptive_tolerance``.
    inexact_max_iteration : int
        inner iterations at most while ``adaptive_tolerance`` is at ``tolerance_max``.
    restarts : int
        random starts per latent step besides the warm start, batched through the generator.
    warm_start : bool
        start each latent step from the previous one's :math:`z^*`.
    init : {"auto", "zeros", "encoder"}
        the first start (before any warm start): the generator's ``encode`` (a VAE's mean or an
        AE's code) of the target when it has one ("auto", "encoder"), else :math:`z = 0`.
    latent_start : {"warm", "encoder", "warm+encoder"}
        the start of every later latent step (amortised inference): "warm" (default) the
        previous :math:`z^*`; "encoder" the encoder's code :math:`E(v)` of this step's target
        :math:`v` (one encoder pass; a fitted prior's ``WhitenedGenerator`` gives
        :math:`w = \Sigma^{-1/2}(E(v) - m)`); "warm+encoder" whichever of the two has the lower
        latent objective (one batched pass without gradients). Both need an encoder.
    inner_schedule : (int, int[, int[, str]]) or callable, optional
        inexact proximal maps on a schedule: the :math:`k`-th proximal map (counted since
        :meth:`reset`) runs at most :math:`m_k` inner iterations,
        ``InnerSchedule(start, stop, length=50, kind="linear")``
        (:class:`~cil_genreg.latent.InnerSchedule`), or ``callable(k)``; it replaces
        ``max_iteration`` and ``inexact_max_iteration`` for proximal maps (the tolerance still
        follows ``adaptive_tolerance``). None (default): no schedule.
    precision : {"float32", "bfloat16", "float16"}
        the generator's forward pass in float32 (default) or under autocast in bfloat16 (CPU,
        CUDA) or float16 (CUDA only); see :class:`~cil_genreg.latent.GeneratorAdapter`.
    seed : int, optional
        seeds the random restarts.
    device : str, optional
        "cpu" or "cuda[:k]"; default the generator's.
    threads : int, "auto" or None
        CPU threads torch uses in the latent step (restored afterwards); default ``"auto"``:
        one thread for small batches (fastest for the many small passes of a latent step),
        torch's setting for large ones (see :class:`~cil_genreg.latent.GeneratorAdapter`);
        None leaves torch's setting.
    latent_coupling : float
        :math:`\lambda_z \ge 0`: for a volume (slices, H, W), couple neighbouring slices'
        latents, :math:`R(x) = \min_{z_0..z_{S-1}} \sum_k [D(x_k, G(z_k)) + c\|z_k\|^2]
        + \lambda_z \sum_k \|z_{k+1} - z_k\|^2`, so that the volume stays consistent along
        z; every latent step then solves all slices as one problem
        (:class:`~cil_genreg.latent.LatentChain`). 0 (default): slice by slice, independently.
    split_sum : callable, optional
        for a slab of a volume split over processes: ``split_sum([a, b]) -> [A, B]`` sums
        numbers over the processes (e.g. :func:`cil_genreg.utilities.distributed.total`), so that
        ``adaptive_tolerance`` follows the whole volume and every slab solves to the same tolerance
        as in one process. Every process must then call the regulariser equally often.

    Attributes
    ----------
    latent : numpy.ndarray or None
        the :math:`z^*` (B, d) of the last evaluation, gradient or proximal map (B = 1 for a 2D
        image, the number of slices for a volume); :meth:`reset` forgets it.
    stats : SolverStats
        counters of the latent solver (solves, iterations, generator calls, seconds).
    """

    PRIMAL = "primal"
    CONJUGATE = "conjugate"
    INITS = ("auto", "zeros", "encoder")
    LATENT_STARTS = ("warm", "encoder", "warm+encoder")

    def __init__(self, generator, latent_dim=None, geometry=None, *, optimiser="auto",
                 max_iteration=50, tolerance=1e-6, adaptive_tolerance=True, tolerance_max=1e-3,
                 inexact_max_iteration=3, restarts=0, warm_start=True, init="auto", seed=None,
                 device=None, lr=None, threads="auto", latent_coupling=0.0, split_sum=None,
                 latent_start="warm", inner_schedule=None, precision="float32"):
        super().__init__()
        self.split_sum = split_sum
        self.latent_coupling = check_non_negative(latent_coupling, "latent_coupling")
        self._boundary = (None, None)
        self.solver = LatentSolver(generator, latent_dim, optimiser=optimiser,
                                   max_iter=max_iteration, tol=tolerance, lr=lr,
                                   restarts=restarts, warm_start=warm_start, seed=seed,
                                   device=device, threads=threads, precision=precision)
        if init not in self.INITS:
            raise ValueError(f"init must be one of {self.INITS}, got {init!r}")
        if latent_start not in self.LATENT_STARTS:
            raise ValueError(f"latent_start must be one of {self.LATENT_STARTS}, got "
                             f"{latent_start!r}")
        encode = getattr(self.generator, "encode", None)
        for name, value in (("init", init), ("latent_start", latent_start)):
            if "encoder" in value and encode is None:
                raise ValueError(f"{name}={value!r} but {type(self.generator).__name__} has no "
                                 f"encode method (a GAN): use {name}="
                                 f"{'zeros' if name == 'init' else 'warm'!r}.")
        self.latent_start = latent_start
        self.inner_schedule = as_schedule(inner_schedule)
        self._prox_count = 0
        self._use_encoder = encode is not None and init in ("auto", "encoder")
        if geometry is not None:
            self.solver.adapter.check_image_shape(geometry.shape, "geometry")
        self.geometry = geometry
        self.adaptive_tolerance = bool(adaptive_tolerance)
        self.tolerance_max = max(float(tolerance_max), self.solver.tol)
        if int(inexact_max_iteration) < 1:
            raise ValueError(f"inexact_max_iteration must be a positive integer, got "
                             f"{inexact_max_iteration}")
        self.inexact_max_iteration = int(inexact_max_iteration)
        self._latent = None
        self._last_like = None
        self._previous_target = None

    # -- what users read -------------------------------------------------------------------
    @property
    def generator(self):
        return self.solver.adapter.module

    @property
    def latent_dim(self):
        return self.solver.latent_dim

    @property
    def image_shape(self):
        return self.solver.adapter.image_shape

    @property
    def device(self):
        return self.solver.device

    @property
    def latent(self):
        return None if self._latent is None else self._latent.cpu().numpy().copy()

    @property
    def stats(self):
        return self.solver.stats

    def reset(self):
        """Forget the latent :math:`z^*` found so far (warm starts and curvature included), so
        that the next latent step starts afresh from ``init``.

        Returns
        -------
        None
        """
        self.solver.reset()
        self._latent = None
        self._previous_target = None
        self._prox_count = 0

    def warm_state(self):
        """What the next latent step starts from (warm latent, curvature, the last target of
        ``adaptive_tol``), to be put back with :meth:`set_warm_state`: a caller that alternates
        between problems (e.g. the shifted tilings of a patch prior) keeps one state for each.

        Returns
        -------
        tuple
            opaque.
        """
        return self.solver.warm_state(self.PRIMAL), self._previous_target

    def set_warm_state(self, state):
        """Restore a state returned by :meth:`warm_state`; ``None`` starts afresh (as
        :meth:`reset`, but :attr:`latent` is kept).

        Parameters
        ----------
        state : tuple or None

        Returns
        -------
        None
        """
        solver_state, previous = (None, None) if state is None else state
        self.solver.set_warm_state(solver_state, self.PRIMAL)
        self._previous_target = previous

    def set_latent_boundary(self, before=None, after=None):
        r"""Fixed latents of the slices just outside this volume, for a slab of a larger
        volume (e.g. split over ranks): the chain term gains
        :math:`\lambda_z(\|z_0 - z_{\text{before}}\|^2 + \|z_{\text{after}} - z_{S-1}\|^2)`.
        Needs ``latent_coupling > 0`` to have an effect.

        Parameters
        ----------
        before, after : array_like, optional
            (d,) latents; None for a volume's own first / last slice.

        Returns
        -------
        None
        """
        d = self.latent_dim
        ends = []
        for name, b in (("before", before), ("after", after)):
            if b is not None:
                b = torch.as_tensor(b, dtype=torch.float32).reshape(-1)
                if b.numel() != d:
                    raise ValueError(f"the boundary latent {name!r} must have {d} entries (the "
                                     f"latent dimension), got {b.numel()}")
            ends.append(b)
        self._boundary = tuple(ends)

    def _coupling(self):
        if self.latent_coupling == 0:
            return None
        return LatentChain(self.latent_coupling, *self._boundary)

    def generated_image(self, out=None):
        r""":math:`G(z^*)` for the last latent :math:`z^*` found.

        Parameters
        ----------
        out : DataContainer, optional
            filled in place and returned.

        Returns
        -------
        DataContainer
            like the last input of the value, gradient or proximal map.

        Raises
        ------
        RuntimeError
            when no latent has been found yet.
        """
        return self._to_container(self._decoded_latent(), self._last_like, out)

    def _decoded_latent(self):
        """The generator's output (all its channels) at the last latent; RuntimeError if none."""
        if self._latent is None:
            raise RuntimeError("no latent found yet: call the regulariser, its gradient or its "
                               "proximal map first.")
        with torch.inference_mode():
            return self.solver.adapter(self._latent)

    # -- DataContainer <-> batch -----------------------------------------------------------
    def _to_batch(self, x, what="x", finite=True):
        check_image(x, what)
        if self.geometry is not None and getattr(x, "geometry", None) is not None \
                and x.geometry != self.geometry:
            raise ValueError(f"{what} has geometry\n{x.geometry}\nbut this regulariser was "
                             f"built for\n{self.geometry}")
        self.solver.adapter.check_image_shape(x.shape, what)
        t = as_tensor(x, device=self.device)
        if finite and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{what} contains NaN or Inf values: check the data and the step "
                             "sizes of the algorithm (a diverging iteration gives these).")
        return t.reshape(-1, 1, *self.image_shape)

    def _to_container(self, t, like, out=None):
        check_out(out, like)
        if out is None:
            geometry = getattr(like, "geometry", None)
            out = geometry.allocate(None) if geometry is not None else like.copy()
        return from_tensor(t, out=out)

    def __rmul__(self, scalar):
        """``lam * R``: CIL's scaled function, λ checked (:func:`weighted`)."""
        return weighted(self, scalar)

    @staticmethod
    def _check_tau(tau):
        try:
            return check_positive(tau, "the step size tau")
        except ValueError as err:
            raise InputError(f"{err} The proximal map's tau is the algorithm's step size times "
                             "the weight λ of λ * R: both must be positive finite numbers.") \
                from None

    def _initial_latent(self, target, key):
        """(z0, candidates) of this latent step: the encoder's code of the target when there
        is no warm start (``init``), else as ``latent_start`` says."""
        if key != self.PRIMAL:
            return None, None
        warm = self.solver.warm_latent(key) if self.solver.warm_start else None
        if warm is None or warm.shape[0] != target.shape[0]:
            return (encode_mean(self.generator, target) if self._use_encoder else None), None
        if self.latent_start == "warm":
            return None, None
        code = encode_mean(self.generator, target)
        if self.latent_start == "encoder":
            self.solver.set_warm_latent(code, key)  # the curvature stays warm
            return None, None
        return None, code

    def _inner_options(self, target, key, proximal):
        """The tolerance and iteration cap of this latent step: ``adaptive_tolerance``, and
        ``inner_schedule`` for a proximal map."""
        tol, cap = self._adaptive_options(target, key, proximal)
        if self.inner_schedule is not None and proximal and key == self.PRIMAL:
            cap, self._prox_count = int(self.inner_schedule(self._prox_count)), \
                self._prox_count + 1
        return tol, cap

    def _adaptive_options(self, target, key, proximal):
        """The tolerance and iteration cap of ``adaptive_tolerance``."""
        if not self.adaptive_tolerance or key != self.PRIMAL:
            return self.solver.tol, None
        previous, self._previous_target = self._previous_target, target.clone()
        if previous is None or previous.shape != target.shape:
            tol = self.tolerance_max if proximal else self.solver.tol
        else:
            sums = [(target - previous).square().sum().item(), target.square().sum().item()]
            if self.split_sum is not None:  # a slab of a volume: measure the whole volume's move
                sums = self.split_sum(sums)
            moved = (sums[0] / max(sums[1], 1e-24)) ** 0.5
            tol = min(self.tolerance_max, max(self.solver.tol, moved ** 2))
        if tol >= self.tolerance_max:
            return tol, min(self.inexact_max_iteration, self.solver.max_iter)
        return tol, None

    def _check_conjugate_mu(self):
        r"""The conjugate's latent maximisation needs the coercive term :math:`\mu\|z\|^2`."""
        if not self.mu > 0:
            raise ValueError(
                f"{type(self).__name__}.convex_conjugate needs mu > 0, got mu={self.mu}: with "
                "mu = 0 it is sup_z <G(z), s>, a latent maximisation with no coercive term "
                "(unbounded, or with no maximiser the solver can find), so no meaningful value "
                "exists. Use mu > 0 for the conjugate (e.g. PDHG's dual objective); the value, "
                "proximal map (and gradient, where there is one) work with mu = 0.")

    def _solve(self, misfit, target, latent_weight, key=PRIMAL, like=None, proximal=False):
        z0, candidates = self._initial_latent(target, key)
        tol, max_iter = self._inner_options(target, key, proximal)
        solution = self.solver.solve(misfit, target, latent_weight, z0=z0, key=key, tol=tol,
                                     coupling=self._coupling(), max_iter=max_iter,
                                     candidates=candidates)
        if key == self.PRIMAL:
            self._latent = solution.z
            self._last_like = like
        return solution
