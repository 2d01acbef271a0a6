r"""The image block of the soft posterior's Gibbs sampler: exact draws of the Gaussian

.. math:: x \mid g, y \sim N(m, Q^{-1}), \qquad Q = \frac{A^TA}{\sigma^2} + \frac{I}{\tau^2},
          \qquad Q m = \frac{A^Ty}{\sigma^2} + \frac{g}{\tau^2},

(:math:`g = G(w)`) by perturbation–optimisation (Papandreou & Yuille 2010; Orieux, Féron &
Giovannelli 2012): perturb the data and the image prior's mean,

.. math:: y' = y + \sigma\varepsilon_1, \qquad g' = g + \tau\varepsilon_2, \qquad
          \varepsilon_{1,2} \sim N(0, I),

and solve :math:`Q x = A^Ty'/\sigma^2 + g'/\tau^2`. The right-hand side is Gaussian with mean
:math:`Qm` and covariance :math:`A^TA/\sigma^2 + I/\tau^2 = Q`, so :math:`x` has mean :math:`m`
and covariance :math:`Q^{-1} Q Q^{-1} = Q^{-1}`: the draw is exact when the solve is. It is
solved by conjugate gradients on :math:`\sigma^2 Q = A^TA + \rho I`, :math:`\rho =
\sigma^2/\tau^2`, in float64 with CIL's ``A.direct`` / ``A.adjoint`` (float32) applied to each
search direction, warm-started from the previous draw, to a relative residual ``tolerance``.
"""
import warnings

import numpy as np

from ..utilities.validation import check_int, check_positive


def conjugate_gradient(apply, b, x0, tolerance, max_iterations):
    r"""Solve :math:`M x = b` for a symmetric positive definite :math:`M` by conjugate gradients
    from ``x0``, until :math:`\|b - Mx\| \le` ``tolerance`` :math:`\|b\|`.

    Parameters
    ----------
    apply : callable
        ``apply(v) -> M v`` on float64 arrays.
    b, x0 : numpy.ndarray
    tolerance : float
    max_iterations : int

    Returns
    -------
    (numpy.ndarray, int, float)
        the solution, the iterations run and the relative residual reached.
    """
    x = np.array(x0, dtype=np.float64)
    r = b - apply(x)
    norm_b = float(np.linalg.norm(b)) or 1.0
    rr = float(np.vdot(r, r))
    p = r.copy()
    k = 0
    while np.sqrt(rr) > tolerance * norm_b and k < max_iterations:
        mp = apply(p)
        alpha = rr / float(np.vdot(p, mp))
        x += alpha * p
        r -= alpha * mp
        rr_new = float(np.vdot(r, r))
        p = r + (rr_new / rr) * p
        rr = rr_new
        k += 1
    return x, k, np.sqrt(rr) / norm_b


class GaussianImageBlock:
    r"""Exact draws of :math:`x \mid g, y \sim N(m, Q^{-1})` by perturbation–optimisation
    (module docstring), on numpy arrays of the image's shape, with a CIL operator :math:`A`.

    Parameters
    ----------
    A : cil LinearOperator
        the forward operator (2D image to data).
    y : DataContainer
        the data, in ``A``'s range.
    sigma, tau : float
        the noise's and the image model's standard deviations, finite and > 0.
    tolerance : float
        CG's relative residual, > 0.
    max_iterations : int
        CG's iterations at most per draw (a warning when reached: the draw is then inexact).
    seed : int, optional
        seeds the perturbations.

    Attributes
    ----------
    iterations : list of int
        CG's iterations of each solve.
    worst_residual : float
        the largest relative residual a solve ended with.
    """

    def __init__(self, A, y, sigma, tau, tolerance=1e-6, max_iterations=1000, seed=None):
        self.A = A
        self.sigma = check_positive(sigma, "sigma (the noise's standard deviation)")
        self.tau = check_positive(tau, "tau (the image's deviation from G(w))")
        self.tolerance = check_positive(tolerance, "tolerance (of the CG solve)")
        self.max_iterations = check_int(max_iterations, "max_iterations (of CG)", low=1)
        self.rho = (self.sigma / self.tau) ** 2
        self.rng = np.random.default_rng(seed)
        self._x = A.domain_geometry().allocate(None)
        self._data = A.range_geometry().allocate(None)
        self.y = np.asarray(y.as_array(), np.float64)
        self.aty = self._adjoint(self.y)
        self.iterations = []
        self.worst_residual = 0.0

    def _adjoint(self, d):
        self._data.fill(d.astype(np.float32))
        return np.asarray(self.A.adjoint(self._data).as_array(), np.float64)

    def _normal(self, v):
        r""":math:`(A^TA + \rho I) v`."""
        self._x.fill(v.astype(np.float32))
        self.A.direct(self._x, out=self._data)
        back = np.asarray(self.A.adjoint(self._data).as_array(), np.float64)
        return back + self.rho * v

    def solve(self, data_term, image_term, x0):
        r"""The solution of :math:`(A^TA + \rho I) x = A^T d + \rho h`, from ``x0``.

        Parameters
        ----------
        data_term : numpy.ndarray
            :math:`A^T d` (image shape).
        image_term : numpy.ndarray
            :math:`h` (image shape).
        x0 : numpy.ndarray
            the start (image shape).

        Returns
        -------
        numpy.ndarray
            float64, of the image's shape.
        """
        b = data_term + self.rho * image_term
        x, k, residual = conjugate_gradient(self._normal, b, x0, self.tolerance,
                                            self.max_iterations)
        self.iterations.append(k)
        self.worst_residual = max(self.worst_residual, residual)
        if residual > self.tolerance:
            warnings.warn(f"the image block's CG stopped at relative residual {residual:.2g} "
                          f"after {k} iterations (tolerance {self.tolerance:g}): the draw is "
                          "inexact; raise max_iterations", RuntimeWarning, stacklevel=3)
        if not np.isfinite(x).all():
            raise FloatingPointError("the image block's CG solve returned NaN or Inf.")
        return x

    def mean(self, g, x0):
        """The conditional mean :math:`m` for the image prior's mean ``g`` (no perturbation)."""
        return self.solve(self.aty, np.asarray(g, np.float64), x0)

    def draw(self, g, x0):
        """One exact draw of :math:`x \\mid g, y`, CG warm-started from ``x0``.

        Parameters
        ----------
        g : numpy.ndarray
            :math:`G(w)`, of the image's shape.
        x0 : numpy.ndarray
            the start of the solve (the previous draw).

        Returns
        -------
        numpy.ndarray
            float64, of the image's shape.
        """
        perturbed = self.y + self.sigma * self.rng.standard_normal(self.y.shape)
        g = np.asarray(g, np.float64)
        image = g + self.tau * self.rng.standard_normal(g.shape)
        return self.solve(self._adjoint(perturbed), image, x0)

    def data_misfit(self, x):
        r""":math:`\|Ax - y\|^2 / 2\sigma^2`."""
        self._x.fill(np.asarray(x, np.float32))
        residual = np.asarray(self.A.direct(self._x).as_array(), np.float64) - self.y
        return float(np.vdot(residual, residual)) / (2.0 * self.sigma ** 2)
