r"""Plug-and-Play ULA (Laumont, De Bortoli, Almansa, Delon, Durmus & Pereyra, *Bayesian imaging
using Plug & Play priors: when Langevin meets Tweedie*, SIAM J. Imaging Sci. 2022), the
sampler deepinv ships as ``deepinv.sampling.ULA``, as a CIL Algorithm: the anchor the
package's generative posteriors are compared with.

The prior enters through a denoiser :math:`D_\varepsilon` of noise variance
:math:`\varepsilon = \sigma_{den}^2`. By Tweedie's formula the MMSE denoiser gives the score of
the prior smoothed by that noise, :math:`\nabla \log p_\varepsilon(x) = (D_\varepsilon(x) -
x)/\varepsilon`, and the unadjusted Langevin chain on :math:`p(y \mid x)\,p_\varepsilon(x)^\alpha`
is

.. math:: x_{k+1} = \Pi_C\Big(x_k - \delta\,\nabla f(x_k)
          + \frac{\delta\alpha}{\varepsilon}\big(D_\varepsilon(x_k) - x_k\big)
          + \sqrt{2\delta}\,\xi_{k+1}\Big), \qquad
          f(x) = \frac{\|Ax - y\|^2}{2\sigma^2},\quad \xi_{k+1} \sim N(0, I),

:math:`\Pi_C` the clip to the box :math:`C = [a, b]` (deepinv's ``clip``; the paper's
projected variant, Algorithm 2). Its step bound (the paper's :math:`\delta < \frac13
\mathrm{Lip}^{-1}`, the drift's Lipschitz constant :math:`L_f + \alpha L/\varepsilon` with the
denoiser residual's constant :math:`L` taken as 1) gives the default

.. math:: \delta = \frac{1}{3\,(L_f + \alpha/\varepsilon)}, \qquad L_f = \|A\|^2/\sigma^2.

The order of the operations, the random numbers (one ``randn`` of the image's shape per step,
drawn first) and the clip are deepinv's ``ULAIterator`` + ``MonteCarlo``: with the same seed
and start both give the same chain up to rounding (tests/test_pnp_ula.py). ULA has no
accept/reject step: its stationary law is the target's up to an :math:`O(\delta)` bias (and
that of :math:`\varepsilon` and of the clip).
"""
import math

import torch

from ..functions.denoiser_prior import DenoiserPrior
from ..utilities.bridge import as_tensor, from_tensor
from ..utilities.validation import check_positive, check_real
from .posterior_base import PosteriorSampler

__all__ = ["PlugAndPlayULA"]


class _ULAChain:
    """The state the base's bookkeeping reads: the draws ``w`` (R, N) (the images, flattened:
    PnP-ULA has no latent), the step per chain, the acceptance (1: ULA accepts every move) and
    the potential ``u`` (R,) (the data term f(x): the prior's value is implicit)."""

    acceptance = 1.0

    def __init__(self, w, step, u):
        self.w, self.u = w, u
        self.step = torch.full((w.shape[0],), float(step), dtype=torch.float64)

    def reset_counts(self):
        """Nothing to reset: no rejections are counted."""


