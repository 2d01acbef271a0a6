r"""Choosing the regularisation weight λ without the ground truth."""
from dataclasses import dataclass, field


@dataclass
class DiscrepancyChoice:
    r"""What :func:`discrepancy_principle` chose.

    Parameters
    ----------
    lam : float
        the chosen λ.
    x : DataContainer
        its reconstruction.
    bound : float
        :math:`\tau m \sigma^2`.
    satisfied : bool
        whether some λ met the bound (if none did, the λ with the smallest residual is
        returned).
    table : list of (float, float)
        the (λ, :math:`\|A x_\lambda - y\|_W^2`) evaluated, largest λ first (:math:`W = I`
        without weights).
    """
    lam: float
    x: object
    bound: float
    satisfied: bool
    table: list = field(default_factory=list)


def discrepancy_principle(reconstruct, A, y, sigma, lambdas, tau=1.0, weights=None):
    r"""Morozov's discrepancy principle: the **largest** λ whose reconstruction fits the data
    to the noise level,

    .. math:: \|A x_\lambda - y\|_2^2 \le \tau\, m\, \sigma^2,

    with :math:`m` the number of data and :math:`\sigma` the noise's standard deviation (as
    the paper's code chooses λ). Works for any method: ``reconstruct(lam) -> x``.

    With ``weights`` :math:`w` (the weighted data term, :mod:`cil_genreg.physics.weights`) the
    residual is weighted the same way,

    .. math:: \|A x_\lambda - y\|_W^2 = \sum_i w_i (A x_\lambda - y)_i^2
              \le \tau\, m\, \sigma^2,

    and :math:`\sigma` must be the noise of a datum of **weight 1**, :math:`w_i
    \mathrm{Var}\, y_i \approx \sigma^2` (``Measured.weighted_sigma``; for the Poisson
    weights of mean 1, :math:`\sigma^2 = 1 / (\bar N s^2)`): each weighted residual then has
    about the same variance and the sum about :math:`m\sigma^2`. The unweighted
    :math:`\sigma` (the root mean variance) would set the bound far too high at low dose.

    The λ are tried from the largest down, and the search stops at the first that fits (the
    residual grows with λ for a convex regulariser; for the nonconvex generative ones this
    is the usual heuristic).

    Parameters
    ----------
    reconstruct : callable
        ``reconstruct(lam)`` returns a DataContainer in ``A``'s domain.
    A : LinearOperator
        the forward operator.
    y : DataContainer
        data.
    sigma : float
        noise standard deviation per datum.
    lambdas : iterable of float
        candidate weights.
    tau : float
        safety factor :math:`\tau` (≥ 1 is usual).
    weights : DataContainer, optional
        :math:`w` of the weighted residual (default None: unweighted); ``sigma`` is then the
        noise of a datum of weight 1.

    Returns
    -------
    DiscrepancyChoice

    Raises
    ------
    ValueError
        when ``lambdas`` is empty, ``sigma`` is negative or ``weights`` do not fit ``y``.
    """
    from ..physics.weights import check_weights
    lambdas = sorted({float(lam) for lam in lambdas}, reverse=True)
    if not lambdas:
        raise ValueError("lambdas is empty: give at least one candidate weight.")
    if not sigma >= 0:
        raise ValueError(f"sigma must be a non-negative number, got {sigma!r}")
    weights = check_weights(weights, y.geometry if y.geometry is not None else y)
    bound = tau * y.size * sigma ** 2
    table, best = [], None
    for lam in lambdas:
        x = reconstruct(lam)
        r = A.direct(x) - y
        residual = r.squared_norm() if weights is None else r.dot(r * weights)
        table.append((lam, float(residual)))
        if residual <= bound:
            return DiscrepancyChoice(lam, x, bound, True, table)
        if best is None or residual < best[1]:
            best = (lam, residual, x)
    return DiscrepancyChoice(best[0], best[2], bound, False, table)
