r"""DPIR (Zhang et al., *Plug-and-Play Image Restoration with Deep Denoiser Prior*, TPAMI 2021)
for tomography: Plug-and-Play half-quadratic splitting with a decreasing noise-level schedule,
as a CIL Algorithm (:class:`PlugAndPlayHQS`).

For the package's objective :math:`\|Ax - y\|^2 + \lambda R(x)`, half-quadratic splitting
minimises over :math:`(x, z)`

.. math:: \|Ax - y\|^2 + \mu\|x - z\|^2 + \lambda R(z)

by alternating

.. math:: x_{k+1} &= \underset{x}{\mathrm{argmin}}\; \|Ax - y\|^2 + \mu_k\|x - z_k\|^2
          \quad\Longleftrightarrow\quad (A^TA + \mu_k I)\,x_{k+1} = A^Ty + \mu_k z_k,

          z_{k+1} &= \underset{z}{\mathrm{argmin}}\; \mu_k\|x_{k+1} - z\|^2 + \lambda R(z)
          = \underset{z}{\mathrm{argmin}}\; \tfrac12\|z - x_{k+1}\|^2
          + \tfrac{\lambda}{2\mu_k} R(z) = \mathrm{prox}_{\frac{\lambda}{2\mu_k}R}(x_{k+1}).

That proximal map is the MAP denoiser of the prior :math:`e^{-R}` at the noise variance
:math:`\sigma_k^2 = \lambda / (2\mu_k)`
(:class:`~cil_genreg.functions.DenoiserPrior`: :math:`\mathrm{prox}_{\tau R} = D_{\sqrt\tau}`),
which DPIR replaces by a trained denoiser: :math:`z_{k+1} = D_{\sigma_k}(x_{k+1})`,
:math:`\mu_k = \lambda / (2\sigma_k^2)`. The factor 2 is this package's convention (a data term
:math:`\|Ax - y\|^2` without the :math:`\frac12`); deepinv's DPIR, with the data term
:math:`\frac12\|Ax - y\|^2` and the coupling :math:`\frac{1}{2\gamma_k}\|x - z\|^2`,
:math:`\gamma_k = \sigma_k^2 / (0.23\,\sigma_n^2)`, is this iteration at
:math:`\lambda = 0.46\,\sigma_n^2` (:math:`\sigma_n` the standard deviation of the data's noise).

**The schedule.** :math:`\sigma_k` falls geometrically (log-spaced, as DPIR's
``get_DPIR_params``) from :math:`\sigma_{max}` (DPIR: 49/255) to :math:`\sigma_{min}` over
:math:`K` iterations (DPIR: 8) and stays at :math:`\sigma_{min}` after them: early iterations
denoise strongly and keep little of the data (:math:`\mu_k` small), the last ones weigh the data
by :math:`\mu_K = \lambda / (2\sigma_{min}^2)`.

**σ_min and λ for CT.** DPIR ties its last noise level to the noise of the *image* it restores
(deblurring, super-resolution) and its λ to the data's noise, :math:`\lambda = 0.46\sigma_n^2`
here. A CT sinogram's noise reaches the image through the conditioning of :math:`A`, so the
image has no such noise level: :math:`\sigma_{min}` is a fixed level of the image (default
:data:`DPIR_SIGMA_MIN`, 2 % of a [0, 1] image: about the error of a good reconstruction) and
:math:`\lambda` is the one parameter, swept as the other methods' λ (a larger λ couples
:math:`x` more strongly to the denoised :math:`z` at every :math:`\sigma_k`, so the data
residual grows with it and the discrepancy principle can choose it). What matters is mostly
the final coupling :math:`\mu_K`: on a validation slice of the unseen CT patient (128², 30
angles, scanner physics at 1e4 photons) the best PSNR was the same within 0.1 dB for
:math:`\sigma_{min}` = 0.02 to 0.04, each at its best λ (0.01 to 0.03, near DPIR's
:math:`0.46\sigma_n^2` = 0.04), and DPIR's :math:`K` = 8 as good as 20.

**Solve the x-step.** :math:`A^TA + \mu_k I` has the condition number
:math:`(\|A\|^2 + \mu_k) / \mu_k`, about :math:`10^5` for a small λ at the first
:math:`\sigma_k`; CG stopped after a few iterations leaves :math:`x_{k+1}` near its warm start,
and the cap then regularises in λ's place: from a TV start and 20 CG iterations per x-step, the
PSNR on those slices kept rising as λ fell to 1e-4 (the TV image, denoised), and fell by 3 dB
at λ = 1e-4 once the x-steps were solved (100 iterations). The default cap is 100, with the
tolerance ending the later, better-conditioned x-steps early; :attr:`PlugAndPlayHQS.cg_history`
says whether each x-step reached it.

**Fixed points.** At a fixed :math:`\sigma` (``sigma_max == sigma_min``) and a denoiser that is
a proximal map, :math:`D_\sigma = \mathrm{prox}_{\sigma^2 R}`, HQS converges to the minimiser of
:math:`\|Ax - y\|^2 + \lambda\, {}^{\sigma^2}\!R(x)`, :math:`{}^{\sigma^2}\!R` the Moreau envelope
of :math:`R` of parameter :math:`\sigma^2`
(:math:`\min_z \|x - z\|^2 / (2\sigma^2) + R(z)`), which tends to :math:`R` as
:math:`\sigma \to 0`; the schedule's small final :math:`\sigma` makes it close to the MAP of
:math:`\|Ax - y\|^2 + \lambda R(x)`. A trained denoiser is no proximal map: the iteration then
runs without a guarantee, as any Plug-and-Play method.
"""
import math

