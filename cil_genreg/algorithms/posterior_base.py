r"""The common part of the package's posterior samplers as CIL Algorithms: burn-in (the step
adapting), thinning, the kept draws, the pixel mean and standard deviation accumulated over them,
the effective sample size and the pixel-wise intervals; and their :func:`calibration`
against a known truth.

A sampler keeps, every ``thin``-th step after ``burn_in``, for each of its chains: the latent
:math:`w`, the image :math:`x` the posterior is about (:math:`G(w)` for the latent posterior, the
image itself for the soft method's joint posterior) and the potential :math:`-\log p` of the
state. Its outputs are

.. math:: \bar x = \frac1K \sum_k x_k, \qquad
          s = \Big(\frac1{K - 1}\sum_k (x_k - \bar x)^2\Big)^{1/2}

over the :math:`K` kept draws (of every chain).
"""
import math
import time

import numpy as np
import torch
from cil.optimisation.algorithms import Algorithm

from ..latent.langevin import effective_sample_size
from ..utilities.bridge import from_tensor
from ..utilities.validation import check_fraction, check_int, check_positive


class PosteriorSampler(Algorithm):
    r"""Base of :class:`~cil_genreg.algorithms.LatentPosteriorSampler` and
    :class:`~cil_genreg.algorithms.JointPosteriorSampler` (module docstring). A subclass sets
    :attr:`chain` (the :class:`~cil_genreg.latent.LangevinChain` of the latent) and the
    attributes of :meth:`_set_up_common`, and defines

    * ``_advance(adapt)``: one step of every chain (``adapt`` during burn-in);
    * ``_state()``: ``(w (R, N), images (R, *shape), potentials (R,))`` of the chains now;
    * ``_show()``: write the first chain's state into :attr:`x`;
    * ``images(w)``: the images of latent rows, unless it stores its images
      (``store_images``).

    Parameters
    ----------
    **kwargs
        ``update_objective_interval`` of CIL's Algorithm (the subclass's ``set_up`` takes the
        sampler's own).

    Attributes
    ----------
    seconds : float
        time spent in :meth:`update`.
    """

    #: keep the images of the draws (True) or regenerate them from the latents when needed
    store_images = False

    def _set_up_common(self, sigma, step, burn_in, thin, chains, geometry):
        """Check and set the options every sampler has; returns (σ, step, chains)."""
        self.sigma = check_positive(sigma, "sigma (the noise's standard deviation)")
        step = check_positive(step, "step")
        self.burn_in = check_int(burn_in, "burn_in", low=0)
        self.thin = check_int(thin, "thin", low=1)
        chains = check_int(chains, "chains", low=1)
        self.image_geometry = geometry
        self._kept, self._potentials, self._means, self._images = [], [], [], []
        self._sum = self._squares = None
        self.seconds = 0.0
        return self.sigma, step, chains

    def update(self):
        """One step of every chain (adapting the step during burn-in); every ``thin``-th step
        after burn-in the draws are kept and their images accumulated."""
        started = time.perf_counter()
        steps = self.iteration + 1
        burning = steps <= self.burn_in
        self._advance(adapt=burning)
        if steps == self.burn_in:
            self.chain.reset_counts()
        if not burning and (steps - self.burn_in) % self.thin == 0:
            self._keep()
        self._show()
        self.seconds += time.perf_counter() - started

    def _keep(self):
        w, images, potentials = self._state()
        images = images.detach().cpu()
        self._kept.append(w.detach().clone())
        self._potentials.append(potentials.detach().double().clone())
        if self.store_images:
            self._images.append(images.float().clone())
        images = images.double()
        self._means.append(images.flatten(1).mean(1))
        self._sum = images.sum(0) if self._sum is None else self._sum + images.sum(0)
        squares = images.square().sum(0)
        self._squares = squares if self._squares is None else self._squares + squares

    def update_objective(self):
        r"""Append the first chain's potential :math:`-\log p` (up to a constant)."""
        self.loss.append(float(self._state_potential()[0]))

    def _state_potential(self):
        return self.chain.u

    def sample(self, samples, verbose=0):
        """Run until ``samples`` draws per chain are kept (burn-in first, if not yet done).

        Parameters
        ----------
        samples : int
            draws per chain, >= 1.
        verbose : int

        Returns
        -------
        PosteriorSampler
            this sampler.
        """
        samples = check_int(samples, "samples", low=1)
        todo = self.burn_in + samples * self.thin - (self.iteration + 1)
        if todo > 0:
            self.run(todo, verbose=verbose)
        return self

    def run(self, iterations=None, callbacks=None, verbose=0):
        """Run ``iterations`` steps (CIL's :meth:`~cil.optimisation.algorithms.Algorithm.run`).

        Parameters
        ----------
        iterations : int
            >= 1.
        callbacks : list of callables, optional
        verbose : int

        Returns
        -------
        PosteriorSampler
        """
        iterations = check_int(iterations, "iterations (sampler steps)", low=1)
        super().run(iterations, callbacks=callbacks, verbose=verbose)
        return self

    def _draws(self):
        if not self._kept:
            raise ValueError(f"no draws kept yet: run the sampler past its burn-in "
                             f"({self.burn_in} steps), e.g. .sample(200).")
        return len(self._kept) * self.chain.w.shape[0]

    def _image(self, values):
        return from_tensor(values.float(), out=self.image_geometry.allocate(None))

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
        r"""The effective sample size of the kept draws: the smaller of those of the
        potential :math:`-\log p` and of the image's mean intensity
        (:func:`~cil_genreg.latent.effective_sample_size`)."""
        self._draws()
        return min(effective_sample_size(torch.stack(self._potentials)),
                   effective_sample_size(torch.stack(self._means)))

    def kept_images(self, batch=64):
        """The kept images, (K, *image shape) float32 (chains interleaved): stored, or
        regenerated from the kept latents ``batch`` at a time."""
        self._draws()
        if self.store_images:
            return torch.cat(self._images)
        w = torch.cat(self._kept)
        return torch.cat([self.images(w[i:i + batch]).float() for i in range(0, len(w), batch)])

    def interval(self, level=0.95, batch=64):
        """The pixel-wise central ``level`` interval of the posterior (empirical quantiles of
        the kept images).

        Parameters
        ----------
        level : float
            in (0, 1).
        batch : int
            images regenerated at a time (a sampler that does not store them).

        Returns
        -------
        (ImageData, ImageData)
            the lower and upper bounds.
        """
        level = check_fraction(level, "level")
        images = self.kept_images(batch)
        q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=images.dtype)
        low, high = torch.quantile(images.flatten(1), q, dim=0)
        shape = images.shape[1:]
        return self._image(low.reshape(shape)), self._image(high.reshape(shape))


