r"""TV and a generative regulariser together, composed from CIL's own blocks:

.. math:: \min_x \|Ax - y\|_2^2 + \lambda_{TV}\,\|\nabla x\|_{2,1}
          + \lambda_G\, R_G(P x) + g(x), \qquad g = 0 \text{ or } \iota_{x \ge 0},

solved by PDHG with :math:`K = [A;\ \nabla;\ P]` (a CIL ``BlockOperator``) and
:math:`f = [\|\cdot - y\|^2,\ \lambda_{TV}\|\cdot\|_{2,1},\ \lambda_G R_G]` (a ``BlockFunction``).
PDHG calls only the proximal map of :math:`f^*`, which CIL computes from the proximal map of
each block by Moreau's identity, :math:`\text{prox}_{\sigma f^*}(u) = u - \sigma
\text{prox}_{f/\sigma}(u/\sigma)`: the generative block needs nothing but the regulariser's
own (batched) proximal map, whatever :math:`P` is — the identity (the generator makes images of
the reconstruction's size), the exact moving tiling of a
:class:`~cil_genreg.PatchGenerativeRegulariser`, or overlapping patches
(:class:`~cil_genreg.PatchOperator` with a stride below the patch size). TV keeps the edges,
the generator the shapes and textures it learnt. With a nonlinear generator the problem is
nonconvex: PDHG runs with it (as FISTA does with the single regularisers) without a guarantee.
"""
import numbers

import numpy as np
from cil.framework import BlockDataContainer
from cil.optimisation.algorithms import PDHG
from cil.optimisation.functions import (BlockFunction, IndicatorBox, L2NormSquared,
                                        MixedL21Norm, ZeroFunction)
from cil.optimisation.operators import BlockOperator, GradientOperator, IdentityOperator

from ..functions import (GenerativeRegulariser, PatchGenerativeRegulariser,
                        SoftGenerativeRegulariser)
from ..functions.patch import patch_prior_for
from ..physics.weights import check_weights


def _check_weight(name, value):
    if not isinstance(value, numbers.Real) or not value >= 0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}.")
    return float(value)


