r"""The sparse-deviation generative regulariser: a generated image plus a sparse correction."""
import math
import numbers

import torch

from ..latent import HuberMisfit, NegatedInnerProduct
from ..utilities.validation import check_non_negative
from .generative_regulariser import GenerativeRegulariser


def soft_threshold(r, tau):
    r"""Soft thresholding, the proximal map of :math:`\tau\|\cdot\|_1`:

    .. math:: \text{soft}_\tau(r) = \text{sign}(r)\max(|r| - \tau, 0) .

    Parameters
    ----------
    r : torch.Tensor
    tau : float or torch.Tensor
        threshold :math:`\tau \ge 0`.

    Returns
    -------
    torch.Tensor
        of the shape of ``r``.
    """
    return torch.sign(r) * (r.abs() - tau).clamp_min(0.0)


class SparseDeviationGenerativeRegulariser(GenerativeRegulariser):
    r"""Sparse-deviation generative regulariser

    .. math:: R(x) = \min_z \|x - G(z)\|_1 + \mu\|z\|_2^2

    which allows the image to leave the range of the generator by a sparse correction.

    * value: the latent problem, solved with the Huber smoothing :math:`h_\delta` of
      :math:`|\cdot|` (:math:`\delta` = ``value_delta``), then evaluated exactly at the
      latent found;
    * proximal map: with :math:`h_\tau` the Moreau envelope of :math:`|\cdot|`
      (:math:`r^2/(2\tau)` for :math:`|r| \le \tau`, :math:`|r| - \tau/2` otherwise) and
      :math:`z^* = \text{argmin}_z \sum_i h_\tau(v_i - G(z)_i) + \mu\|z\|^2`,

      .. math:: \text{prox}_{\tau R}(v) = G(z^*) + \text{soft}_\tau(v - G(z^*));

    * convex conjugate: :math:`R^*(s) = \sup_z \langle G(z), s\rangle - \mu\|z\|^2` when
      :math:`\|s\|_\infty \le 1`, :math:`+\infty` otherwise;
    * no gradient (non-smooth): use a proximal algorithm (FISTA, APGD, PDHG).

    Nonconvex for a nonlinear :math:`G`; CIL's algorithms run with it without a convergence
    guarantee.

    Parameters
    ----------
    generator : torch.nn.Module
        :math:`G: (B, d) \to (B, 1, H, W)`.
    mu : float
        :math:`\mu \ge 0`, weight of the latent prior (:meth:`convex_conjugate` needs
        :math:`\mu > 0`).
    value_delta : float
        Huber smoothing used to find the latent when evaluating :math:`R(x)`.
    **kwargs
        latent solver and geometry options of :class:`GenerativeRegulariser`.
    """

    def __init__(self, generator, mu=0.01, value_delta=1e-3, **kwargs):
        if not isinstance(value_delta, numbers.Real) or not value_delta > 0:
            raise ValueError(f"value_delta must be a positive number, got {value_delta!r}")
        self.mu = check_non_negative(mu, "mu")
        self.value_delta = float(value_delta)
        super().__init__(generator, **kwargs)

    def __call__(self, x):
        r"""The value

        .. math:: R(x) = \|x - G(z^*)\|_1 + \mu\|z^*\|_2^2, \qquad
           z^* = \underset{z}{\text{argmin}}\; \sum_i h_\delta(x_i - G(z)_i) + \mu\|z\|_2^2

        with the Huber smoothing :math:`h_\delta` (:math:`\delta` = ``value_delta``) used only
        to find :math:`z^*`; the :math:`\ell_1` term is exact.

        Parameters
        ----------
        x : DataContainer

        Returns
        -------
        float
        """
        v = self._to_batch(x)
        sol = self._solve(HuberMisfit(self.value_delta), v, self.mu, like=x)
        return ((v - sol.image).abs().sum() + self.mu * sol.z.square().sum()).item()

    def gradient(self, x, out=None):
        r"""Not defined: :math:`R` is non-smooth (an :math:`\ell_1` distance).

        Raises
        ------
        NotImplementedError
            always; use :meth:`proximal` (FISTA, APGD, PDHG).
        """
        raise NotImplementedError(
            "SparseDeviationGenerativeRegulariser is non-smooth (an L1 distance) and has no "
            "gradient: use its proximal map (R.proximal), i.e. use it as g in a proximal "
            "algorithm (FISTA, APGD, PDHG).")

    def proximal(self, x, tau, out=None):
        r"""The proximal map

        .. math:: \text{prox}_{\tau R}(x) = G(z^*) + \text{soft}_\tau(x - G(z^*)), \qquad
           z^* = \underset{z}{\text{argmin}}\; \sum_i h_\tau(x_i - G(z)_i) + \mu\|z\|_2^2

        with :math:`h_\tau` the Moreau envelope of :math:`|\cdot|`.

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
        sol = self._solve(HuberMisfit(tau), v, self.mu, like=x, proximal=True)
        return self._to_container(sol.image + soft_threshold(v - sol.image, tau), x, out)

    def convex_conjugate(self, x):
        r"""The convex conjugate

        .. math:: R^*(s) = \sup_z\; \langle G(z), s\rangle - \mu\|z\|_2^2
           + \iota_{\{\|s\|_\infty \le 1\}}(s) .

        Parameters
        ----------
        x : DataContainer
            :math:`s`, in image space.

        Returns
        -------
        float
            ``math.inf`` when :math:`\|s\|_\infty > 1`.

        Raises
        ------
        ValueError
            when :math:`\mu = 0` (the latent maximisation is then not coercive).
        """
        self._check_conjugate_mu()
        s = self._to_batch(x, "s")
        if s.abs().max().item() > 1.0 + 1e-6:
            return math.inf
        sol = self._solve(NegatedInnerProduct(), s, self.mu, key=self.CONJUGATE)
        return -sol.objective.sum().item()
