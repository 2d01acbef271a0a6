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
    sy = torch.linalg.vecdot(s, y)
    margin = torch.finfo(s.dtype).eps ** 0.5
    norms = torch.linalg.vector_norm(y, dim=1).mul_(torch.linalg.vector_norm(s, dim=1))
    return sy, (sy > norms.mul_(margin)) & (sy > torch.finfo(s.dtype).tiny)


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

    def repair(self):
        """Nothing to repair: pairs that break the curvature condition are never kept."""

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

    started from :math:`\frac{s^T y}{y^T y} I` at the first pair. With :math:`q = \rho H y`
    and :math:`c = \rho^2 y^T H y + \rho > 0` the update is the difference of two symmetric
    rank-one terms, :math:`H^+ = H + a a^T - b b^T` with :math:`b = q / \sqrt{c}` and
    :math:`a = \sqrt{c}\, s - b`: two batched outer products, and :math:`H` stays exactly
    symmetric in floating point."""

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
        rho = torch.where(ok, sy, torch.inf).reciprocal_()  # 0 where the pair is not kept
        if self.H is None:
            yy = (y * y).sum(dim=1)
            gamma = torch.where(ok, sy / yy.clamp_min(1e-30), torch.ones_like(sy))
            self.H = gamma[:, None, None] * torch.eye(s.shape[1], dtype=s.dtype, device=s.device)
        Hy = (self.H @ y.unsqueeze(-1)).squeeze(-1)
        root_c = torch.addcmul(rho, rho * rho, torch.linalg.vecdot(y, Hy)).sqrt_()
        b = Hy * (rho / root_c.clamp_min(torch.finfo(s.dtype).tiny))[:, None]  # 0 if rho = 0
        a = torch.addcmul(-b, root_c[:, None], s)
        self.H.baddbmm_(a.unsqueeze(-1), a.unsqueeze(-2))
        self.H.baddbmm_(b.unsqueeze(-1), b.unsqueeze(-2), alpha=-1)

    def repair(self):
        """Start again the estimates that overflowed (called when a direction is not a
        descent direction, which is what a non-finite estimate gives)."""
        if self.H is None:
            return
        broken = ~torch.isfinite(self.H).flatten(1).all(dim=1)
        if bool(broken.any()):
            self.H[broken] = torch.eye(self.H.shape[-1], dtype=self.H.dtype,
                                       device=self.H.device)


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
    value_eps : float, optional
        the relative rounding error of ``fg``'s values (default: the machine epsilon of
        ``z``'s dtype; larger for a generator run in bfloat16): the line search accepts a
        value up to :math:`4\,\epsilon |f|` above the current one.

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

    def __init__(self, fg, z, memory, tol, value_eps=None):
        self.fg = fg
        self.tol = float(tol)
        self.value_eps = torch.finfo(z.dtype).eps if value_eps is None else float(value_eps)
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
        self._g_max, self._z_max = _max_abs(self.g), _max_abs(z)
        self.active = ~_stationary(self.f.abs(), self._g_max, self._z_max, self.tol)
        self.line_search_failed = torch.zeros_like(self.active)
        self._running = bool(self.active.any())

    @property
    def running(self):
        """Whether any problem is still running."""
        return self._running

    def step(self):
        """One iteration of every running problem (nothing when none runs)."""
        if not self._running:
            return
        z, f, g, active, memory = self.z, self.f, self.g, self.active, self.memory
        eps = torch.finfo(z.dtype).eps
        if memory.empty:  # first step: at most a unit step in the largest coordinate
            direction = g * (-1.0 / self._g_max.clamp_min(1e-30)).clamp(min=-1.0)[:, None]
        else:
            direction = memory.direction(g)
        slope = torch.linalg.vecdot(g, direction)
        if not bool((slope < 0).all()):  # safeguard (also for a broken estimate): steepest descent
            uphill = ~(slope < 0)
            direction[uphill] = -g[uphill]
            slope = torch.where(uphill, -(g * g).sum(dim=1), slope)
            memory.repair()
        all_active = z.shape[0] == 1 or bool(active.all())  # one running problem is active
        if not all_active:
            direction *= active[:, None]
        # near a minimum, values change by less than their rounding error: allow that much
        bound = f + 4 * self.value_eps * f.abs()
        new, pending = self._line_search(direction, slope, bound, active, all_active)
        if pending is not None:  # no decrease found for some: they stay where they are and stop
            active = active & ~pending
            self.line_search_failed |= pending
        z_new, f_new, g_new, aux_new = new
        s = z_new - z
        memory.update(s, g_new - g)
        g_max, z_max, f_abs = _max_abs(g_new), _max_abs(z_new), f_new.abs()
        stalled = _max_abs(s) <= 4 * eps * (1 + self._z_max)
        flat = (f - f_new).abs_() <= self.tol * f_abs.clamp_min(1e-12)
        if self.tol < 4 * eps:
            # a change that small is lost in the value's rounding: flat values then show no
            # convergence while the gradient still shrinks
            flat &= g_max >= self._g_max
        converged = flat | stalled | _stationary(f_abs, g_max, z_max, self.tol)
        self.active = active & ~converged
        self._running = bool(self.active.any())
        self.z, self.f, self.g, self.aux = z_new, f_new, g_new, aux_new
        self._g_max, self._z_max = g_max, z_max
        self.iterations += 1

    def _line_search(self, direction, slope, bound, active, all_active):
        """Armijo backtracking from the unit step, per problem: the new (z, f, g, aux), and
        the problems that found no decrease in :data:`MAX_BACKTRACKS` halvings (None if none)."""
        z, f, g, aux = self.z, self.f, self.g, self.aux
        if all_active:  # the common case: every problem takes its first, unit step
            z_try = z + direction
            f_try, g_try, aux_try = self.fg(z_try, None)
            self.evaluations += 1
            ok = f_try <= torch.add(bound, slope, alpha=ARMIJO)
            if bool(ok.all()):
                return (z_try, f_try, g_try, aux_try), None
        batch = z.shape[0]
        z_new, f_new, g_new, aux_new = z.clone(), f.clone(), g.clone(), aux.clone()
        step = torch.ones(batch, dtype=z.dtype, device=z.device)
        pending = active.clone()
        rows = None
        for trial in range(MAX_BACKTRACKS):
            if trial or not all_active:
                rows = pending.nonzero().squeeze(1)
                z_try = z[rows] + step[rows, None] * direction[rows]
                f_try, g_try, aux_try = self.fg(z_try, rows)
                self.evaluations += 1
                ok = f_try <= bound[rows] + ARMIJO * step[rows] * slope[rows]
            done = ok.nonzero().squeeze(1) if rows is None else rows[ok]
            z_new[done], f_new[done], g_new[done], aux_new[done] = \
                z_try[ok], f_try[ok], g_try[ok], aux_try[ok]
            pending[done] = False
            if not bool(pending.any()):
                return (z_new, f_new, g_new, aux_new), None
            step[pending] *= 0.5
        return (z_new, f_new, g_new, aux_new), pending


def batched_quasi_newton(fg, z, memory, max_iter=100, tol=1e-6, value_eps=None):
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
        a problem stops when its value changes by less than ``tol`` relative to its size
        (below the rounding of the value, 4 eps: when the gradient has not shrunk either), or
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

    ``value_eps``: see :class:`QuasiNewtonIteration`.
    """
    run = QuasiNewtonIteration(fg, z, memory, tol, value_eps)
    while run.running and run.iterations < max_iter:
        run.step()
    return run.z, run.f, run.aux, run.iterations, run.evaluations, run.memory


def _max_abs(t):
    return torch.linalg.vector_norm(t, ord=float("inf"), dim=1)


def _stationary(f_abs, g_max, z_max, tol):
    """First-order optimality to ``tol`` relative to the value (``f_abs``: its size), from the
    largest entries of the gradients and the points."""
    return g_max * (1 + z_max) <= tol * f_abs
