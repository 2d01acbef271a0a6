r"""L-BFGS for a batch of independent problems, vectorised over the batch.

Minimises :math:`f_b(z_b)` for :math:`b = 1, \dots, B` at once: one call of ``fg`` evaluates
all of them (one batched pass through the generator), but each problem keeps its own
curvature history, its own backtracking (Armijo) step and its own stopping test. So a volume's
slices, or the random restarts of one target, are solved exactly as if they were solved one
by one, at the cost of a single batch per evaluation.
"""
import torch

ARMIJO = 1e-4
MAX_BACKTRACKS = 20


def batched_lbfgs(fg, z, max_iter=100, tol=1e-6, history_size=8, memory=None):
    r"""Minimise a batch of independent smooth functions.

    Parameters
    ----------
    fg : callable
        ``fg(z) -> (f, g, aux)`` with ``z`` of shape (B, d), values ``f`` (B,) and gradients
        ``g`` (B, d) of each :math:`f_b` at :math:`z_b`, and any by-product ``aux`` with a
        leading batch dimension (e.g. the generated images), returned for the final points.
    z : torch.Tensor
        (B, d) starting points (not modified).
    max_iter : int
        iterations (each one direction and one line search) at most.
    tol : float
        a problem stops when its value changes by less than ``tol`` relative to its size, or
        when it is first-order optimal to that relative accuracy:
        :math:`\|\nabla f_b\|_\infty (1 + \|z_b\|_\infty) \le \text{tol}\,|f_b|` (a test
        that a warm start already near the minimum passes at once).
    history_size : int
        curvature pairs kept per problem.
    memory : CurvatureMemory, optional
        curvature pairs to start from, e.g. those of the previous solve of a nearby problem
        (a warm start of the Hessian estimate as well as of the point); updated in place.

    Returns
    -------
    (z, f, aux, iterations, evaluations) : the minimisers (B, d), their values (B,) and
    by-products, the iterations run and the calls of ``fg``.
    """
    z = z.detach().clone()
    f, g, aux = fg(z)
    evaluations = 1
    batch = z.shape[0]
    active = ~_stationary(f, g, z, tol)
    if memory is None or memory.batch not in (None, batch):
        memory = CurvatureMemory()
    memory.batch = batch
    s_hist, y_hist, rho_hist = memory.s, memory.y, memory.rho
    iterations = 0
    for iterations in range(1, max_iter + 1):
        direction = -_two_loop(g, s_hist, y_hist, rho_hist)
        slope = (g * direction).sum(dim=1)
        uphill = slope >= 0  # safeguard: fall back to steepest descent
        if bool(uphill.any()):
            direction[uphill] = -g[uphill]
            slope = torch.where(uphill, -(g * g).sum(dim=1), slope)
        if not s_hist:  # first step: a unit step in the largest coordinate
            scale = (1.0 / g.abs().amax(dim=1).clamp_min(1e-30)).clamp(max=1.0)
            direction = direction * scale[:, None]
            slope = slope * scale
        direction = direction * active[:, None]
        step = torch.ones(batch, dtype=z.dtype, device=z.device)
        # near a minimum, values change by less than their rounding error: allow that much
        slack = 4 * torch.finfo(f.dtype).eps * f.abs()
        for _ in range(MAX_BACKTRACKS):
            z_new = z + step[:, None] * direction
            f_new, g_new, aux_new = fg(z_new)
            evaluations += 1
            accepted = (f_new <= f + ARMIJO * step * slope + slack) | ~active
            if bool(accepted.all()):
                break
            step = torch.where(accepted, step, 0.5 * step)
        else:  # no decrease found for some: keep them where they are and stop them
            stuck = ~accepted
            z_new[stuck], f_new[stuck], g_new[stuck] = z[stuck], f[stuck], g[stuck]
            aux_new[stuck] = aux[stuck]
            active = active & accepted
        s, y = z_new - z, g_new - g
        sy = (s * y).sum(dim=1)
        rho = torch.where(sy > 1e-10 * (y * y).sum(dim=1).sqrt() * (s * s).sum(dim=1).sqrt(),
                          1.0 / sy.clamp_min(1e-30), torch.zeros_like(sy))
        s_hist.append(s * (rho > 0)[:, None])
        y_hist.append(y * (rho > 0)[:, None])
        rho_hist.append(rho)
        while len(s_hist) > history_size:
            s_hist.pop(0), y_hist.pop(0), rho_hist.pop(0)
        change = (f - f_new).abs()
        # stagnation: a step below the rounding error of z cannot make further progress
        stalled = s.abs().amax(dim=1) <= 4 * torch.finfo(z.dtype).eps * (1 + z.abs().amax(dim=1))
        converged = (change <= tol * f_new.abs().clamp_min(1e-12)) | stalled | \
            _stationary(f_new, g_new, z_new, tol)
        active = active & ~converged
        z, f, g, aux = z_new, f_new, g_new, aux_new
        if not bool(active.any()):
            break
    return z, f, aux, iterations, evaluations


def _stationary(f, g, z, tol):
    return g.abs().amax(dim=1) * (1 + z.abs().amax(dim=1)) <= tol * f.abs()


class CurvatureMemory:
    """The curvature pairs (s, y, 1/s·y) of a batch of L-BFGS problems, kept between solves."""

    def __init__(self):
        self.batch = None
        self.s, self.y, self.rho = [], [], []


def _two_loop(g, s_hist, y_hist, rho_hist):
    """H g for the L-BFGS inverse-Hessian estimate of each problem (Nocedal & Wright, Alg. 7.4)."""
    q = g.clone()
    alphas = []
    for s, y, rho in zip(reversed(s_hist), reversed(y_hist), reversed(rho_hist)):
        a = rho * (s * q).sum(dim=1)
        q -= a[:, None] * y
        alphas.append(a)
    if s_hist:
        s, y = s_hist[-1], y_hist[-1]
        yy = (y * y).sum(dim=1)
        gamma = torch.where(yy > 0, (s * y).sum(dim=1) / yy.clamp_min(1e-30), torch.ones_like(yy))
        q *= gamma[:, None]
    for s, y, rho, a in zip(s_hist, y_hist, rho_hist, reversed(alphas)):
        b = rho * (y * q).sum(dim=1)
        q += s * (a - b)[:, None]
    return q