import numpy as np
from cil.optimisation.algorithms import Algorithm

from ..functions.denoiser_prior import DenoiserPrior
from ..utilities.defaults import DPIR_ITERATIONS, DPIR_SIGMA_MAX, DPIR_SIGMA_MIN
from ..utilities.validation import check_domain, check_int, check_positive, check_real


def noise_schedule(sigma_max=DPIR_SIGMA_MAX, sigma_min=DPIR_SIGMA_MIN,
                   iterations=DPIR_ITERATIONS):
    r"""DPIR's noise levels: :math:`K` values log-spaced from :math:`\sigma_{max}` to
    :math:`\sigma_{min}`,

    .. math:: \sigma_k = \sigma_{max} (\sigma_{min} / \sigma_{max})^{k / (K - 1)},
              \qquad k = 0, \dots, K - 1

    (one value, :math:`\sigma_{max}`, for :math:`K = 1`).

    Parameters
    ----------
    sigma_max, sigma_min : float
        > 0, :math:`\sigma_{min} \le \sigma_{max}`.
    iterations : int
        :math:`K \ge 1`.

    Returns
    -------
    numpy.ndarray
        float64 (K,), decreasing.

    Raises
    ------
    ValueError
        for a noise level <= 0, :math:`\sigma_{min} > \sigma_{max}` or :math:`K < 1`.
    TypeError
        for a non-integer K.
    """
    sigma_max = check_positive(sigma_max, "sigma_max")
    sigma_min = check_positive(sigma_min, "sigma_min")
    k = check_int(iterations, "the number of schedule iterations K")
    if sigma_min > sigma_max:
        raise ValueError(f"sigma_min = {sigma_min:g} is above sigma_max = {sigma_max:g}: the "
                         "noise level decreases from sigma_max to sigma_min (equal values give "
                         "a fixed noise level).")
    if k == 1:
        return np.array([sigma_max])
    return np.logspace(math.log10(sigma_max), math.log10(sigma_min), k)


