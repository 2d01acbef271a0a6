r"""Sampling the latent posterior of the range method, as a CIL Algorithm: how sure is each
pixel of a generative reconstruction?"""
import torch
from cil.optimisation.functions import L2NormSquared

from ..functions.latent_least_squares import LatentLeastSquares
from ..latent.langevin import LangevinChain
from ..utilities.bridge import as_tensor, from_tensor
from .latent_objective import LatentObjective
from .posterior_base import PosteriorSampler, calibration

__all__ = ["LatentPosteriorSampler", "calibration"]


class LatentPosteriorSampler(PosteriorSampler):
    r"""Langevin sampling (MALA, or ULA) of the latent posterior of data :math:`y = A G(w) +
    \sigma\varepsilon` under the prior :math:`w \sim N(0, I)`,

    .. math:: p(w \mid y) \propto \exp\Big(-\frac{\|A\,G(w) - y\|^2}{2\sigma^2}
              - \frac12\|w\|^2\Big),

    with the step of :class:`~cil_genreg.latent.LangevinChain`. With a
    :class:`~cil_genreg.models.WhitenedGenerator` :math:`G(m + \Sigma^{1/2} w)` (what
    ``load_generator`` gives for a model with a fitted latent prior) the prior is the fitted
    latent Gaussian :math:`N(m, \Sigma)`. Its mode is the latent method's solution at
    :math:`\lambda = \sigma^2` (:math:`\|A G(w) - y\|^2 + \sigma^2\|w\|^2`): start there. The
    outputs are the posterior mean and pixel standard deviation of the image :math:`G(w)`,

    .. math:: \bar x = \frac1K \sum_k G(w_k), \qquad
              s = \Big(\frac1{K - 1}\sum_k (G(w_k) - \bar x)^2\Big)^{1/2},

    over the :math:`K` kept draws (every ``thin``-th after ``burn_in``, of every chain).

    Parameters
    ----------
    initial : VectorData
        the start, in ``f.latent_geometry`` (best: the MAP, e.g. ``LatentLBFGS``'s solution).
    f : LatentLeastSquares
        :math:`c\|A G(w) - y\|^2` (its ``c`` is divided out).
    sigma : float
        the noise's standard deviation per datum, finite and > 0.
    step : float
        the initial Langevin step :math:`h > 0` (adapted during burn-in).
    burn_in : int
        steps whose draws are discarded, during which the step adapts.
    thin : int
        keep every ``thin``-th draw after burn-in.
    exact : bool
        MALA (True: exact) or ULA (False: biased by :math:`O(h)`, no rejections).
    chains : int
        independent chains stepped as one batch, all from ``initial``.
    seed : int, optional
    **kwargs
        ``update_objective_interval`` of CIL's Algorithm.

    Attributes
    ----------
    seconds : float
        time spent in :meth:`update`.

    The burn-in, thinning, kept draws, :attr:`mean`, :attr:`std`, :attr:`ess` and
    :meth:`interval` are those of :class:`~cil_genreg.algorithms.posterior_base.PosteriorSampler`.
    """

    def __init__(self, initial=None, f=None, sigma=None, step=1e-2, burn_in=200, thin=1,
                 exact=True, chains=1, seed=None, **kwargs):
        super().__init__(**kwargs)
        if initial is not None and f is not None:
            self.set_up(initial, f, sigma, step=step, burn_in=burn_in, thin=thin, exact=exact,
                        chains=chains, seed=seed)

    def set_up(self, initial, f, sigma, step=1e-2, burn_in=200, thin=1, exact=True, chains=1,
               seed=None):
        """Set up the sampler (see the class for the parameters).

        Raises
        ------
        TypeError
            for an ``f`` that is not a LatentLeastSquares, an ``initial`` not a DataContainer.
        ValueError
            for a non-finite or non-positive ``sigma`` or ``step``, a negative ``burn_in``,
            ``thin`` or ``chains`` below 1.
        """
        if not isinstance(f, LatentLeastSquares):
            raise TypeError(f"f must be a LatentLeastSquares (the data term ‖A G(w) − y‖²), got "
                            f"{type(f).__name__}.")
        if not hasattr(initial, "as_array"):
            raise TypeError("initial must be a VectorData in f.latent_geometry.")
        sigma, step, chains = self._set_up_common(sigma, step, burn_in, thin, chains,
                                                  f.A.domain_geometry())
        if f.c == 0:
            raise ValueError("f has c = 0: there is no data term to sample a posterior of.")
        self.f = f
        self.geometry = f.latent_geometry
        energy = (1.0 / (2.0 * sigma ** 2 * f.c)) * f + 0.5 * L2NormSquared()
        start = as_tensor(initial).reshape(1, -1).repeat(chains, 1)
        self.chain = LangevinChain(LatentObjective(energy, self.geometry), start, float(step),
                                   exact=exact, seed=seed)
        self.x = initial.copy()
        self.configured = True

    def _advance(self, adapt):
        self.chain.advance(adapt=adapt)

    def _state(self):
        w = self.chain.w.clone()
        return w, self.images(w), self.chain.u

    def _show(self):
        from_tensor(self.chain.w[0], out=self.x)

    def images(self, w):
        """The images :math:`G(w)` of latent rows ``w`` (R, N), as a (R, *image shape) tensor."""
        operator = self.f.generator_operator
        adapter = operator.adapter
        z = w.reshape(-1, adapter.latent_dim).to(adapter.device)
        with torch.inference_mode(), adapter.threads(len(z)):
            out = adapter(z)
        return out.reshape(w.shape[0], *operator.range_geometry().shape).cpu()
