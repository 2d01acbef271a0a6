r"""Total variation along the slice axis only, beside a 2D generative prior, for a volume:

.. math:: \min_x \|Ax - y\|_2^2 + \alpha_z \|D_z x\|_1 + \lambda R_G(x),

:math:`D_z` the forward difference between neighbouring slices (CIL's
``FiniteDifferenceOperator`` on the ``vertical`` axis, Neumann boundary), :math:`R_G` a
generative regulariser applied slice by slice (one batch). In-plane structure comes from the
generator, consistency along z from the TV term. Solved by CIL's PDHG with
:math:`K = [A; D_z]`, :math:`f = [\|\cdot - y\|^2, \alpha_z\|\cdot\|_1]`, :math:`g = \lambda R_G`
(its proximal map is the regulariser's own, batched over slices).
"""
from cil.optimisation.algorithms import PDHG
from cil.optimisation.functions import BlockFunction, L1Norm, L2NormSquared
from cil.optimisation.operators import BlockOperator, FiniteDifferenceOperator


def z_difference_operator(geometry):
    r""":math:`(D_z x)_k = x_{k+1} - x_k` (0 at the last slice): CIL's
    ``FiniteDifferenceOperator`` along ``vertical`` with Neumann boundary.

    Parameters
    ----------
    geometry : ImageGeometry
        of a volume (vertical, horizontal_y, horizontal_x).

    Returns
    -------
    FiniteDifferenceOperator

    Raises
    ------
    ValueError
        when the geometry has no ``vertical`` axis of at least 2 slices.
    """
    labels = [str(getattr(lab, "value", lab)) for lab in geometry.dimension_labels]
    if "vertical" not in labels or geometry.shape[labels.index("vertical")] < 2:
        raise ValueError(f"TV along z needs a volume with a 'vertical' axis of at least 2 "
                         f"slices; the geometry has labels {labels} and shape {geometry.shape}.")
    return FiniteDifferenceOperator(geometry, direction="vertical", bnd_cond="Neumann")


def z_tv_pdhg(operator, data, regulariser, alpha_z, initial=None, gamma=None, **kwargs):
    r"""A CIL PDHG for :math:`\min_x \|Ax - y\|_2^2 + \alpha_z\|D_z x\|_1 + g(x)`.

    Parameters
    ----------
    operator : LinearOperator
        :math:`A`, on a volume geometry (e.g. ``SliceWiseOperator`` or a 3D projector).
    data : AcquisitionData
        :math:`y`.
    regulariser : Function
        :math:`g`, e.g. ``lam * SoftGenerativeRegulariser(G, mu=1e-3)`` (with or without
        ``latent_coupling``); PDHG calls its proximal map.
    alpha_z : float
        :math:`\alpha_z \ge 0`, weight of the TV along z (0: PDHG without the TV block).
    initial : ImageData, optional
        the start (e.g. FBP).
    gamma : float, optional
        step balance: :math:`\tau = \gamma / \|K\|`, :math:`\sigma = 1 / (\gamma\|K\|)`
        (:math:`\sigma\tau\|K\|^2 = 1`); default 1 (CIL's choice).
    **kwargs
        passed to ``PDHG`` (e.g. ``update_objective_interval``).

    Returns
    -------
    PDHG
        ready to ``run(max_iteration)``.

    Raises
    ------
    ValueError
        for a negative ``alpha_z`` or a geometry without slices.
    """
    if not alpha_z >= 0:
        raise ValueError(f"alpha_z must be >= 0, got {alpha_z!r}")
    Dz = z_difference_operator(operator.domain_geometry())
    if alpha_z == 0:  # no TV block (0 * L1Norm has no proximal map of its conjugate)
        K, f = operator, L2NormSquared(b=data)
    else:
        K = BlockOperator(operator, Dz)
        f = BlockFunction(L2NormSquared(b=data), float(alpha_z) * L1Norm())
    norm = K.norm()
    gamma = 1.0 if gamma is None else float(gamma)
    return PDHG(f=f, g=regulariser, operator=K, tau=gamma / norm, sigma=1.0 / (gamma * norm),
                initial=initial, **kwargs)