class PlugAndPlayHQS(Algorithm):
    r"""DPIR: Plug-and-Play half-quadratic splitting with a decreasing noise level,

    .. math:: x_{k+1} = (A^TA + \mu_k I)^{-1}(A^Ty + \mu_k z_k), \qquad
              z_{k+1} = D_{\sigma_k}(x_{k+1}), \qquad \mu_k = \frac{\lambda}{2\sigma_k^2},

    for :math:`\|Ax - y\|^2 + \lambda R(x)` with :math:`R` implicit in a trained denoiser
    :math:`D_\sigma`, :math:`\sigma_k` log-spaced from ``sigma_max`` to ``sigma_min`` over
    ``schedule_iterations`` iterations (:func:`noise_schedule`), then fixed at ``sigma_min``
    (the module docstring derives the constant and discusses the defaults). The x-step runs
    conjugate gradients warm-started from :math:`x_k`, at most ``cg_iterations``, until its
    residual :math:`r = A^T(y - Ax) + \mu_k(z_k - x)` bounds the error of :math:`x_{k+1}` below
    ``cg_tolerance`` of its norm: :math:`\|r\| / \mu_k \le` ``cg_tolerance``
    :math:`\cdot\|x\|` (the eigenvalues of :math:`A^TA + \mu_k I` are :math:`\ge \mu_k`). :attr:`solution` is
    :math:`z_k`, the denoised image (as DPIR returns); :attr:`data_step` is :math:`x_k`. There
    is no objective value: :meth:`update_objective` logs NaN, as
    :class:`~cil_genreg.functions.DenoiserPrior` does.

    >>> algo = PlugAndPlayHQS(initial=fbp, operator=A, data=y, denoiser=D, lam=3.0)
    >>> algo.run(8, callbacks=[ProgressCallback()])

    Parameters
    ----------
    initial : DataContainer, optional
        :math:`z_0 = x_0`, an image of ``operator``'s domain (e.g. the FBP); default zeros.
    operator : LinearOperator
        :math:`A`.
    data : DataContainer
        :math:`y`.
    denoiser : torch.nn.Module or DenoiserPrior
        :math:`D`, ``denoiser(v, sigma)`` (e.g. ``cil_genreg.models.load(path,
        kind="denoiser")``); a generator is refused with a TypeError naming what it is.
    lam : float
        :math:`\lambda > 0`.
    sigma_max : float, optional
        the first noise level; default DPIR's :data:`DPIR_SIGMA_MAX` (49/255), lowered to the
        top of the denoiser's training range when its checkpoint records one (the package's
        denoisers do: ``--sigma-range``), so that the denoiser never runs beyond it.
    sigma_min : float
        the last noise level, :math:`0 < \sigma_{min} \le \sigma_{max}` (default
        :data:`DPIR_SIGMA_MIN`; equal to ``sigma_max``: a fixed σ).
    schedule_iterations : int
        :math:`K \ge 1`, the iterations over which σ falls (default :data:`DPIR_ITERATIONS`);
        ``run(K)`` runs DPIR.
    cg_iterations : int
        conjugate-gradient iterations per x-step at most (default 100: the first x-steps, at
        a small :math:`\mu_k`, are ill-conditioned; the later ones stop at the tolerance).
    cg_tolerance : float
        the relative error bound at which an x-step stops (default 1e-3).
    **kwargs
        ``update_objective_interval`` of CIL's Algorithm.

    Attributes
    ----------
    sigmas : numpy.ndarray
        the schedule :math:`\sigma_0, \dots, \sigma_{K-1}`.
    sigma, mu : float
        the noise level and coupling of the last iteration.
    cg_history : list of (int, float)
        per x-step, the CG iterations run and the relative error bound reached,
        :math:`\|r\| / (\mu_k\|x_{k+1}\|)`.

    Raises
    ------
    ValueError
        for λ ≤ 0, a noise level ≤ 0, :math:`\sigma_{min} > \sigma_{max}`, :math:`K < 1`, or an
        ``initial`` that is not an image of the operator's domain.
    TypeError
        for a denoiser that is not one (a generator, a post-processing network).
    """

    def __init__(self, initial=None, operator=None, data=None, denoiser=None, lam=None,
                 sigma_max=None, sigma_min=DPIR_SIGMA_MIN,
                 schedule_iterations=DPIR_ITERATIONS, cg_iterations=100, cg_tolerance=1e-3,
                 **kwargs):
        super().__init__(**kwargs)
        if operator is not None and data is not None and denoiser is not None:
            self.set_up(initial, operator, data, denoiser, lam, sigma_max, sigma_min,
                        schedule_iterations, cg_iterations, cg_tolerance)

    def set_up(self, initial, operator, data, denoiser, lam, sigma_max=None,
               sigma_min=DPIR_SIGMA_MIN, schedule_iterations=DPIR_ITERATIONS,
               cg_iterations=100, cg_tolerance=1e-3):
        """Set up the algorithm (see the class for the parameters).

        Returns
        -------
        None
        """
        if lam is None:
            raise ValueError("PlugAndPlayHQS needs lam (the weight λ of the prior, > 0).")
        self.lam = check_positive(lam, "lam")
        self.prior = denoiser if isinstance(denoiser, DenoiserPrior) else DenoiserPrior(denoiser)
        if sigma_max is None:  # DPIR's, within the noise levels the denoiser was trained on
            top = self.prior.trained_sigma[1] if self.prior.trained_sigma else DPIR_SIGMA_MAX
            sigma_max = max(min(DPIR_SIGMA_MAX, top), check_positive(sigma_min, "sigma_min"))
        self.sigmas = noise_schedule(sigma_max, sigma_min, schedule_iterations)
        self.cg_iterations = check_int(cg_iterations, "cg_iterations")
        self.cg_tolerance = check_real(cg_tolerance, "cg_tolerance", low=0.0, high=1.0,
                                       low_open=True, high_open=True)
        self.operator, self.data = operator, data
        check_domain(initial, operator, "initial")
        ig = operator.domain_geometry()
        self.x = ig.allocate(0) if initial is None else initial.copy()  # z_k
        self.data_step = self.x.copy()  # x_k, the CG's warm start
        self._r, self._p, self._q = (ig.allocate(0) for _ in range(3))
        self._ap = operator.range_geometry().allocate(0)
        self.sigma = self.mu = None
        self.cg_history = []  # one entry per x-step: its length is the iterations run
        self.configured = True

    def noise_level(self, k):
        r""":math:`\sigma_k`: the schedule's k-th value, :math:`\sigma_{min}` after it.

        Parameters
        ----------
        k : int
            the iteration, from 0.

        Returns
        -------
        float
        """
        return float(self.sigmas[min(int(k), len(self.sigmas) - 1)])

    def update(self):
        r"""One HQS iteration: the x-step by CG at :math:`\mu_k = \lambda / (2\sigma_k^2)`, then
        :math:`z_{k+1} = D_{\sigma_k}(x_{k+1})` (into :attr:`solution`)."""
        # CIL's self.iteration starts at -1 or 0 (update_objective_interval 0 or not)
        self.sigma = self.noise_level(len(self.cg_history))
        self.mu = self.lam / (2.0 * self.sigma ** 2)
        self.cg_history.append(self._conjugate_gradients(self.mu))
        self.prior.proximal(self.data_step, self.sigma ** 2, out=self.x)

    def _residual(self, mu, out):
        r"""The x-step's residual at :attr:`data_step` into ``out``,
        :math:`A^T(y - Ax) + \mu(z - x) = A^Ty + \mu z - (A^TA + \mu I)x`, computed in this form
        (no cancellation of the large :math:`A^Ty` in float32)."""
        x = self.data_step
        self.operator.direct(x, out=self._ap)
        self.data.sapyb(1.0, self._ap, -1.0, out=self._ap)
        self.operator.adjoint(self._ap, out=out)
        out.sapyb(1.0, self.x, mu, out=out)
        out.sapyb(1.0, x, -mu, out=out)

    def _normal(self, v, mu, out):
        r""":math:`(A^TA + \mu I) v` into ``out``."""
        self.operator.direct(v, out=self._ap)
        self.operator.adjoint(self._ap, out=out)
        out.sapyb(1.0, v, mu, out=out)

    def _conjugate_gradients(self, mu):
        r"""Solve :math:`(A^TA + \mu I)x = A^Ty + \mu z` in place from :attr:`data_step`
        until :math:`\|r\| \le \mathrm{tol}\,\mu\|x\|` (an error of x below tol of its norm,
        the operator's eigenvalues being :math:`\ge \mu`) or the cap; returns (CG iterations,
        :math:`\|r\| / (\mu\|x\|)`)."""
        x, r, p, q = self.data_step, self._r, self._p, self._q
        self._residual(mu, r)
        p.fill(r)
        rr = r.dot(r)
        if not np.isfinite(rr):
            raise ValueError("the x-step's residual A^T(y - Ax) + mu (z - x) has NaN or Inf "
                             "values: check the data and the start.")
        done = 0
        while done < self.cg_iterations and \
                math.sqrt(rr) > self.cg_tolerance * mu * x.norm():
            self._normal(p, mu, out=q)
            alpha = rr / p.dot(q)
            x.sapyb(1.0, p, alpha, out=x)
            r.sapyb(1.0, q, -alpha, out=r)
            rr, rr_old = r.dot(r), rr
            p.sapyb(rr / rr_old, r, 1.0, out=p)
            done += 1
        scale = mu * x.norm()
        return done, float(math.sqrt(rr) / scale) if scale > 0 else 0.0

    def update_objective(self):
        """Append NaN: Plug-and-Play has no objective value (the denoiser is in general no
        function's proximal map); watch the PSNR or the data residual instead."""
        self.loss.append(float("nan"))
