r"""Sampling the latent posterior of the range method, as a CIL Algorithm: how sure is each
pixel of a generative reconstruction?"""
import math
import time

import numpy as np
import torch
from cil.optimisation.algorithms import Algorithm
from cil.optimisation.functions import L2NormSquared

from ..functions.latent_least_squares import LatentLeastSquares
from ..latent.langevin import LangevinChain, effective_sample_size
from ..utilities.bridge import as_tensor, from_tensor
from ..utilities.validation import check_fraction, check_int, check_positive
from .latent_objective import LatentObjective


class LatentPosteriorSampler(Algorithm):
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
        self.sigma = check_positive(sigma, "sigma (the noise's standard deviation)")
        step = check_positive(step, "step")
        self.burn_in = check_int(burn_in, "burn_in", low=0)
        self.thin = check_int(thin, "thin", low=1)
        chains = check_int(chains, "chains", low=1)
        if f.c == 0:
            raise ValueError("f has c = 0: there is no data term to sample a posterior of.")
        self.f = f
        self.geometry = f.latent_geometry
        energy = (1.0 / (2.0 * self.sigma ** 2 * f.c)) * f + 0.5 * L2NormSquared()
        start = as_tensor(initial).reshape(1, -1).repeat(chains, 1)
        self.chain = LangevinChain(LatentObjective(energy, self.geometry), start, float(step),
                                   exact=exact, seed=seed)
        self.x = initial.copy()
        self._kept, self._potentials = [], []
        self._sum = self._squares = None
        self.seconds = 0.0
        self.configured = True

    def update(self):
        """One Langevin step of every chain (adapting the step during burn-in); every
        ``thin``-th step after burn-in the draws are kept and their images accumulated."""
        started = time.perf_counter()
        steps = self.iteration + 1
        burning = steps <= self.burn_in
        self.chain.advance(adapt=burning)
        if steps == self.burn_in:
            self.chain.reset_counts()
        if not burning and (steps - self.burn_in) % self.thin == 0:
            self._keep()
        from_tensor(self.chain.w[0], out=self.x)
        self.seconds += time.perf_counter() - started

    def _keep(self):
        w = self.chain.w.clone()
        images = self.images(w).double()
        self._kept.append(w)
        self._potentials.append(self.chain.u.clone())
        self._sum = images.sum(0) if self._sum is None else self._sum + images.sum(0)
        squares = images.square().sum(0)
        self._squares = squares if self._squares is None else self._squares + squares

    def images(self, w):
        """The images :math:`G(w)` of latent rows ``w`` (R, N), as a (R, *image shape) tensor."""
        operator = self.f.generator_operator
        adapter = operator.adapter
        z = w.reshape(-1, adapter.latent_dim).to(adapter.device)
        with torch.inference_mode(), adapter.threads(len(z)):
            out = adapter(z)
        return out.reshape(w.shape[0], *operator.range_geometry().shape).cpu()

    def update_objective(self):
        r"""Append the first chain's :math:`-\log p(w \mid y)` (up to a constant)."""
        self.loss.append(float(self.chain.u[0]))

    def sample(self, samples, verbose=0):
        """Run until ``samples`` draws per chain are kept (burn-in first, if not yet done).

        Parameters
        ----------
        samples : int
            draws per chain, >= 1.
        verbose : int

        Returns
        -------
        LatentPosteriorSampler
            this sampler.
        """
        samples = check_int(samples, "samples", low=1)
        todo = self.burn_in + samples * self.thin - (self.iteration + 1)
        if todo > 0:
            self.run(todo, verbose=verbose)
        return self

    def run(self, iterations=None, callbacks=None, verbose=0):
        """Run ``iterations`` Langevin steps (CIL's
        :meth:`~cil.optimisation.algorithms.Algorithm.run`).

        Parameters
        ----------
        iterations : int
            >= 1.
        callbacks : list of callables, optional
        verbose : int

        Returns
        -------
        LatentPosteriorSampler
        """
        iterations = check_int(iterations, "iterations (Langevin steps)", low=1)
        super().run(iterations, callbacks=callbacks, verbose=verbose)
        return self

    def _draws(self):
        if not self._kept:
            raise ValueError(f"no draws kept yet: run the sampler past its burn-in "
                             f"({self.burn_in} steps), e.g. .sample(200).")
        return len(self._kept) * self.chain.w.shape[0]

    def _image(self, values):
        image = self.f.A.domain_geometry().allocate(None)
        return from_tensor(values.float(), out=image)

    @property
    def mean(self):
        r"""The posterior mean image :math:`\bar x` (ImageData)."""
        return self._image(self._sum / self._draws())

    @property
    def std(self):
        r"""The pixel standard deviation image :math:`s` (ImageData)."""
        k = self._draws()
        variance = (self._squares - self._sum.square() / k) / max(k - 1, 1)
        return self._image(variance.clamp_min(0).sqrt())

    @property
    def samples(self):
        """The kept latent draws, (K, N) numpy (chains interleaved)."""
        self._draws()
        return torch.cat(self._kept).numpy()

    @property
    def acceptance(self):
        """MALA's acceptance rate after burn-in (1 for ULA, which accepts every move)."""
        return self.chain.acceptance

    @property
    def step(self):
        """The chains' mean Langevin step (adapted during burn-in)."""
        return float(self.chain.step.mean())

    @property
    def ess(self):
        r"""The effective sample size of the kept draws: the smaller of those of
        :math:`-\log p(w \mid y)` and of the image's mean intensity
        (:func:`~cil_genreg.latent.effective_sample_size`)."""
        self._draws()
        means = torch.stack([self.images(w).flatten(1).mean(1) for w in self._kept])
        return min(effective_sample_size(torch.stack(self._potentials)),
                   effective_sample_size(means))

    def interval(self, level=0.95, batch=64):
        """The pixel-wise central ``level`` interval of the posterior (empirical quantiles of
        the kept images, regenerated ``batch`` at a time).

        Parameters
        ----------
        level : float
            in (0, 1).
        batch : int

        Returns
        -------
        (ImageData, ImageData)
            the lower and upper bounds.
        """
        level = check_fraction(level, "level")
        w = torch.as_tensor(self.samples)
        images = torch.cat([self.images(w[i:i + batch]) for i in range(0, len(w), batch)])
        q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=images.dtype)
        low, high = torch.quantile(images.flatten(1), q, dim=0)
        shape = images.shape[1:]
        return self._image(low.reshape(shape)), self._image(high.reshape(shape))


