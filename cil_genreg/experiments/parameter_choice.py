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
        the (λ, :math:`\|A x_\lambda - y\|^2`) evaluated, largest λ first.
    """
    lam: float
    x: object
    bound: float
    satisfied: bool
    table: list = field(default_factory=list)


def discrepancy_principle(reconstruct, A, y, sigma, lambdas, tau=1.0):
    r"""Morozov's discrepancy principle: the **largest** λ whose reconstruction fits the data
    to the noise level,

    .. math:: \|A x_\lambda - y\|_2^2 \le \tau\, m\, \sigma^2,

    with :math:`m` the number of data and :math:`\sigma` the noise's standard deviation (as
    the paper's code chooses λ). Works for any method: ``reconstruct(lam) -> x``.

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

    Returns
    -------
    DiscrepancyChoice

    Raises
    ------
    ValueError
        when ``lambdas`` is empty or ``sigma`` is negative.
    """
    lambdas = sorted({float(lam) for lam in lambdas}, reverse=True)
    if not lambdas:
        raise ValueError("lambdas is empty: give at least one candidate weight.")
    if not sigma >= 0:
        raise ValueError(f"sigma must be a non-negative number, got {sigma!r}")
    bound = tau * y.size * sigma ** 2
    table, best = [], None
    for lam in lambdas:
        x = reconstruct(lam)
        residual = (A.direct(x) - y).squared_norm()
        table.append((lam, float(residual)))
        if residual <= bound:
            return DiscrepancyChoice(lam, x, bound, True, table)
        if best is None or residual < best[1]:
            best = (lam, residual, x)
    return DiscrepancyChoice(best[0], best[2], bound, False, table)
