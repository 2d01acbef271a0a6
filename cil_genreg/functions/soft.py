r"""The soft generative regulariser: images close to the range of the generator."""
from ..latent import NegatedInnerProduct, SquaredMisfit
from ..utilities.validation import check_non_negative
from .generative_regulariser import GenerativeRegulariser


class SoftGenerativeRegulariser(GenerativeRegulariser):
    r"""Soft generative regulariser

    .. math:: R(x) = \min_z \|G(z) - x\|_2^2 + \mu\|z\|_2^2

    which penalises images far from the range of the generator :math:`G`.

    * value: the latent problem above, solved by the latent solver;
    * gradient (Danskin's theorem, where :math:`z^*(x)` is unique):
      :math:`\nabla R(x) = 2\,(x - G(z^*(x)))`;
    * proximal map: with :math:`z^* = \text{argmin}_z \frac{1}{1+2\tau}\|v - G(z)\|^2 + \mu\|z\|^2`,

      .. math:: \text{prox}_{\tau R}(v) = \frac{v + 2\tau\, G(z^*)}{1 + 2\tau};

    * convex conjugate: :math:`R^*(s) = \frac{1}{4}\|s\|^2 + \sup_z \langle G(z), s\rangle - \mu\|z\|^2`.

    :math:`R` is nonconvex for a nonlinear :math:`G`: CIL's algorithms run with it (the paper's
    experiments are such runs) but carry no convergence guarantee, and the conjugate is that of
    a nonconvex function (so PDHG's primal–dual gap need not close).

    Parameters
    ----------
    generator : torch.nn.Module
        :math:`G: (B, d) \to (B, 1, H, W)`.
    mu : float
        :math:`\mu \ge 0`, weight of the latent prior (:meth:`convex_conjugate` needs
        :math:`\mu > 0`).
    **kwargs
        latent solver and geometry options of :class:`GenerativeRegulariser`.

    Example
    -------
    >>> from cil.optimisation.algorithms import FISTA
    >>> from cil.optimisation.functions import LeastSquares
    >>> G = cil_genreg.models.pretrained("mnist-vae")
    >>> R = SoftGenerativeRegulariser(G, mu=0.01)
    >>> FISTA(initial=x0, f=LeastSquares(A, y), g=0.1 * R).run(100)
    """

    def __init__(self, generator, mu=0.01, **kwargs):
        self.mu = check_non_negative(mu, "mu")
        super().__init__(generator, **kwargs)

    def _fit(self, x):
        v = self._to_batch(x)
        return v, self._solve(SquaredMisfit(1.0), v, self.mu, like=x)

    def __call__(self, x):
        r"""The value

        .. math:: R(x) = \min_z \|G(z) - x\|_2^2 + \mu\|z\|_2^2

        (summed over the slices of a volume); the minimiser is kept as :attr:`latent`.

        Parameters
        ----------
        x : DataContainer
            an image of the generator's size (2D) or a volume (slices, H, W).

        Returns
        -------
        float
        """
        return self._fit(x)[1].objective.sum().item()

    def gradient(self, x, out=None):
        r"""The gradient (Danskin's theorem, where :math:`z^*(x)` is unique)

        .. math:: \nabla R(x) = 2\,(x - G(z^*(x))), \qquad
           z^*(x) = \underset{z}{\text{argmin}}\; \|G(z) - x\|_2^2 + \mu\|z\|_2^2 .

        Parameters
        ----------
        x : DataContainer
        out : DataContainer, optional
            filled in place and returned.

        Returns
        -------
        DataContainer
            in the geometry of ``x``.
        """
        v, sol = self._fit(x)
        return self._to_container(2.0 * (v - sol.image), x, out)

    def proximal(self, x, tau, out=None):
        r"""The proximal map

        .. math:: \text{prox}_{\tau R}(x) = \frac{x + 2\tau\, G(z^*)}{1 + 2\tau}, \qquad
           z^* = \underset{z}{\text{argmin}}\; \frac{\|x - G(z)\|_2^2}{1 + 2\tau} + \mu\|z\|_2^2 .

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
        sol = self._solve(SquaredMisfit(1.0 / (1.0 + 2.0 * tau)), v, self.mu, like=x,
                          proximal=True)
        return self._to_container((v + (2.0 * tau) * sol.image) / (1.0 + 2.0 * tau), x, out)

    def convex_conjugate(self, x):
        r"""The convex conjugate

        .. math:: R^*(s) = \tfrac{1}{4}\|s\|_2^2 + \sup_z\; \langle G(z), s\rangle - \mu\|z\|_2^2 .

        Parameters
        ----------
        x : DataContainer
            :math:`s`, in image space.

        Returns
        -------
        float

        Raises
        ------
        ValueError
            when :math:`\mu = 0` (the latent maximisation is then not coercive).
        """
        self._check_conjugate_mu()
        s = self._to_batch(x, "s")
        sol = self._solve(NegatedInnerProduct(), s, self.mu, key=self.CONJUGATE)
        return (0.25 * s.square().sum() - sol.objective.sum()).item()
