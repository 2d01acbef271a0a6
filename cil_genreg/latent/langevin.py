r"""Langevin Monte Carlo on the latent (torch only): samples of :math:`p(w) \propto e^{-U(w)}`,
batched over chains, and the effective sample size of a chain.

One step of the unadjusted Langevin algorithm (ULA) with step :math:`h`,

.. math:: w' = w - h\,\nabla U(w) + \sqrt{2h}\,\xi, \qquad \xi \sim N(0, I),

is biased by :math:`O(h)`; the Metropolis-adjusted one (MALA, Roberts & Tweedie 1996) accepts
:math:`w'` with probability

.. math:: \alpha = \min\Big(1, \exp\big(U(w) - U(w') + \log q(w \mid w') - \log q(w' \mid w)\big)\Big),
          \qquad \log q(w' \mid w) = -\frac{\|w' - w + h\nabla U(w)\|^2}{4h},

and is exact (its stationary law is :math:`p`). During burn-in the step adapts, per chain, by
Robbins–Monro on :math:`\log h` towards the acceptance 0.574 optimal for MALA in high
dimension (Roberts & Rosenthal 1998); ULA adapts on the same would-be acceptance, so both run
at the step MALA would choose.
"""
import math

import torch

#: MALA's optimal acceptance rate in high dimension (Roberts & Rosenthal 1998)
MALA_TARGET_ACCEPTANCE = 0.574


class ChainDivergedError(FloatingPointError):
    """A Langevin chain reached NaN or Inf: the step was too large for the posterior's
    curvature. Nothing of the diverged state is kept."""