class PlugAndPlayULA(PosteriorSampler):
    r"""PnP-ULA draws of :math:`p(x \mid y) \propto \exp(-\|Ax - y\|^2/2\sigma^2)\,
    p_\varepsilon(x)^\alpha` with a trained denoiser (module docstring for the iteration,
    the step and deepinv's equivalence),

    .. math:: x_{k+1} = \Pi_{[a,b]}\Big(x_k + \delta\Big(-\frac{A^\top(Ax_k - y)}{\sigma^2}
              + \frac{\alpha}{\varepsilon}(D_\varepsilon(x_k) - x_k)\Big)
              + \sqrt{2\delta}\,\xi_{k+1}\Big), \qquad \varepsilon = \sigma_{den}^2,

    whose outputs are the posterior mean :math:`\bar x` and pixel std :math:`s` of the kept
    images (every ``thin``-th step after ``burn_in``, of every chain), as for the package's
    other samplers (:class:`~cil_genreg.algorithms.posterior_base.PosteriorSampler`). Its
    :attr:`ess` is the smaller of those of the data term :math:`f(x_k)` (the prior's
    :math:`-\log p_\varepsilon` has no value) and of the image's mean intensity.

    Parameters
    ----------
    initial : ImageData
        the start, in ``A.domain_geometry()`` (e.g. a TV or PnP reconstruction).
    A : LinearOperator
        the forward operator; its norm is estimated (CIL's power method) unless ``norm``.
    y : AcquisitionData
        the data.
    denoiser : torch.nn.Module or DenoiserPrior
        :math:`D`: ``denoiser(v, sigma)``, v (B, 1, H, W) (e.g. ``pretrained("ct-drunet-128")``);
        a generator is refused with a TypeError naming what it is.
    sigma : float
        the noise's standard deviation per datum, finite and > 0.
    sigma_denoiser : float
        :math:`\sigma_{den}`, the denoiser's noise level (> 0): :math:`\varepsilon =
        \sigma_{den}^2` (deepinv's ``sigma``; default 0.05).
    alpha : float
        the prior's weight :math:`\alpha > 0` (default 1).
    step : float, optional
        :math:`\delta > 0`; default :math:`1/(3(\|A\|^2/\sigma^2 + \alpha/\varepsilon))`.
    burn_in, thin, chains : int
        discarded steps (the step is fixed: nothing adapts), keep every ``thin``-th, batched
        independent chains (all from ``initial``).
    clip : (float, float) or None
        the box :math:`[a, b]` of the projection (default (0, 1), the images' range; None: none).
    norm : float, optional
        :math:`\|A\|`, if known.
    seed : int, optional
    **kwargs
        ``update_objective_interval`` of CIL's Algorithm.

    Raises
    ------
    ValueError
        for a non-finite or non-positive ``sigma``, ``sigma_denoiser``, ``alpha`` or ``step``,
        a bad ``burn_in``/``thin``/``chains``, a ``clip`` with a > b; FloatingPointError (from
        :meth:`update`) when the chain leaves the finite numbers, naming the step.
    """

    store_images = False

    def __init__(self, initial=None, A=None, y=None, denoiser=None, sigma=None,
                 sigma_denoiser=0.05, alpha=1.0, step=None, burn_in=200, thin=1, chains=1,
                 clip=(0.0, 1.0), norm=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if initial is not None and A is not None:
            self.set_up(initial, A, y, denoiser, sigma, sigma_denoiser=sigma_denoiser,
                        alpha=alpha, step=step, burn_in=burn_in, thin=thin, chains=chains,
                        clip=clip, norm=norm, seed=seed)

    def set_up(self, initial, A, y, denoiser, sigma, sigma_denoiser=0.05, alpha=1.0, step=None,
               burn_in=200, thin=1, chains=1, clip=(0.0, 1.0), norm=None, seed=None):
        """Set up the sampler (see the class for the parameters)."""
        self.sigma_denoiser = check_positive(sigma_denoiser, "sigma_denoiser")
        # the checks (a denoiser, not a generator), its device and its training range
        self.prior = denoiser if isinstance(denoiser, DenoiserPrior) else \
            DenoiserPrior(denoiser, sigma=self.sigma_denoiser)
        self.alpha = check_positive(alpha, "alpha")
        sigma = check_positive(sigma, "sigma (the noise's standard deviation)")
        norm = float(A.norm()) if norm is None else check_positive(norm, "norm")
        self.lipschitz = norm ** 2 / sigma ** 2
        epsilon = self.sigma_denoiser ** 2
        if step is None:
            step = 1.0 / (3.0 * (self.lipschitz + self.alpha / epsilon))
        sigma, step, chains = self._set_up_common(sigma, step, burn_in, thin, chains,
                                                  A.domain_geometry())
        if clip is not None:
            a, b = (check_real(c, "clip bound") for c in clip)
            if not a <= b:
                raise ValueError(f"clip must be (a, b) with a <= b, got {clip}.")
            clip = (a, b)
        self.clip, self.A, self.y = clip, A, y
        self.generator = torch.Generator().manual_seed(
            int(seed) if seed is not None else int(torch.randint(1 << 30, (1,))))
        self.shape = tuple(A.domain_geometry().shape)
        x = as_tensor(initial).reshape(1, *self.shape).repeat(chains, 1, *[1] * len(self.shape))
        self._residuals = [self._residual(x[r]) for r in range(chains)]
        self.chain = _ULAChain(x.reshape(chains, -1), step, self._data_terms())
        self.x = initial.copy()
        self.configured = True

    def _residual(self, image):
        """:math:`Ax - y` of one chain's image (a CIL DataContainer)."""
        return self.A.direct(from_tensor(image, out=self.A.domain_geometry().allocate(None))) \
            - self.y

    def _data_terms(self):
        return torch.tensor([float(r.squared_norm()) / (2.0 * self.sigma ** 2)
                             for r in self._residuals], dtype=torch.float64)

    def _prior_drift(self, x):
        r""":math:`(\alpha/\varepsilon)(D_\varepsilon(x) - x)` for the chains' images (R, *shape)."""
        denoised = self.prior.denoise(x.reshape(-1, 1, *self.shape[-2:]),
                                      self.sigma_denoiser).reshape(x.shape).cpu()
        return (self.alpha / self.sigma_denoiser ** 2) * (denoised - x)

    def _advance(self, adapt):
        """One PnP-ULA step of every chain (``adapt`` is ignored: the step is fixed)."""
        step = float(self.chain.step[0])
        x = self.chain.w.reshape(-1, *self.shape)
        noise = torch.randn(x.shape, generator=self.generator, dtype=x.dtype) \
            * math.sqrt(2.0 * step)
        likelihood = torch.stack([
            -as_tensor(self.A.adjoint(r)).reshape(self.shape) / self.sigma ** 2
            for r in self._residuals])
        x = x + step * (likelihood + self._prior_drift(x)) + noise
        if self.clip is not None:
            x = x.clamp(*self.clip)
        if not bool(torch.isfinite(x).all()):
            raise FloatingPointError(
                f"PnP-ULA left the finite numbers at step {self.iteration + 1} (step size "
                f"delta = {step:.3g}, sigma_denoiser = {self.sigma_denoiser:g}, alpha = "
                f"{self.alpha:g}): lower the step (default 1/(3(||A||^2/sigma^2 + "
                f"alpha/sigma_denoiser^2))) or check the data and the denoiser.")
        self._residuals = [self._residual(x[r]) for r in range(x.shape[0])]
        self.chain.w, self.chain.u = x.reshape(x.shape[0], -1), self._data_terms()

    def _state(self):
        return self.chain.w.clone(), self.images(self.chain.w), self.chain.u

    def _show(self):
        from_tensor(self.chain.w[0].reshape(self.shape), out=self.x)

    def images(self, w):
        """The images of draws ``w`` (R, N): PnP-ULA's draws are the images, flattened.

        Parameters
        ----------
        w : torch.Tensor
            (R, N).

        Returns
        -------
        torch.Tensor
            (R, *image shape).
        """
        return w.reshape(w.shape[0], *self.shape)

    @property
    def step(self):
        r"""The fixed step :math:`\delta`."""
        return float(self.chain.step[0])
