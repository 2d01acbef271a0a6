r"""The soft generative regulariser with a structured precision: the Mahalanobis distance to
the range of a structured-covariance VAE (:class:`~cil_genreg.models.StructuredVAE`)."""
import torch

from ..latent import MeanMisfit, StructuredMisfit
from ..models.precision import apply_precision, solve_shifted
from ..utilities.validation import InputError, check_non_negative, check_positive
from .generative_regulariser import GenerativeRegulariser


class StructuredSoftRegulariser(GenerativeRegulariser):
    r"""Soft generative regulariser under the decoder's own precision,

    .. math:: R(x) = \min_z s^{-2}\big(\|B_z(x - m_z)\|_2^2 - \log\det P_z + N\log s^2\big)
              + \mu\|z\|_2^2, \qquad P_z = B_z^T B_z,

    with :math:`m_z` the mean and :math:`B_z` the sparse triangular factor the model decodes
    from :math:`z` (:mod:`cil_genreg.models.precision`: :math:`\log\det P_z = 2\sum_i \log
    d_i`), and :math:`s^2` the model's reference precision (the best constant precision of
    its mean), so that :math:`R` is the soft regulariser's :math:`\|x - G(z)\|^2 +
    \mu\|z\|^2` when :math:`P_z = s^2 I`: λ keeps its meaning. :math:`R` is
    :math:`2 s^{-2}` times the Gaussian negative log-likelihood, plus a constant; the log-det
    term is what stops :math:`z` from shrinking the precision (without it the minimum is
    :math:`d \to 0`).

    * value: the latent problem above (:class:`~cil_genreg.latent.StructuredMisfit`);
    * gradient (Danskin): :math:`\nabla R(x) = 2 s^{-2} P_{z^*}(x - m_{z^*})`;
    * proximal map, exact: :math:`x` is eliminated inside the latent problem,

      .. math:: z^* = \underset{z}{\text{argmin}} \min_x \frac{\|x - v\|^2}{2\tau}
                + s^{-2}\big(\|B_z(x - m_z)\|^2 - \log\det P_z\big) + \mu\|z\|^2,

      :math:`x = m_z + e`, :math:`(I + 2\tau s^{-2} P_z)\, e = v - m_z` by Jacobi-preconditioned
      conjugate gradients at every latent evaluation; then
      :math:`\text{prox}_{\tau R}(v) = m_{z^*} + e^*`. With :math:`P = s^2 I` it is the soft
      regulariser's :math:`(v + 2\tau G(z^*))/(1 + 2\tau)`.

    ``latent_fit="mean"``: :math:`z^*` fits the mean alone, as the soft regulariser's
    (:math:`\min_z \|x - m_z\|^2 + \mu\|z\|^2`; in the proximal map :math:`\|v -
    m_z\|^2/(1 + 2\tau)`), and the precision is the one decoded at that :math:`z^*`: the
    value and the exact :math:`x`-step are as above at that :math:`z^*`, the gradient
    :math:`2 s^{-2} P_{z^*}(x - m_{z^*})` leaves out :math:`z^*`'s dependence on :math:`x`. The
    joint fit ("joint") is the model's likelihood, with exact (Danskin) gradients; but it lets
    :math:`z` lower the precision to explain the noise of :math:`x` and moves the mean away
    (measured in docs/models.md: 6 dB below soft in CT), which is why "mean" is the default.

    Nonconvex, as the soft regulariser; no convex conjugate is offered.

    Parameters
    ----------
    generator : torch.nn.Module
        a :class:`~cil_genreg.models.StructuredVAE`, its fitted-prior form
        (``methods.load_generator``) or a :class:`~cil_genreg.models.FactorGenerator`.
    mu : float
        :math:`\mu \ge 0`.
    reference_precision : float, optional
        :math:`s^2 > 0`; default the model's.
    cg_tolerance : float
        relative residual of the CG solves (default 1e-6, float64: far below the
        noise of any image it regularises; docs/models.md compares at 1e-8).
    cg_max_iteration : int
        CG iterations at most per solve (default 500).
    latent_fit : {"mean", "joint"}
        how :math:`z^*` is found (see above; default "mean").
    **kwargs
        latent solver and geometry options of :class:`GenerativeRegulariser`.

    Raises
    ------
    TypeError
        for a generator without a structured precision.
    """

    LATENT_FITS = ("joint", "mean")

    def __init__(self, generator, mu=0.01, reference_precision=None, cg_tolerance=1e-6,
                 cg_max_iteration=500, latent_fit="mean", **kwargs):
        from ..models import factor_generator
        view = factor_generator(generator)
        self.mu = check_non_negative(mu, "mu")
        s2 = view.reference_precision if reference_precision is None else reference_precision
        self.reference_precision = check_positive(s2, "reference_precision")
        self.neighbourhood = view.neighbourhood
        self.cg_tolerance = check_positive(cg_tolerance, "cg_tolerance")
        if int(cg_max_iteration) < 1:
            raise InputError(f"cg_max_iteration must be a positive integer, got "
                             f"{cg_max_iteration}.")
        self.cg_max_iteration = int(cg_max_iteration)
        if latent_fit not in self.LATENT_FITS:
            raise InputError(f"latent_fit must be one of {self.LATENT_FITS}, got "
                             f"{latent_fit!r}.")
        self.latent_fit = latent_fit
        #: CG iterations of the proximal maps so far
        self.cg_iterations = 0
        self._last_e = None
        super().__init__(view, **kwargs)

    def reset(self):
        """Forget the latent found so far and the CG's warm start (see
        :meth:`GenerativeRegulariser.reset`)."""
        super().reset()
        self._last_e = None

    def _misfit(self, tau=None):
        return StructuredMisfit(self.reference_precision, self.neighbourhood, tau,
                                self.cg_tolerance, self.cg_max_iteration)

    def _latent_misfit(self, structured, tau=None):
        """The misfit the latent solver minimises: ``structured`` itself ("joint"), or the
        mean's alone ("mean")."""
        if self.latent_fit == "mean":
            return MeanMisfit(1.0 if tau is None else 1.0 / (1.0 + 2.0 * tau))
        return structured

    def _fit(self, x):
        v = self._to_batch(x)
        return v, self._solve(self._latent_misfit(self._misfit()), v, self.mu, like=x)

    def __call__(self, x):
        r"""The value :math:`R(x)` (summed over the slices of a volume); the minimiser is kept
        as :attr:`latent`.

        Parameters
        ----------
        x : DataContainer
            an image of the generator's size (2D) or a volume (slices, H, W).

        Returns
        -------
        float
        """
        v, sol = self._fit(x)
        if self.latent_fit == "joint":
            return sol.objective.sum().item()
        with torch.no_grad():  # z* fitted the mean: the value is the structured misfit there
            value = self._misfit()(sol.image, v) + self.mu * torch.linalg.vecdot(sol.z, sol.z)
        return value.sum().item()

    def gradient(self, x, out=None):
        r""":math:`\nabla R(x) = 2 s^{-2} B^T B (x - m)` at :math:`z^*(x)` (Danskin).

        Parameters
        ----------
        x : DataContainer
        out : DataContainer, optional
            filled in place and returned.

        Returns
        -------
        DataContainer
        """
        v, sol = self._fit(x)
        m, log_d, u = StructuredMisfit.split(sol.image)
        with torch.no_grad():
            g = apply_precision(v - m, log_d, u, self.neighbourhood)
        return self._to_container((2.0 / self.reference_precision) * g, x, out)

    def proximal(self, x, tau, out=None):
        r""":math:`\text{prox}_{\tau R}(x) = m_{z^*} + e^*` (class docstring).

        Parameters
        ----------
        x : DataContainer
        tau : float
            :math:`\tau > 0`.
        out : DataContainer, optional
            filled in place and returned (may be ``x``).

        Returns
        -------
        DataContainer

        Raises
        ------
        ValueError
            for :math:`\tau \le 0` or non-finite, or NaN / Inf in ``x``.
        """
        tau = self._check_tau(tau)
        v = self._to_batch(x)
        misfit = self._misfit(tau)
        if self._last_e is not None and self._last_e.shape == v.shape:
            misfit.warm_start(self._last_e)  # the previous map's e: the CG starts near
        # "joint": the latent evaluations' CG solves share the warm start, and the last one
        # leaves eliminate() a few iterations at z*
        sol = self._solve(self._latent_misfit(misfit, tau), v, self.mu, like=x, proximal=True)
        result = misfit.eliminate(sol.image, v)
        self._last_e = result - sol.image[:, :1]
        self.cg_iterations += misfit.cg_iterations
        return self._to_container(result, x, out)

    def solve_x_step(self, v, tau):
        r"""The exact :math:`x`-step at the last latent :math:`z^*`:
        :math:`x = m + e`, :math:`(I + 2\tau s^{-2} P) e = v - m`, with the CG's relative
        residual (for tests and diagnostics).

        Parameters
        ----------
        v : torch.Tensor
            (B, 1, H, W).
        tau : float

        Returns
        -------
        (torch.Tensor, torch.Tensor)
            :math:`x` and the residual per image.
        """
        m, log_d, u = self.factors()
        e, _, residual = solve_shifted(v - m, 2.0 * tau / self.reference_precision, log_d, u,
                                       self.neighbourhood, self.cg_tolerance,
                                       self.cg_max_iteration)
        return m + e, residual

    def factors(self):
        """``(m, log d, u)`` at the last latent :math:`z^*`, as tensors.

        Raises
        ------
        RuntimeError
            when no latent has been found yet.
        """
        return StructuredMisfit.split(self._decoded_latent())

    def generated_image(self, out=None):
        r"""The mean :math:`m_{z^*}` for the last latent :math:`z^*` found.

        Parameters
        ----------
        out : DataContainer, optional

        Returns
        -------
        DataContainer
        """
        return self._to_container(self.factors()[0], self._last_like, out)

    def convex_conjugate(self, x):
        """Not available: it needs :math:`P^{-1}`, a triangular solve per latent evaluation.

        Raises
        ------
        NotImplementedError
        """
        raise NotImplementedError(
            "StructuredSoftRegulariser has no convex conjugate (it would need P^-1 at every "
            "latent evaluation): use it in FISTA or in PDHG with update_objective_interval=0.")
