r"""Quasi-Newton minimisation of a batch of independent problems, vectorised over the batch.

Minimises :math:`f_b(z_b)` for :math:`b = 1, \dots, B` at once: one call of ``fg`` evaluates
all of them (one batched pass through the generator), but each problem keeps its own
curvature estimate, its own backtracking (Armijo) step and its own stopping test. So a
volume's slices, or the random restarts of one target, are solved exactly as if they were
solved one by one, at the cost of a single batch per evaluation.

Two curvature estimates: :class:`LBFGSMemory` (the last few pairs :math:`(s, y)`, the
two-loop recursion; for large latent dimensions) and :class:`BFGSMemory` (the dense inverse
Hessian, :math:`d \times d` per problem, updated by a handful of batched products per
iteration; for the small latent dimensions of generators, where it needs fewer iterations and
less Python work than the recursion). Either can be kept between solves, so that a warm start
carries the curvature as well as the point.
"""
import torch

ARMIJO = 1e-4
MAX_BACKTRACKS = 20


def _pairs_ok(s, y):
    """Which pairs satisfy the curvature condition s·y > 0 by a margin the floating-point
    type can resolve (a pair from a step lost in rounding would blow the estimate up)."""
    sy = (s * y).sum(dim=1)
    margin = torch.finfo(s.dtype).eps ** 0.5
    norms = torch.linalg.vector_norm(y, dim=1) * torch.linalg.vector_norm(s, dim=1)
    return sy, (sy > margin * norms) & (sy > torch.finfo(s.dtype).tiny)


class LBFGSMemory:
    r"""The last ``history_size`` curvature pairs :math:`(s, y)` of each problem; the
    direction :math:`-H g` comes from the two-loop recursion (Nocedal & Wright, Alg. 7.4).

    Parameters
    ----------
    history_size : int
        pairs kept per problem.
    """

    def __init__(self, history_size=8):
        self.history_size = int(history_size)
        self.batch = None
        self.s, self.y, self.rho = [], [], []

    @property
    def empty(self):
        return not self.s

    def direction(self, g):
        """:math:`-H g` for the L-BFGS inverse-Hessian estimate :math:`H`."""
        q = g.clone()
        alphas = []
        for s, y, rho in zip(reversed(self.s), reversed(self.y), reversed(self.rho)):
            a = rho * (s * q).sum(dim=1)
            q -= a[:, None] * y
            alphas.append(a)
        s, y = self.s[-1], self.y[-1]
        yy = (y * y).sum(dim=1)
        q *= torch.where(yy > 0, (s * y).sum(dim=1) / yy.clamp_min(1e-30), torch.ones_like(yy))[:, None]
        for s, y, rho, a in zip(self.s, self.y, self.rho, reversed(alphas)):
            q += s * (a - rho * (y * q).sum(dim=1))[:, None]
        return q.neg_()

    def update(self, s, y):
        sy, ok = _pairs_ok(s, y)
        keep = ok[:, None].to(s.dtype)
        self.s.append(s * keep)
        self.y.append(y * keep)
        self.rho.append(torch.where(ok, 1.0 / sy.clamp_min(1e-30), torch.zeros_like(sy)))
        while len(self.s) > self.history_size:
            self.s.pop(0), self.y.pop(0), self.rho.pop(0)