def calibration(sampler, truth, level=0.95, seconds=None):
    r"""How well a posterior's spread matches its error, against the truth: the share of the
    truth's pixels inside the central ``level`` interval (:math:`\approx` ``level`` when
    calibrated), both the empirical-quantile one (``coverage``) and the Gaussian one
    :math:`\bar x \pm z\,s` (``coverage_gaussian``, :math:`z = 1.96` at 95 %), the correlation
    of the pixel std with :math:`|\bar x - x^\dagger|`, the effective sample size and the
    seconds per effective sample.

    Parameters
    ----------
    sampler : PosteriorSampler
        after sampling.
    truth : DataContainer or numpy.ndarray
    level : float
    seconds : float, optional
        the cost to divide by the ESS (default: the sampler's own :attr:`seconds`).

    Returns
    -------
    dict
        ``coverage``, ``coverage_gaussian``, ``std_error_correlation``, ``ess``,
        ``seconds_per_effective_sample``, ``ess_per_second``, ``acceptance``, ``step``,
        ``draws``, ``rmse`` (of the mean), ``mean_std``.
    """
    from statistics import NormalDist
    truth = np.asarray(truth.as_array() if hasattr(truth, "as_array") else truth, np.float64)
    low, high = (b.as_array() for b in sampler.interval(level))
    mean, std = sampler.mean.as_array(), sampler.std.as_array()
    error = np.abs(mean - truth)
    inside = (truth >= low) & (truth <= high)
    z = NormalDist().inv_cdf((1 + level) / 2)
    correlation = float(np.corrcoef(std.ravel(), error.ravel())[0, 1]) if std.std() > 0 \
        else float("nan")
    ess = sampler.ess
    cost = sampler.seconds if seconds is None else float(seconds)
    return {"coverage": float(inside.mean()),
            "coverage_gaussian": float((error <= z * std).mean()),
            "std_error_correlation": correlation,
            "ess": ess, "seconds_per_effective_sample": cost / ess if ess == ess else math.nan,
            "ess_per_second": ess / cost if cost > 0 else math.nan,
            "acceptance": sampler.acceptance, "step": sampler.step,
            "draws": len(sampler.samples), "rmse": float(np.sqrt(np.mean(error ** 2))),
            "mean_std": float(std.mean())}
