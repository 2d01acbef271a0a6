r"""Sampling the soft method's joint posterior of the image and the latent, as a CIL
Algorithm: pixel uncertainty that is not confined to the generator's range."""
import math

import numpy as np
import torch

from ..latent.generator import GeneratorAdapter
from ..latent.image_potential import ImageMisfitPotential
from ..latent.langevin import ChainDivergedError, LangevinChain
from ..utilities.validation import check_domain, check_int, check_positive
from .image_block import GaussianImageBlock
from .posterior_base import PosteriorSampler


def soft_posterior_scales(sigma, lam, mu=None):
    r"""The joint posterior's scales read off the soft method
    :math:`\min_{x, z} \|Ax - y\|^2 + \lambda(\|G(z) - x\|^2 + \mu\|z\|^2)` (the package's
    convention) with noise :math:`\sigma`: multiplying :math:`-\log p(x, w \mid y)` by
    :math:`2\sigma^2` gives :math:`\|Ax - y\|^2 + (\sigma^2/\tau^2)\|x - G(w)\|^2 +
    (\sigma^2/s^2)\|w\|^2` for a latent prior :math:`N(0, s^2 I)`, so

    .. math:: \tau^2 = \sigma^2 / \lambda, \qquad s^2 = \sigma^2 / (\lambda\mu) = \tau^2/\mu.

    The sampler's latent prior is :math:`N(0, I)` (with a whitened generator, the fitted latent
    Gaussian: :math:`\|w\|^2 = (z - m)^T\Sigma^{-1}(z - m)`): the soft reconstruction at
    :math:`(\lambda, \mu)` is the joint posterior's mode exactly when :math:`\mu = \tau^2 =
    \sigma^2/\lambda`.

    Parameters
    ----------
    sigma, lam : float
        finite and > 0.
    mu : float, optional
        the soft method's latent weight, > 0.

    Returns
    -------
    dict
        ``tau``, ``mu_consistent`` (:math:`\sigma^2/\lambda`) and, with ``mu``,
        ``latent_variance`` (:math:`s^2`).
    """
    sigma = check_positive(sigma, "sigma (the noise's standard deviation)")
    lam = check_positive(lam, "lam (the soft method's weight)")
    out = {"tau": sigma / math.sqrt(lam), "mu_consistent": sigma ** 2 / lam}
    if mu is not None:
        out["latent_variance"] = sigma ** 2 / (lam * check_positive(mu, "mu"))
    return out


def latent_given_image(generator, x, tau, iterations=50):
    r"""The mode of :math:`p(w \mid x) \propto \exp(-\|x - G(w)\|^2/2\tau^2 - \|w\|^2/2)`
    by :class:`~cil_genreg.algorithms.LatentLBFGS` from the encoder's code of ``x`` (zero
    without an encoder): the soft method's latent at its image, a start of the joint chain.

    Parameters
    ----------
    generator : torch.nn.Module
    x : ImageData
        a 2D image of the generator's size.
    tau : float
    iterations : int

    Returns
    -------
    VectorData
    """
    from cil.optimisation.functions import L2NormSquared, OperatorCompositionFunction
    from ..operators.generator_operator import GeneratorOperator
    from .latent_lbfgs import LatentLBFGS
    tau = check_positive(tau, "tau")
    G = GeneratorOperator(generator, range_geometry=x.geometry)
    start = G.encode(x)
    f = (0.5 / tau ** 2) * OperatorCompositionFunction(L2NormSquared(b=x), G) \
        + 0.5 * L2NormSquared()
    algo = LatentLBFGS(initial=start if start is not None else G.domain_geometry().allocate(0),
                       f=f, max_iteration=iterations, update_objective_interval=iterations)
    algo.run(iterations, verbose=0)
    return algo.solution