class BFGSMemory:
    r"""The dense BFGS inverse-Hessian estimate :math:`H_b` of each problem,

    .. math:: H^+ = H - \rho\,(H y s^T + s y^T H) + (\rho^2\, y^T H y + \rho)\, s s^T,
       \qquad \rho = 1 / s^T y,

    started from :math:`\frac{s^T y}{y^T y} I` at the first pair."""

    def __init__(self):
        self.batch = None
        self.H = None

    @property
    def empty(self):
        return self.H is None

    def direction(self, g):
        return -(self.H @ g.unsqueeze(-1)).squeeze(-1)

    def update(self, s, y):
        sy, ok = _pairs_ok(s, y)
        rho = torch.where(ok, 1.0 / sy.clamp_min(1e-30), torch.zeros_like(sy))
        if self.H is None:
            yy = (y * y).sum(dim=1)
            gamma = torch.where(ok, sy / yy.clamp_min(1e-30), torch.ones_like(sy))
            self.H = gamma[:, None, None] * torch.eye(s.shape[1], dtype=s.dtype, device=s.device)
        Hy = (self.H @ y.unsqueeze(-1)).squeeze(-1)
        yHy = (y * Hy).sum(dim=1)
        ss = s.unsqueeze(-1) * s.unsqueeze(-2)
        sHy = s.unsqueeze(-1) * Hy.unsqueeze(-2)
        self.H += (rho * (rho * yHy + 1))[:, None, None] * ss - rho[:, None, None] * (sHy + sHy.mT)
        broken = ~torch.isfinite(self.H).flatten(1).all(dim=1)
        if bool(broken.any()):  # start those problems' estimates again
            self.H[broken] = torch.eye(s.shape[1], dtype=s.dtype, device=s.device)


class QuasiNewtonIteration:
    r"""A batched quasi-Newton run advanced one iteration at a time (what
    :func:`batched_quasi_newton` loops over, and what a CIL Algorithm steps through).

    Each iteration: direction :math:`d_b = -H_b \nabla f_b(z_b)` (steepest descent where it is
    not a descent direction), Armijo backtracking on the step :math:`t_b`, curvature update,
    stopping tests per problem (see :func:`batched_quasi_newton`).

    Parameters
    ----------
    fg : callable
        ``fg(z, rows) -> (f, g, aux)``, see :func:`batched_quasi_newton`.
    z : torch.Tensor
        (B, d) starting points (not modified).
    memory : LBFGSMemory or BFGSMemory
        curvature estimate to start from; a fresh one when its batch size does not match.
    tol : float
        relative tolerance of the stopping tests.

    Attributes
    ----------
    z, f, g, aux : torch.Tensor
        current points (B, d), values (B,), gradients (B, d) and by-products of ``fg``.
    active : torch.Tensor
        (B,) bool, the problems still running.
    line_search_failed : torch.Tensor
        (B,) bool, the problems that stopped because no step decreased their value.
    iterations, evaluations : int
        iterations run, calls of ``fg``.
    """

    def __init__(self, fg, z, memory, tol):
        self.fg = fg
        self.tol = float(tol)
        z = z.detach().clone()
        batch = z.shape[0]
        if memory.batch not in (None, batch):
            memory = type(memory)() if isinstance(memory, BFGSMemory) else \
                LBFGSMemory(memory.history_size)
        memory.batch = batch
        self.memory = memory
        self.z = z
        self.f, self.g, self.aux = fg(z, None)
        self.evaluations = 1
        self.iterations = 0
        self.active = ~_stationary(self.f, self.g, z, self.tol)
        self.line_search_failed = torch.zeros_like(self.active)

    @property
    def running(self):
        """Whether any problem is still running."""
        return bool(self.active.any())

    def step(self):
        """One iteration of every running problem (nothing when none runs)."""
        if not self.running:
            return
        z, f, g, aux, active, memory = self.z, self.f, self.g, self.aux, self.active, self.memory
        batch = z.shape[0]
        eps = torch.finfo(z.dtype).eps
        if memory.empty:  # first step: at most a unit step in the largest coordinate
            direction = -g * (1.0 / g.abs().amax(dim=1).clamp_min(1e-30)).clamp(max=1.0)[:, None]
        else:
            direction = memory.direction(g)
        slope = (g * direction).sum(dim=1)
        uphill = slope >= 0  # safeguard: fall back to steepest descent
        if bool(uphill.any()):
            direction[uphill] = -g[uphill]
            slope = torch.where(uphill, -(g * g).sum(dim=1), slope)
        direction *= active[:, None]
        step = torch.ones(batch, dtype=z.dtype, device=z.device)
        # near a minimum, values change by less than their rounding error: allow that much
        slack = 4 * eps * f.abs()
        pending = active.clone()
        z_new = None
        for _ in range(MAX_BACKTRACKS):
            rows = None if bool(pending.all()) else pending.nonzero().squeeze(1)
            sel = slice(None) if rows is None else rows
            z_try = z[sel] + step[sel, None] * direction[sel]
            f_try, g_try, aux_try = self.fg(z_try, rows)
            self.evaluations += 1
            ok = f_try <= f[sel] + ARMIJO * step[sel] * slope[sel] + slack[sel]
            if rows is None and bool(ok.all()):  # every problem takes its first step
                z_new, f_new, g_new, aux_new = z_try, f_try, g_try, aux_try
                pending.zero_()
                break
            if z_new is None:
                z_new, f_new, g_new, aux_new = z.clone(), f.clone(), g.clone(), aux.clone()
            done = torch.arange(batch, device=z.device)[sel][ok]
            z_new[done], f_new[done], g_new[done], aux_new[done] = \
                z_try[ok], f_try[ok], g_try[ok], aux_try[ok]
            pending[done] = False
            if not bool(pending.any()):
                break
            step[pending] *= 0.5
        else:  # no decrease found for some: they stay where they are and stop
            active = active & ~pending
            self.line_search_failed |= pending
        s = z_new - z
        memory.update(s, g_new - g)
        stalled = s.abs().amax(dim=1) <= 4 * eps * (1 + z.abs().amax(dim=1))
        converged = ((f - f_new).abs() <= self.tol * f_new.abs().clamp_min(1e-12)) | stalled | \
            _stationary(f_new, g_new, z_new, self.tol)
        self.active = active & ~converged
        self.z, self.f, self.g, self.aux = z_new, f_new, g_new, aux_new
        self.iterations += 1


