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

from cil.optimisation.algorithms import PDHG
from cil.optimisation.functions import (BlockFunction, IndicatorBox, L2NormSquared,
                                        MixedL21Norm, ZeroFunction)
from cil.optimisation.operators import BlockOperator, GradientOperator, IdentityOperator

from .functions import GenerativeRegulariser, PatchGenerativeRegulariser


def _check_weight(name, value):
    if not isinstance(value, numbers.Real) or not value >= 0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}.")
    return float(value)


def hybrid_pdhg(A, y, regulariser, lambda_tv, lambda_g, operator=None, nonnegative=False,
                initial=None, sigma=None, tau=None, **pdhg_options):
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
    sigma, tau : float, optional
        PDHG's step sizes; CIL's defaults (:math:`\sigma = \tau = 1/\|K\|`) when None.
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
    return PDHG(f=BlockFunction(*functions), g=g, operator=BlockOperator(*operators),
                initial=initial, sigma=sigma, tau=tau, **pdhg_options)


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