class LangevinChain:
    r"""ULA or MALA chains on :math:`p(w) \propto e^{-U(w)}` (module docstring), one per row of
    ``w0``, stepped together (the potential is evaluated on the batch of chains at once).

    Parameters
    ----------
    potential : callable
        ``potential(w) -> (U (R,), ∇U (R, N), ...)`` for points ``w`` (R, N) (extra outputs are
        ignored), e.g. :class:`cil_genreg.algorithms.latent_objective.LatentObjective`.
    w0 : torch.Tensor
        (R, N) the chains' starts.
    step : float
        :math:`h > 0`, the initial step of every chain.
    exact : bool
        MALA (True) or ULA (False).
    seed : int, optional
        seeds the noise and the accept/reject draws.

    Attributes
    ----------
    w, u, grad : torch.Tensor
        the chains' states (R, N), potentials (R,) and gradients (R, N).
    step : torch.Tensor
        (R,) the current steps.
    accepted, proposed : int
        MALA's accepted and proposed moves (over all chains) since :meth:`reset_counts`.
    """

    def __init__(self, potential, w0, step, exact=True, seed=None):
        if not (isinstance(step, (int, float)) and math.isfinite(step) and step > 0):
            raise ValueError(f"the Langevin step must be a finite number > 0, got {step!r}")
        self.potential = potential
        self.exact = bool(exact)
        self.rng = torch.Generator().manual_seed(0 if seed is None else int(seed))
        self.w = w0.detach().clone()
        self.u, self.grad = self._evaluate(self.w)
        self._check(self.u, self.grad, float(step), "start")
        self.step = torch.full((self.w.shape[0],), float(step), dtype=self.w.dtype)
        self.adaptations = 0
        self.reset_counts()

    def _evaluate(self, w):
        out = self.potential(w)
        return out[0].detach().to(w.dtype), out[1].detach().to(w.dtype)

    def _check(self, u, grad, step, where):
        if not (bool(torch.isfinite(u).all()) and bool(torch.isfinite(grad).all())):
            raise ChainDivergedError(
                f"the Langevin chain diverged (NaN or Inf potential) at the {where} with step "
                f"size {step:.3g}: use a smaller step (or a larger burn-in to adapt it); "
                "no image was written from the diverged chain.")

    def refresh(self):
        """Evaluate the potential afresh at the current states: after the potential itself
        changed (e.g. the image a Gibbs sampler conditions on), the kept :attr:`u` and
        :attr:`grad` belong to the old one and MALA's acceptance test would be wrong.

        Raises
        ------
        ChainDivergedError
            when the new potential or its gradient is NaN or Inf at the current states.
        """
        self.u, self.grad = self._evaluate(self.w)
        self._check(self.u, self.grad, float(self.step.max()), "refresh of the potential")

    def reset_counts(self):
        """Start counting MALA's accepted and proposed moves afresh (after burn-in)."""
        self.accepted = 0
        self.proposed = 0

    @property
    def acceptance(self):
        """The share of accepted proposals since :meth:`reset_counts` (NaN before any)."""
        return self.accepted / self.proposed if self.proposed else float("nan")

    def advance(self, adapt=False):
        r"""One ULA / MALA step of every chain; with ``adapt`` the steps move towards
        :data:`MALA_TARGET_ACCEPTANCE` (:math:`\log h \mathrel{+}= (\alpha - 0.574) / (t + 1)^{0.6}`).

        Returns
        -------
        torch.Tensor
            (R,) the acceptance probabilities :math:`\alpha` of the proposals.

        Raises
        ------
        ChainDivergedError
            when a proposal's potential or gradient is NaN or Inf.
        """
        h = self.step[:, None]
        noise = torch.randn(self.w.shape, generator=self.rng, dtype=self.w.dtype)
        proposal = self.w - h * self.grad + torch.sqrt(2 * h) * noise
        u, grad = self._evaluate(proposal)
        self._check(u, grad, float(self.step.max()),
                    f"iteration {self.proposed // len(self.w) + 1}")
        forward = (proposal - self.w + h * self.grad).square().sum(1) / (4 * self.step)
        backward = (self.w - proposal + h * grad).square().sum(1) / (4 * self.step)
        alpha = torch.exp(torch.clamp(self.u - u + forward - backward, max=0.0))
        move = torch.rand(alpha.shape, generator=self.rng, dtype=alpha.dtype) < alpha \
            if self.exact else torch.ones_like(alpha, dtype=torch.bool)
        self.w = torch.where(move[:, None], proposal, self.w)
        self.u = torch.where(move, u, self.u)
        self.grad = torch.where(move[:, None], grad, self.grad)
        self.accepted += int(move.sum())
        self.proposed += len(move)
        if adapt:
            rate = (self.adaptations + 1) ** -0.6
            self.step = self.step * torch.exp(rate * (alpha - MALA_TARGET_ACCEPTANCE))
            self.adaptations += 1
        return alpha


def effective_sample_size(trace):
    r"""The effective sample size of a scalar trace, by Geyer's (1992) initial positive
    sequence on the autocorrelation :math:`\rho_t` averaged over the chains,

    .. math:: \mathrm{ESS} = \frac{C\,T}{-1 + 2\sum_{k=0}^{K} (\rho_{2k} + \rho_{2k+1})},

    summing the pairs while they are positive (:math:`C` chains of :math:`T` draws).

    Parameters
    ----------
    trace : torch.Tensor or array
        (T,) one chain or (T, C) chains.

    Returns
    -------
    float
        between 1 and :math:`C\,T` (for independent draws about :math:`C\,T`); NaN for fewer
        than 4 draws or a constant trace.
    """
    x = torch.as_tensor(trace, dtype=torch.float64)
    x = x[:, None] if x.ndim == 1 else x
    t, chains = x.shape
    if t < 4:
        return float("nan")
    x = x - x.mean(0)
    size = 1 << (2 * t - 1).bit_length()
    spectrum = torch.fft.rfft(x, n=size, dim=0)
    acov = torch.fft.irfft(spectrum * spectrum.conj(), n=size, dim=0)[:t].mean(1) / t
    if not acov[0] > 0:
        return float("nan")
    rho = (acov / acov[0]).tolist()
    total = -1.0
    for k in range(0, t - 1, 2):
        pair = rho[k] + rho[k + 1]
        if pair <= 0:
            break
        total += 2 * pair
    return float(min(chains * t, max(1.0, chains * t / total)))