def calibration(sampler, truth, level=0.95, seconds=None):
    r"""How well a posterior's spread matches its error, against the truth: the share of the
    truth's pixels inside the central ``level`` interval (:math:`\approx` ``level`` when
    calibrated), the correlation of the pixel std with :math:`|\bar x - x^\dagger|`, the
    effective sample size and the seconds per effective sample.

    Parameters
    ----------
    sampler : LatentPosteriorSampler
        after sampling.
    truth : DataContainer or numpy.ndarray
    level : float
    seconds : float, optional
        the cost to divide by the ESS (default: the sampler's own :attr:`seconds`).

    Returns
    -------
    dict
        ``coverage``, ``std_error_correlation``, ``ess``, ``seconds_per_effective_sample``,
        ``acceptance``, ``step``, ``draws``, ``rmse`` (of the mean), ``mean_std``.
    """
    truth = np.asarray(truth.as_array() if hasattr(truth, "as_array") else truth, np.float64)
    low, high = (b.as_array() for b in sampler.interval(level))
    mean, std = sampler.mean.as_array(), sampler.std.as_array()
    error = np.abs(mean - truth)
    inside = (truth >= low) & (truth <= high)
    correlation = float(np.corrcoef(std.ravel(), error.ravel())[0, 1]) if std.std() > 0 \
        else float("nan")
    ess = sampler.ess
    cost = sampler.seconds if seconds is None else float(seconds)
    return {"coverage": float(inside.mean()), "std_error_correlation": correlation,
            "ess": ess, "seconds_per_effective_sample": cost / ess if ess == ess else math.nan,
            "acceptance": sampler.acceptance, "step": sampler.step,
            "draws": len(sampler.samples), "rmse": float(np.sqrt(np.mean(error ** 2))),
            "mean_std": float(std.mean())}