def hybrid_pdhg(A, y, regulariser, lambda_tv, lambda_g, operator=None, nonnegative=False,
                initial=None, sigma=None, tau=None, preconditioned=True, **pdhg_options):
    r"""A CIL PDHG for TV plus a generative regulariser,

    .. math:: \min_x \|Ax - y\|_2^2 + \lambda_{TV}\|\nabla x\|_{2,1} + \lambda_G R_G(Px) + g(x)

    with :math:`K = \text{BlockOperator}(A, \nabla, P)`,
    :math:`f = \text{BlockFunction}(\|\cdot - y\|^2, \lambda_{TV}\|\cdot\|_{2,1}, \lambda_G R_G)`
    and :math:`g = 0` or the non-negativity indicator. With :math:`\lambda_G = 0` the generative
    row is left out and this is CIL's TV-PDHG; with :math:`\lambda_{TV} = 0` the TV row is left
    out.

    Parameters
    ----------
    A : LinearOperator
        the forward operator (e.g. ``cil.plugins.astra.ProjectionOperator``).
    y : AcquisitionData
        the data.
    regulariser : GenerativeRegulariser or PatchGenerativeRegulariser
        :math:`R_G`: of the reconstruction's size (:math:`P = I`), a patch prior (its exact
        moving tiling, :math:`P = I` here), or of patches cut by ``operator``.
    lambda_tv, lambda_g : float
        :math:`\lambda_{TV}, \lambda_G \ge 0`.
    operator : LinearOperator, optional
        :math:`P`, e.g. ``PatchOperator(ig, p, stride=p // 2)`` for overlapping patches;
        default the identity.
    nonnegative : bool
        :math:`g = \iota_{x \ge 0}` instead of 0.
    initial : ImageData, optional
        the start (default zeros), e.g. an FBP or TV image.
    sigma, tau : float or DataContainer, optional
        PDHG's step sizes; when both are None, :func:`diagonal_steps` (``preconditioned``) or
        CIL's defaults (:math:`\sigma = \tau = 1/\|K\|`).
    preconditioned : bool
        the diagonal step sizes of :func:`diagonal_steps` when no steps are given.
    **pdhg_options
        passed to :class:`~cil.optimisation.algorithms.PDHG` (e.g.
        ``update_objective_interval``; the dual objective needs the regulariser's convex
        conjugate, a latent maximisation, so keep the interval large).

    Returns
    -------
    PDHG
        set up, not run: call ``.run(n)``; ``.solution`` is the image.

    Raises
    ------
    TypeError
        when ``regulariser`` is not a generative regulariser (and ``lambda_g > 0``).
    ValueError
        for a negative weight, or both weights zero.
    """
    lambda_tv = _check_weight("lambda_tv", lambda_tv)
    lambda_g = _check_weight("lambda_g", lambda_g)
    if lambda_tv == 0 and lambda_g == 0:
        raise ValueError("lambda_tv and lambda_g are both 0: nothing regularises; use "
                         "cil.optimisation.algorithms.CGLS for plain least squares.")
    if lambda_g > 0 and not isinstance(regulariser, (GenerativeRegulariser,
                                                     PatchGenerativeRegulariser)):
        raise TypeError("regulariser must be a cil_genreg generative regulariser (soft, range, "
                        f"sparse or a patch prior), got {type(regulariser).__name__}.")
    ig = A.domain_geometry()
    operators, functions = [A], [L2NormSquared(b=y)]
    if lambda_tv > 0:
        operators.append(GradientOperator(ig))
        functions.append(lambda_tv * MixedL21Norm())
    if lambda_g > 0:
        operators.append(IdentityOperator(ig) if operator is None else operator)
        functions.append(lambda_g * regulariser)
    g = IndicatorBox(lower=0.0) if nonnegative else ZeroFunction()
    pdhg_options.setdefault("update_objective_interval", 10 ** 9)
    if sigma is None and tau is None and preconditioned:
        sigma, tau = diagonal_steps(operators)
        pdhg_options.setdefault("check_convergence", False)
    return PDHG(f=BlockFunction(*functions), g=g, operator=BlockOperator(*operators),
                initial=initial, sigma=sigma, tau=tau, **pdhg_options)


def _absolute_sums(op, adjoint):
    """Row (``adjoint=False``) or column sums of :math:`|K|` for the blocks used here: the
    gradient's are bounded by 2 per row and 2 per column and direction; the others (projector,
    identity, patch operator) have non-negative entries, so :math:`K 1` and :math:`K^T 1`."""
    if isinstance(op, GradientOperator):
        return 2.0 * len(op.domain_geometry().shape) if adjoint else 2.0
    ones = (op.range_geometry() if adjoint else op.domain_geometry()).allocate(1.0)
    return op.adjoint(ones) if adjoint else op.direct(ones)


def diagonal_steps(operators):
    r"""PDHG's diagonal preconditioning (Pock & Chambolle 2011, :math:`\alpha = 1`) for
    :math:`K = [K_1; \dots; K_m]`:

    .. math:: \sigma_i = 1 / \textstyle\sum_j |K_{ij}|, \qquad
              \tau_j = 1 / \textstyle\sum_i |K_{ij}| ,

    which converges for convex :math:`f, g` whatever the scales of the blocks (a projector's
    norm is far larger than the gradient's, which with CIL's scalar default
    :math:`\sigma = \tau = 1/\|K\|` leaves the TV dual variable crawling towards its
    bound for hundreds of iterations).

    Parameters
    ----------
    operators : list of LinearOperator
        the rows of :math:`K`: projectors, ``GradientOperator``, identities, patch operators.

    Returns
    -------
    sigma : BlockDataContainer
        one entry per row (a number where it is constant: the gradient, an identity, patches).
    tau : ImageData
    """
    sigmas, tau = [], None
    for op in operators:
        rows = _absolute_sums(op, adjoint=False)
        if not isinstance(rows, float) and rows.max() == rows.min():
            # identity, tiles: a scalar, which the regularisers' proximal maps need
            rows = float(rows.max())
        if isinstance(rows, float):
            sigmas.append(1.0 / rows)
        else:
            arr = rows.as_array()
            rows.fill(np.where(arr > 1e-6, 1.0 / np.maximum(arr, 1e-6), 1.0).astype(np.float32))
            sigmas.append(rows)
        cols = _absolute_sums(op, adjoint=True)
        tau = cols if tau is None else tau + cols
    tau.fill((1.0 / np.maximum(tau.as_array(), 1e-6)).astype(np.float32))
    return BlockDataContainer(*sigmas), tau


