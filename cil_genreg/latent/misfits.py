r"""Data misfits :math:`\varphi(v - G(z))` of the latent step, one value per batch element.

Every proximal map of a generative regulariser solves

.. math:: z^* = \underset{z}{\text{argmin}}\; \varphi(v - G(z)) + c\|z\|_2^2

for a batch of targets :math:`v`. A misfit is a callable ``misfit(image, target)`` taking
``image = G(z)`` and ``target = v`` (both of shape (B, 1, H, W)) and returning the (B,) values
:math:`\varphi(v - G(z))`, one per batch element, so that the elements stay independent.
"""
import math

import torch


def _per_sample_sum(t):
    return t.flatten(1).sum(dim=1)


class SquaredMisfit:
    r""":math:`\varphi(r) = w\,\|r\|_2^2` with :math:`r = v - G(z)`.

    Parameters
    ----------
    weight : float
        :math:`w > 0`, e.g. :math:`1/(1+2\tau)` in the soft regulariser's prox.
    """

    def __init__(self, weight=1.0):
        self.weight = float(weight)

    def __call__(self, image, target):
        r = (target - image).flatten(1)
        return torch.linalg.vecdot(r, r).mul_(self.weight)


class HuberMisfit:
    r""":math:`\varphi(r) = \sum_i h_\delta(r_i)`, the Moreau envelope of :math:`|\cdot|`:

    .. math:: h_\delta(r) = \begin{cases} r^2/(2\delta) & |r| \le \delta \\ |r| - \delta/2 & |r| > \delta \end{cases}

    Parameters
    ----------
    delta : float
        :math:`\delta > 0` (the prox step :math:`\tau` in the sparse-deviation prox).
    """

    def __init__(self, delta):
        self.delta = float(delta)

    def __call__(self, image, target):
        a = (target - image).abs()
        d = self.delta
        return _per_sample_sum(torch.where(a <= d, a.square() / (2 * d), a - d / 2))


class NegatedInnerProduct:
    r"""Not a misfit but the term of the same slot for a conjugate:
    :math:`\varphi = -\langle G(z), s\rangle`, the latent maximisation
    :math:`\sup_z \langle G(z), s\rangle - c\|z\|^2` of a convex conjugate, written as a
    minimisation. The ``target`` passed to it is :math:`s`."""

    def __call__(self, image, target):
        return -_per_sample_sum(image * target)


class StructuredMisfit:
    r"""The misfit of a structured precision (:mod:`cil_genreg.models.precision`), for a
    generator of factors ``image = (m, log d, u)`` stacked as channels
    (:class:`~cil_genreg.models.FactorGenerator`), :math:`P = B^T B`,
    :math:`s^2` the reference precision:

    * ``tau=None`` (the value and gradient of the regulariser at :math:`x` = the target):

      .. math:: \varphi = s^{-2}\big(\|B(x - m)\|_2^2 - \log\det P + N \log s^2\big);

    * ``tau > 0`` (the latent step of the proximal map at :math:`v` = the target), :math:`x`
      eliminated exactly:

      .. math:: \varphi = \min_x \frac{\|x - v\|^2}{2\tau} + s^{-2}\big(\|B(x - m)\|^2
                - \log\det P + N\log s^2\big),

      whose minimiser is :math:`x^* = m + e`, :math:`(I + 2\tau s^{-2} P)\, e = v - m`, solved
      by preconditioned CG (:func:`~cil_genreg.models.precision.solve_shifted`, float64) at
      every evaluation, warm-started from the last :math:`e` of the same shape. :math:`x^*`
      enters as a constant: by the envelope theorem the gradient of :math:`\varphi` in
      :math:`(m, d, u)` is that of the expression at :math:`x^*`.

    With :math:`d \equiv s` and :math:`u = 0` these are the soft regulariser's
    :math:`\|x - G(z)\|^2` and :math:`\|v - G(z)\|^2 / (1 + 2\tau)`.

    Parameters
    ----------
    reference_precision : float
        :math:`s^2 > 0`.
    neighbourhood : int
        :math:`\rho` of the factor.
    tau : float, optional
        the proximal step :math:`\tau > 0`; None for the value.
    cg_tolerance : float
        relative residual of the CG solves.
    cg_max_iteration : int

    Attributes
    ----------
    last_x : torch.Tensor or None
        :math:`x^*` of the last evaluation (``tau`` given).
    cg_iterations : int
        CG iterations run so far.
    """

    def __init__(self, reference_precision, neighbourhood=1, tau=None, cg_tolerance=1e-6,
                 cg_max_iteration=500):
        self.scale = 1.0 / float(reference_precision)
        self.neighbourhood = int(neighbourhood)
        self.tau = None if tau is None else float(tau)
        self.cg_tolerance, self.cg_max_iteration = float(cg_tolerance), int(cg_max_iteration)
        self.last_x, self.cg_iterations, self._warm = None, 0, {}

    def warm_start(self, e):
        """Start the next CG solve of ``e``'s shape from ``e`` (e.g. the previous proximal
        map's)."""
        self._warm[tuple(e.shape)] = e.detach()

    @staticmethod
    def split(image):
        """``(m, log d, u)`` of the stacked channels."""
        return image[:, :1], image[:, 1:2], image[:, 2:]

    def eliminate(self, image, target):
        r""":math:`x^*` of the proximal map's :math:`x`-step for the factors ``image``
        (without gradients)."""
        from ..models.precision import solve_shifted
        m, log_d, u = self.split(image.detach())
        key = tuple(target.shape)
        e, iterations, _ = solve_shifted(target - m, 2.0 * self.tau * self.scale, log_d, u,
                                         self.neighbourhood, self.cg_tolerance,
                                         self.cg_max_iteration, x0=self._warm.get(key))
        self._warm[key] = e
        self.cg_iterations += iterations
        self.last_x = m + e
        return self.last_x

    def __call__(self, image, target):
        from ..models.precision import apply_factor, log_det_precision
        m, log_d, u = self.split(image)
        x = target if self.tau is None else self.eliminate(image, target)
        br = apply_factor(x - m, log_d, u, self.neighbourhood).flatten(1)
        n = m[0].numel()
        value = torch.linalg.vecdot(br, br) - log_det_precision(log_d) \
            - n * math.log(self.scale)
        value = self.scale * value
        if self.tau is not None:
            dx = (x - target).flatten(1)
            value = value + torch.linalg.vecdot(dx, dx) / (2.0 * self.tau)
        return value


class MeanMisfit:
    r""":math:`w\,\|v - m(z)\|_2^2` on channel 0 (the mean) of a generator of factors: the
    soft regulariser's misfit, for a structured model whose latent is fitted to the mean alone
    (``latent_fit="mean"`` of :class:`~cil_genreg.functions.StructuredSoftRegulariser`).

    Parameters
    ----------
    weight : float
        :math:`w > 0`.
    """

    def __init__(self, weight=1.0):
        self.squared = SquaredMisfit(weight)

    def __call__(self, image, target):
        return self.squared(image[:, :1], target)
