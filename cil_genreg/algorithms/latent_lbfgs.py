r"""Quasi-Newton minimisation of a smooth function of the latent, as a CIL Algorithm."""
import numbers

import torch
from cil.optimisation.algorithms import Algorithm

from ..utilities.bridge import as_tensor, from_tensor
from ..latent import BFGSMemory, LBFGSMemory, QuasiNewtonIteration
from ..latent.solver import DENSE_BFGS_MAX_DIM
from .latent_objective import LatentObjective


class LatentLBFGS(Algorithm):
    r"""Quasi-Newton method (BFGS or L-BFGS with Armijo backtracking) for a smooth function of
    the latent,

    .. math:: \min_z f(z), \qquad z_{k+1} = z_k - t_k H_k \nabla f(z_k),

    with :math:`H_k` the (L-)BFGS inverse-Hessian estimate and :math:`t_k` the first of
    :math:`1, \frac12, \frac14, \dots` with
    :math:`f(z_{k+1}) \le f(z_k) + 10^{-4}\, t_k \nabla f(z_k)^T d_k`. The iterations are those of
    the package's batched solver (:class:`~cil_genreg.latent.QuasiNewtonIteration`); the range
    method in one line:

    >>> f = LatentLeastSquares(A, G, y) + alpha * L2NormSquared()
    >>> z = LatentLBFGS(initial=f_ls.latent_geometry.allocate(0), f=f).run(100).solution

    ``f`` is any smooth CIL Function of the latent VectorGeometry. Terms the package knows are
    evaluated value and gradient together in one generator pass: :class:`LatentLeastSquares`,
    ``OperatorCompositionFunction(h, GeneratorOperator(G))`` (a CIL function :math:`h` of the
    image :math:`G(z)`, e.g. ``LeastSquares(A, y)``), ``L2NormSquared`` and constants; any other
    term through its ``__call__`` and ``gradient``.

    With ``restarts`` = K, K more starts :math:`z \sim N(0, \sigma^2 I)` run beside ``initial``
    as one batch through the generator, each with its own curvature, step and stopping test;
    :attr:`solution` is the start of lowest objective.

    Parameters
    ----------
    initial : VectorData
        the starting latent, e.g. ``LatentLeastSquares.latent_geometry.allocate(0)``.
    f : cil Function
        smooth objective of the latent.
    tolerance : float
        stop when :math:`|f(z_k) - f(z_{k+1})| \le \text{tolerance}\,|f(z_{k+1})|`, or when
        :math:`\|\nabla f\|_\infty (1 + \|z\|_\infty) \le \text{tolerance}\,|f|`, or when the
        step falls below the rounding error of :math:`z`.
    max_iteration : int, optional
        iterations at most; also what :meth:`run` runs when called without ``iterations``.
    memory : {"auto", "bfgs", "lbfgs"}
        dense BFGS (latent length up to 256 for "auto") or L-BFGS.
    history_size : int
        L-BFGS pairs kept.
    restarts : int
        extra random starts, batched.
    restart_std : float
        :math:`\sigma` of the random starts.
    seed : int, optional
        seeds the random starts.
    **kwargs
        ``update_objective_interval`` of CIL's Algorithm.

    Attributes
    ----------
    stop_reason : str or None
        "tolerance", "line search failed" or "max_iteration" once the iteration has stopped.
    evaluations : int
        evaluations of ``f`` and its gradient (of all starts together).

    Raises
    ------
    TypeError
        when ``initial`` is not a DataContainer.
    ValueError
        for a non-positive tolerance, a negative number of restarts, or an unknown memory.
    """

    MEMORIES = ("auto", "bfgs", "lbfgs")

    def __init__(self, initial=None, f=None, tolerance=1e-6, max_iteration=None, memory="auto",
                 history_size=8, restarts=0, restart_std=1.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if initial is not None and f is not None:
            self.set_up(initial, f, tolerance=tolerance, max_iteration=max_iteration,
                        memory=memory, history_size=history_size, restarts=restarts,
                        restart_std=restart_std, seed=seed)

    def set_up(self, initial, f, tolerance=1e-6, max_iteration=None, memory="auto",
               history_size=8, restarts=0, restart_std=1.0, seed=None):
        """Set up the algorithm (see the class for the parameters).

        Returns
        -------
        None
        """
        if not hasattr(initial, "as_array"):
            raise TypeError(f"initial must be a CIL DataContainer (VectorData of the latent), "
                            f"got {type(initial).__name__}.")
        if not (isinstance(tolerance, numbers.Real) and tolerance > 0):
            raise ValueError(f"tolerance must be a positive number, got {tolerance!r}")
        if memory not in self.MEMORIES:
            raise ValueError(f"memory must be one of {self.MEMORIES}, got {memory!r}")
        if int(restarts) < 0:
            raise ValueError(f"restarts must be >= 0, got {restarts}")
        self.x = initial.copy()
        self._objective_function = f
        self.tolerance = float(tolerance)
        self.max_iteration = None if max_iteration is None else int(max_iteration)
        z = as_tensor(initial).reshape(1, -1).clone()
        if int(restarts):
            rng = torch.Generator().manual_seed(0 if seed is None else int(seed))
            z = torch.cat([z, restart_std * torch.randn(int(restarts), z.shape[1], generator=rng)])
        if memory == "auto":
            memory = "bfgs" if z.shape[1] <= DENSE_BFGS_MAX_DIM else "lbfgs"
        self.fg = LatentObjective(f, initial.geometry)
        self._run = QuasiNewtonIteration(
            self.fg, z, BFGSMemory() if memory == "bfgs" else LBFGSMemory(history_size),
            self.tolerance)
        self.stop_reason = None
        self._write_solution()
        self.configured = True

    @property
    def evaluations(self):
        return self._run.evaluations

    def _best(self):
        return int(torch.argmin(self._run.f)) if self._run.f.shape[0] > 1 else 0

    def _write_solution(self):
        from_tensor(self._run.z[self._best()], out=self.x)

    def should_stop(self):
        """Whether the iteration has stopped: every start met the tolerance or found no
        decrease, or ``max_iteration`` iterations have run.

        Returns
        -------
        bool
        """
        if self.stop_reason is None:
            if not self._run.running:
                failed = bool(self._run.line_search_failed[self._best()])
                self.stop_reason = "line search failed" if failed else "tolerance"
            elif self.max_iteration is not None and self._run.iterations >= self.max_iteration:
                self.stop_reason = "max_iteration"
        return self.stop_reason is not None

    def update(self):
        """One quasi-Newton iteration of every running start.

        Raises
        ------
        StopIteration
            when :meth:`should_stop` (CIL's ``run`` then ends).
        """
        if self.should_stop():
            raise StopIteration
        self._run.step()
        self._write_solution()

    def update_objective(self):
        r"""Append :math:`f(z)` at the current solution (known from the iteration: no extra
        evaluation)."""
        self.loss.append(float(self._run.f[self._best()]))

    def run(self, iterations=None, callbacks=None, verbose=1):
        """Run up to ``iterations`` iterations (default ``max_iteration``), see CIL's
        :meth:`~cil.optimisation.algorithms.Algorithm.run`.

        Parameters
        ----------
        iterations : int, optional
        callbacks : list of callables, optional
        verbose : int

        Returns
        -------
        LatentLBFGS
            this algorithm (``.solution`` is the result).

        Raises
        ------
        ValueError
            when neither ``iterations`` nor ``max_iteration`` is given.
        """
        if iterations is None:
            iterations = self.max_iteration
        if iterations is None:
            raise ValueError("run() needs `iterations` (or set max_iteration=... when "
                             "creating LatentLBFGS).")
        super().run(iterations, callbacks=callbacks, verbose=verbose)
        return self