def hybrid_objective(algorithm, x=None):
    r"""The primal objective :math:`f(Kx) + g(x)` of a PDHG set up by :func:`hybrid_pdhg` (at its
    current solution by default), without the dual objective PDHG's own ``update_objective``
    computes.

    Parameters
    ----------
    algorithm : PDHG
    x : ImageData, optional

    Returns
    -------
    float
    """
    x = algorithm.solution if x is None else x
    return float(algorithm.f(algorithm.operator.direct(x)) + algorithm.g(x))


def hybrid_fista(A, y, lambda_tv, lambda_g, generator, x0=None, iterations=100, mu=1e-3,
                 callbacks=None, weights=None, **solver_options):
    r"""TV + soft by CIL's FISTA (the demos' ``hybrid`` method), the other natural composition:
    the soft regulariser is smooth, so it joins the data term in FISTA's smooth part and TV is
    the proximal part,

    .. math:: f = \|Ax - y\|_W^2 + \lambda_G R_G(x), \qquad g = \lambda_{TV}\,\mathrm{TV}(x),
              \qquad \nabla R_G(x) = \textstyle\sum_i P_i^T 2(P_i x - G(z_i^*)) ,

    with :math:`R_G` on the whole image, or as the patch prior of a generator of smaller images,
    and :math:`W = I` unless ``weights`` are given. It converges in as many iterations as the
    single methods (100 in the demos), where :func:`hybrid_pdhg`, which also takes the
    non-smooth range and sparse regularisers and overlapping patches, needs several hundred.

    Parameters
    ----------
    A : LinearOperator
    y : AcquisitionData
    lambda_tv, lambda_g : float
        :math:`\lambda_{TV}, \lambda_G`.
    generator : torch.nn.Module
    x0 : ImageData, optional
        the start (e.g. the TV image).
    iterations : int
        FISTA iterations.
    mu : float
        :math:`\mu` of the soft regulariser.
    callbacks : list, optional
        CIL callbacks.
    weights : AcquisitionData, optional
        :math:`W` of the weighted data term :math:`\|Ax - y\|_W^2` (CIL's
        ``LeastSquares(A, y, weight=W)``; :mod:`cil_genreg.physics.weights`); the step is then
        :math:`1 / (2\|A\|^2 \max_i w_i + 2\lambda_G)`. Default None: unweighted.
    **solver_options
        latent solver options of :class:`SoftGenerativeRegulariser`.

    Returns
    -------
    ImageData

    Raises
    ------
    ValueError
        when ``lambda_tv`` is missing.
    """
    from cil.optimisation.algorithms import FISTA
    from cil.optimisation.functions import LeastSquares, TotalVariation
    if lambda_tv is None:
        raise ValueError("the hybrid method needs lambda_tv (the TV weight).")
    lambda_tv = _check_weight("lambda_tv", lambda_tv)
    lambda_g = _check_weight("lambda_g", lambda_g)
    R = patch_prior_for(SoftGenerativeRegulariser(generator, mu=mu, **solver_options),
                        A.domain_geometry())
    data = LeastSquares(A, y, weight=check_weights(weights, A.range_geometry()))
    step = 1.0 / (data.L + 2.0 * lambda_g)  # L = 2||A||^2 max w
    algo = FISTA(initial=x0 if x0 is not None else A.domain_geometry().allocate(0),
                 f=data + lambda_g * R,
                 g=lambda_tv * TotalVariation(max_iteration=10, warm_start=True),
                 step_size=step, update_objective_interval=iterations)
    algo.run(iterations, verbose=0, callbacks=callbacks)
    return algo.solution
