r"""The range generative regulariser: images restricted to the range of the generator."""
import math
import numbers

import torch

from ..latent import NegatedInnerProduct, SquaredMisfit
from .generative_regulariser import GenerativeRegulariser


class RangeGenerativeRegulariser(GenerativeRegulariser):
    r"""Range generative regulariser

    .. math:: R(x) = \min_z \iota_{\{0\}}(G(z) - x) + \|z\|_2^2

    which restricts the solution to images :math:`x = G(z)` of the generator, penalising the
    latent norm.

    * value: :math:`\|z\|^2` for a latent :math:`z` with :math:`G(z) = x` up to the relative
      tolerance ``range_tolerance`` (per slice, :math:`\|G(z) - x\| \le \text{range\_tolerance}\,\|x\|`),
      found from the last latent (warm start) or by a penalised fit
      :math:`\min_z \|G(z) - x\|^2/(2\varepsilon) + \|z\|^2` with :math:`\varepsilon` =
      ``fit_epsilon``; :math:`+\infty` when no such :math:`z` is found;
    * proximal map (a penalised projection onto the range): with
      :math:`z^* = \text{argmin}_z \frac{1}{2\tau}\|v - G(z)\|^2 + \|z\|^2`,
      :math:`\text{prox}_{\tau R}(v) = G(z^*)`;
    * convex conjugate: :math:`R^*(s) = \sup_z \langle G(z), s\rangle - \|z\|^2`;
    * no gradient (an indicator): use a proximal algorithm (FISTA, APGD, PDHG), or solve in
      latent space with :class:`LatentLeastSquares`.

    Nonconvex for a nonlinear :math:`G`; CIL's algorithms run with it without a convergence
    guarantee.

    Parameters
    ----------
    generator : torch.nn.Module
        :math:`G: (B, d) \to (B, 1, H, W)`.
    range_tolerance : float
        relative tolerance of :math:`G(z) = x` in the value.
    fit_epsilon : float
        :math:`\varepsilon` of the penalised fit used by the value.
    **kwargs
        latent solver and geometry options of :class:`GenerativeRegulariser`.
    """

    def __init__(self, generator, range_tolerance=1e-2, fit_epsilon=1e-4, **kwargs):
        for name, value in (("range_tolerance", range_tolerance), ("fit_epsilon", fit_epsilon)):
            if not isinstance(value, numbers.Real) or not value > 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        self.range_tolerance = float(range_tolerance)
        self.fit_epsilon = float(fit_epsilon)
        super().__init__(generator, **kwargs)

    def _on_range(self, image, v):
        residual = (image - v).flatten(1).norm(dim=1)
        scale = v.flatten(1).norm(dim=1).clamp_min(1e-12)
        return bool((residual <= self.range_tolerance * scale).all())

    def __call__(self, x):
        r"""The value

        .. math:: R(x) = \|z\|_2^2 \;\text{ for a } z \text{ with } G(z) = x, \qquad
           +\infty \text{ when none is found}

        (:math:`G(z) = x` up to ``range_tolerance``, per slice; the latent is the last one found, when
        it fits, else that of the penalised fit with :math:`\varepsilon` = ``fit_epsilon``).

        Parameters
        ----------
        x : DataContainer

        Returns
        -------
        float
            :math:`\|z\|^2` summed over the slices, or ``math.inf``.
        """
        v = self._to_batch(x)
        z = self.solver.warm_latent(self.PRIMAL)
        if z is not None and z.shape[0] == v.shape[0]:
            with torch.inference_mode():
                if self._on_range(self.solver.adapter(z), v):
                    return z.square().sum().item()
        sol = self._solve(SquaredMisfit(0.5 / self.fit_epsilon), v, 1.0, like=x)
        if not self._on_range(sol.image, v):
            return math.inf
        return sol.z.square().sum().item()

    def gradient(self, x, out=None):
        r"""Not defined: :math:`R` is an indicator-type function (:math:`+\infty` off the range).

        Raises
        ------
        NotImplementedError
            always; use :meth:`proximal` (FISTA, APGD, PDHG) or :class:`LatentLeastSquares`.
        """
        raise NotImplementedError(
            "RangeGenerativeRegulariser is an indicator-type function and has no gradient: use "
            "it as g in a proximal algorithm (FISTA, APGD, PDHG), or solve in latent space with "
            "LatentLeastSquares (which has one).")

    def proximal(self, x, tau, out=None):
        r"""The proximal map, a penalised projection onto the range of :math:`G`,

        .. math:: \text{prox}_{\tau R}(x) = G(z^*), \qquad
           z^* = \underset{z}{\text{argmin}}\; \frac{\|x - G(z)\|_2^2}{2\tau} + \|z\|_2^2 .

        Parameters
        ----------
        x : DataContainer
        tau : float
            step size :math:`\tau > 0`.
        out : DataContainer, optional
            filled in place and returned (may be ``x``).

        Returns
        -------
        DataContainer
            in the geometry of ``x``.

        Raises
        ------
        ValueError
            for :math:`\tau \le 0` or non-finite.
        """
        tau = self._check_tau(tau)
        v = self._to_batch(x)
        sol = self._solve(SquaredMisfit(0.5 / tau), v, 1.0, like=x, proximal=True)
        return self._to_container(sol.image, x, out)

    def convex_conjugate(self, x):
        r"""The convex conjugate

        .. math:: R^*(s) = \sup_z\; \langle G(z), s\rangle - \|z\|_2^2 .

        Parameters
        ----------
        x : DataContainer
            :math:`s`, in image space.

        Returns
        -------
        float
        """
        s = self._to_batch(x, "s")
        sol = self._solve(NegatedInnerProduct(), s, 1.0, key=self.CONJUGATE)
        return -sol.objective.sum().item()