class JointPosteriorSampler(PosteriorSampler):
    r"""Gibbs sampling of the soft method's joint posterior of the image :math:`x` and the
    latent :math:`w`,

    .. math:: p(x, w \mid y) \propto \exp\Big(-\frac{\|Ax - y\|^2}{2\sigma^2}
              - \frac{\|x - G(w)\|^2}{2\tau^2} - \frac12\|w\|^2\Big),

    the image a Gaussian deviation of scale :math:`\tau` per pixel from the generator's range
    (the soft regulariser read as a posterior: :math:`\tau^2 = \sigma^2/\lambda`, see
    :func:`soft_posterior_scales`). One iteration of every chain is

    1. :math:`x \sim p(x \mid w, y) = N(m, Q^{-1})`, :math:`Q = A^TA/\sigma^2 + I/\tau^2`,
       :math:`Qm = A^Ty/\sigma^2 + G(w)/\tau^2`, drawn exactly by perturbation–optimisation
       (:class:`~cil_genreg.algorithms.image_block.GaussianImageBlock`: CG to ``tolerance``,
       warm-started);
    2. ``latent_steps`` MALA (or ULA) steps of :class:`~cil_genreg.latent.LangevinChain` on
       :math:`w \mid x`, :math:`U(w) = \|x - G(w)\|^2/2\tau^2 + \|w\|^2/2`
       (:class:`~cil_genreg.latent.ImageMisfitPotential`), the step adapted during burn-in.

    Both leave the joint posterior invariant, so their alternation samples it. With a
    :class:`~cil_genreg.models.WhitenedGenerator` the latent prior is the fitted Gaussian.
    The outputs are the mean and the pixel std of the image :math:`x` (not of :math:`G(w)`),
    whose kept draws are stored (:math:`K` images of float32); the potential of the effective
    sample size is :math:`-\log p(x, w \mid y)`.

    Parameters
    ----------
    initial : ImageData
        the start of :math:`x`, in ``A.domain_geometry()`` (best: the soft reconstruction).
    A : cil LinearOperator
        2D image to data.
    y : DataContainer
        the data, in ``A``'s range.
    generator : torch.nn.Module
        :math:`G`, making images of ``A``'s domain size.
    sigma : float
        the noise's standard deviation per datum, finite and > 0.
    tau : float, optional
        the image's deviation scale from :math:`G(w)`, finite and > 0.
    lam : float, optional
        the soft method's :math:`\lambda` instead of ``tau``: :math:`\tau = \sigma/\sqrt\lambda`.
    latent : VectorData or array, optional
        the start of :math:`w` (default: the encoder's code of ``initial``, else zero; best:
        :func:`latent_given_image`).
    step, burn_in, thin, exact, chains, seed
        as :class:`~cil_genreg.algorithms.LatentPosteriorSampler` (``step`` of the latent
        block); the chains all start from ``initial`` and ``latent``.
    latent_steps : int
        Langevin steps of the latent block per iteration.
    tolerance, max_cg_iterations
        of the image block's CG.
    **kwargs
        ``update_objective_interval`` of CIL's Algorithm.
    """

    store_images = True

    def __init__(self, initial=None, A=None, y=None, generator=None, sigma=None, tau=None,
                 lam=None, latent=None, step=1e-2, burn_in=200, thin=1, exact=True, chains=1,
                 latent_steps=1, tolerance=1e-6, max_cg_iterations=1000, seed=None, **kwargs):
        super().__init__(**kwargs)
        if initial is not None and A is not None:
            self.set_up(initial, A, y, generator, sigma, tau=tau, lam=lam, latent=latent,
                        step=step, burn_in=burn_in, thin=thin, exact=exact, chains=chains,
                        latent_steps=latent_steps, tolerance=tolerance,
                        max_cg_iterations=max_cg_iterations, seed=seed)

    def set_up(self, initial, A, y, generator, sigma, tau=None, lam=None, latent=None,
               step=1e-2, burn_in=200, thin=1, exact=True, chains=1, latent_steps=1,
               tolerance=1e-6, max_cg_iterations=1000, seed=None):
        """Set up the sampler (see the class for the parameters).

        Raises
        ------
        TypeError
            for an ``initial`` that is not an image, ``y`` not a DataContainer.
        ValueError
            for a non-finite or non-positive ``sigma``, ``tau``, ``lam`` or ``step``, both or
            neither of ``tau`` and ``lam``, a 3D image, non-finite data, a negative
            ``burn_in``, ``thin``, ``chains`` or ``latent_steps`` below 1.
        """
        geometry = A.domain_geometry()
        check_domain(initial, A, "initial")
        if len(geometry.shape) != 2:
            raise ValueError(f"the joint sampler draws 2D images; A's images have shape "
                             f"{tuple(geometry.shape)}.")
        sigma, step, chains = self._set_up_common(sigma, step, burn_in, thin, chains, geometry)
        self.tau = _tau(sigma, tau, lam)
        self.lam = (sigma / self.tau) ** 2
        self.latent_steps = check_int(latent_steps, "latent_steps", low=1)
        if not hasattr(y, "as_array") or not np.isfinite(y.as_array()).all():
            raise ValueError("y must be a DataContainer of finite data in A's range.")
        adapter = GeneratorAdapter(generator)
        adapter.check_image_shape(geometry.shape, "A's image")
        self.block = GaussianImageBlock(A, y, sigma, self.tau, tolerance, max_cg_iterations,
                                        seed=(0 if seed is None else int(seed)) + 1)
        x0 = np.asarray(initial.as_array(), np.float64)
        self._xs = np.repeat(x0[None], chains, axis=0)
        self.potential = ImageMisfitPotential(adapter, self._xs, self.tau)
        w0 = _latent_start(latent, initial, generator, geometry, adapter.latent_dim)
        self.chain = LangevinChain(self.potential, w0.reshape(1, -1).repeat(chains, 1),
                                   float(step), exact=exact, seed=seed)
        self._data = torch.tensor([self.block.data_misfit(x0)] * chains, dtype=torch.float64)
        self.x = initial.copy()
        self.configured = True

    def _advance(self, adapt):
        g = self.potential.images(self.chain.w).double().numpy().reshape(self._xs.shape)
        try:
            for r in range(len(self._xs)):
                self._xs[r] = self.block.draw(g[r], self._xs[r])
        except FloatingPointError:
            raise ChainDivergedError(
                f"the joint chain diverged (a NaN image) at iteration {self.iteration + 1} "
                f"with latent step size {float(self.chain.step.max()):.3g}: use a smaller "
                "step; no image was written from the diverged chain.") from None
        self.potential.set_targets(self._xs)
        self.chain.refresh()
        for _ in range(self.latent_steps):
            self.chain.advance(adapt=adapt)
        self._data = torch.tensor([self.block.data_misfit(x) for x in self._xs],
                                  dtype=torch.float64)

    def _state_potential(self):
        return self._data + self.chain.u.double()

    def _state(self):
        return self.chain.w.clone(), torch.from_numpy(self._xs.copy()), self._state_potential()

    def _show(self):
        self.x.fill(self._xs[0].astype(np.float32))

    def images(self, w):
        r"""The images :math:`G(w)` of latent rows ``w`` (R, N), (R, *image shape): the
        generator's part of the draws (the outputs are of :math:`x`)."""
        return self.potential.images(w).reshape(w.shape[0], *self.image_geometry.shape)

    @property
    def cg_iterations(self):
        """The mean CG iterations per image draw."""
        its = self.block.iterations
        return float(np.mean(its)) if its else float("nan")


def _tau(sigma, tau, lam):
    if (tau is None) == (lam is None):
        raise ValueError("give the image's deviation scale as exactly one of tau (τ) or lam "
                         "(the soft method's λ, τ = σ/√λ).")
    if tau is not None:
        return check_positive(tau, "tau (the image's deviation from G(w))")
    return soft_posterior_scales(sigma, lam)["tau"]


def _latent_start(latent, initial, generator, geometry, latent_dim):
    if latent is None:
        from ..operators.generator_operator import GeneratorOperator
        code = GeneratorOperator(generator, range_geometry=geometry).encode(initial)
        return torch.zeros(latent_dim) if code is None else \
            torch.as_tensor(code.as_array(), dtype=torch.float32)
    w = torch.as_tensor(np.asarray(latent.as_array() if hasattr(latent, "as_array")
                                   else latent), dtype=torch.float32).reshape(-1)
    if w.numel() != latent_dim or not bool(torch.isfinite(w).all()):
        raise ValueError(f"latent must hold {latent_dim} finite values, got {w.numel()}.")
    return w