def batched_quasi_newton(fg, z, memory, max_iter=100, tol=1e-6):
    r"""Minimise a batch of independent smooth functions,

    .. math:: z_b^* = \underset{z}{\text{argmin}}\; f_b(z), \qquad b = 1, \dots, B,

    each with its own quasi-Newton step :math:`z \leftarrow z - t H_b \nabla f_b(z)` and
    Armijo backtracking on :math:`t` (the iterations of :class:`QuasiNewtonIteration`).

    Parameters
    ----------
    fg : callable
        ``fg(z, rows) -> (f, g, aux)``: for the problems ``rows`` (an index tensor, or None
        for all) at points ``z`` (len(rows), d), their values ``f``, gradients ``g`` and any
        by-product ``aux`` with a leading batch dimension (e.g. the generated images),
        returned for the final points. Only problems still running are evaluated.
    z : torch.Tensor
        (B, d) starting points (not modified).
    memory : LBFGSMemory or BFGSMemory
        the curvature estimate to start from (e.g. that of the previous solve of a nearby
        problem), updated in place; a fresh one when its batch size does not match.
    max_iter : int
        iterations (each one direction and one line search) at most.
    tol : float
        a problem stops when its value changes by less than ``tol`` relative to its size, or
        when it is first-order optimal to that relative accuracy:
        :math:`\|\nabla f_b\|_\infty (1 + \|z_b\|_\infty) \le \text{tol}\,|f_b|` (a test
        that a warm start already near the minimum passes at once), or when its step falls
        below the rounding error of :math:`z_b`, or when no step decreases its value.

    Returns
    -------
    z : torch.Tensor
        (B, d) minimisers.
    f : torch.Tensor
        (B,) values at ``z``.
    aux : torch.Tensor
        the by-products of ``fg`` at ``z``.
    iterations : int
        iterations run.
    evaluations : int
        calls of ``fg``.
    memory : LBFGSMemory or BFGSMemory
        the updated curvature estimate (to warm-start the next solve).
    """
    run = QuasiNewtonIteration(fg, z, memory, tol)
    while run.running and run.iterations < max_iter:
        run.step()
    return run.z, run.f, run.aux, run.iterations, run.evaluations, run.memory


def _stationary(f, g, z, tol):
    return g.abs().amax(dim=1) * (1 + z.abs().amax(dim=1)) <= tol * f.abs()
