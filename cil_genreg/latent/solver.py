r"""The latent step: a batch of small optimisations through the generator, with autograd.

.. math:: z^*_b = \underset{z}{\text{argmin}}\; \varphi(v_b - G(z)) + c\|z\|_2^2,
   \qquad b = 1, \dots, B

This module is torch only (no CIL import) and is the hot path of every proximal map of the
generative regularisers: warm starts, restarts batched through the generator, and gradients
with respect to the latent only (the generator's weights are frozen while it runs).
"""
import time

import torch

from .generator import GeneratorAdapter
from .quasi_newton import BFGSMemory, LBFGSMemory, batched_quasi_newton
from .results import LatentSolution, SolverStats

#: the ``optimiser`` choices of :class:`LatentSolver`: "auto" (BFGS up to latent dimension 256,
#: L-BFGS above), dense "bfgs", "lbfgs" (both batched quasi-Newton) or "adam".
OPTIMISERS = ("auto", "bfgs", "lbfgs", "adam")
DENSE_BFGS_MAX_DIM = 256
#: a coupled volume is one problem of dimension slices × d: dense BFGS up to this size
DENSE_CHAIN_MAX_DIM = 1024


class LatentSolver:
    r"""Solves :math:`\min_z \varphi(v - G(z)) + c\|z\|^2` for a batch of targets :math:`v`.

    The starting points are the warm start (the previous solution stored under the same
    ``key`` when the batch size matches, else ``z0``, else :math:`z = 0`) plus ``restarts``
    random draws from :math:`N(0, \sigma^2 I)`; all of them go through the generator as one
    batch, and the best per target is kept.

    Parameters
    ----------
    generator : torch.nn.Module or GeneratorAdapter
        ``G: (B, d) -> (B, 1, H, W)``.
    latent_dim : int, optional
        ``d`` when the module does not carry ``latent_dim``.
    optimiser : {"auto", "bfgs", "lbfgs", "adam"}
        quasi-Newton vectorised over the batch, each problem with its own curvature estimate,
        backtracking step and stopping test
        (:func:`~cil_genreg.latent.quasi_newton.batched_quasi_newton`): dense BFGS or
        L-BFGS; "auto" (default) takes BFGS up to latent dimension 256, L-BFGS above. Or Adam.
    max_iter : int
        cap on inner iterations per solve.
    tol : float
        stop when the objective changes by less than ``tol`` relative to its size (and, for
        L-BFGS, when the largest gradient entry is below ``tol`` times its starting size).
    history_size : int
        L-BFGS curvature pairs kept per problem.
    threads : int, "auto" or None
        CPU threads while solving (see :class:`GeneratorAdapter`); default ``"auto"``.
    precision : {"float32", "bfloat16", "float16"}
        the generator's forward pass (see :class:`GeneratorAdapter`); default float32.
    lr : float, optional
        step size: 1.0 for L-BFGS (a line search scales it), 0.05 for Adam.
    restarts : int
        extra random starts per target, solved in the same batch.
    restart_std : float
        :math:`\sigma` of the random starts.
    warm_start : bool
        start from the previous solution of the same key.
    seed : int, optional
        seeds the random starts.
    device : str or torch.device, optional
        where to run; default: the generator's device.
    """

    ADAM_PATIENCE = 5

    def __init__(self, generator, latent_dim=None, *, optimiser="auto", max_iter=100,
                 tol=1e-6, lr=None, restarts=0, restart_std=1.0, warm_start=True, seed=None,
                 device=None, history_size=8, threads="auto", precision="float32"):
        self.adapter = GeneratorAdapter(generator, latent_dim, device=device, threads=threads,
                                        precision=precision)
        if optimiser not in OPTIMISERS:
            raise ValueError(f"optimiser must be one of {OPTIMISERS}, got {optimiser!r}")
        if int(max_iter) < 1:
            raise ValueError(f"max_iter must be a positive integer, got {max_iter}")
        if not tol > 0:
            raise ValueError(f"tol must be positive, got {tol}")
        if int(restarts) < 0:
            raise ValueError(f"restarts must be >= 0, got {restarts}")
        if optimiser == "auto":
            optimiser = "bfgs" if self.latent_dim <= DENSE_BFGS_MAX_DIM else "lbfgs"
        self.optimiser = optimiser
        self.max_iter = int(max_iter)
        self.tol = float(tol)
        self.lr = float(lr) if lr is not None else 0.05
        self.history_size = int(history_size)
        self.restarts = int(restarts)
        self.restart_std = float(restart_std)
        self.warm_start = bool(warm_start)
        self._rng = torch.Generator(device="cpu")
        if seed is not None:
            self._rng.manual_seed(int(seed))
        self._warm = {}
        self._memory = {}
        self._graph = {}
        self.stats = SolverStats()

    @property
    def latent_dim(self):
        return self.adapter.latent_dim

    @property
    def device(self):
        return self.adapter.device

    def reset(self, key=None):
        """Forget the warm start (latent and curvature) of ``key``.

        Parameters
        ----------
        key : str, optional
            all keys when None.
        """
        if key is None:
            self._warm.clear()
            self._memory.clear()
            self._graph.clear()
        else:
            self._warm.pop(key, None)
            for k in [k for k in self._memory if k == key or k.startswith(f"{key}/chain")]:
                del self._memory[k]
            for k in [k for k in self._graph if k == key or k.startswith(f"{key}/chain")]:
                del self._graph[k]

    def warm_latent(self, key="default"):
        """The stored solution of ``key``.

        Parameters
        ----------
        key : str

        Returns
        -------
        torch.Tensor or None
            (B, d), or None when nothing is stored.
        """
        return self._warm.get(key)

    def set_warm_latent(self, z, key="default"):
        """Store ``z`` as the next start of ``key`` (used when the batch size matches).

        Parameters
        ----------
        z : array_like
            (B, d) latents.
        key : str
        """
        self._warm[key] = torch.as_tensor(z, dtype=torch.float32, device=self.device).detach()

    def warm_state(self, key="default"):
        """What the next solve of ``key`` starts from (latent, curvature), for
        :meth:`set_warm_state` (e.g. one state per patch tiling).

        Parameters
        ----------
        key : str

        Returns
        -------
        tuple
            opaque; ``(None, None)`` when nothing is stored.
        """
        return self._warm.get(key), self._memory.get(key)

    def set_warm_state(self, state, key="default"):
        """Restore a state returned by :meth:`warm_state` (``None`` forgets ``key``'s).

        Parameters
        ----------
        state : tuple or None
        key : str
        """
        self.reset(key)
        for store, value in zip((self._warm, self._memory), state or (None, None)):
            if value is not None:
                store[key] = value

    def _starts(self, batch, z0, key):
        d = self.latent_dim
        first = self._warm.get(key) if self.warm_start else None
        if first is None or first.shape[0] != batch:
            first = z0 if z0 is not None else torch.zeros(batch, d)
        first = torch.as_tensor(first, dtype=torch.float32).to(self.device).reshape(batch, d)
        if self.restarts == 0:
            return first
        extra = self.restart_std * torch.randn(self.restarts * batch, d, generator=self._rng)
        return torch.cat([first, extra.to(self.device)], dim=0)

    def solve(self, misfit, target, latent_weight, z0=None, key="default", tol=None,
              coupling=None, max_iter=None, candidates=None):
        r"""Solve the batch of latent problems.

        With ``coupling`` (a :class:`~cil_genreg.latent.coupling.LatentChain` of weight
        :math:`\lambda_z`), the batch is the slices of a volume and the problems are one,

        .. math:: \min_{z_0, \dots, z_{B-1}} \sum_b \varphi(v_b - G(z_b)) + c\|z_b\|^2
           + \lambda_z \sum_b \|z_{b+1} - z_b\|^2 ,

        solved jointly (dimension :math:`B d`; dense BFGS up to :data:`DENSE_CHAIN_MAX_DIM`,
        else L-BFGS; each random restart is a whole chain). Without boundary latents and with
        :math:`\lambda_z = 0` it is the slice-wise solve, run by the same code.

        Parameters
        ----------
        misfit : callable
            ``misfit(G(z), v) -> (B,)``, see :mod:`cil_genreg.latent.misfits`.
        target : torch.Tensor
            :math:`v`, shape (B, 1, H, W).
        latent_weight : float
            :math:`c \ge 0`, the weight of :math:`\|z\|^2`.
        z0 : torch.Tensor, optional
            (B, d) start used when there is no warm start.
        key : str
            names the warm-start slot (e.g. one for proximal maps, one for conjugates).
        tol : float, optional
            this solve's tolerance instead of the solver's ``tol``.
        coupling : LatentChain, optional
            the chain term; None (or weight 0 without boundary latents): slice-wise.
        max_iter : int, optional
            this solve's iteration cap instead of the solver's ``max_iter``.
        candidates : torch.Tensor, optional
            (B, d) latents (e.g. an encoder's codes of the targets) that compete with the first
            start: target :math:`b` starts from whichever of the two has the lower objective,
            found by one batched pass without gradients (not with ``coupling``).

        Returns
        -------
        LatentSolution
            the best start's result per target; with ``coupling``, ``objective[b]`` also
            carries slice ``b``'s share of the chain (see :meth:`LatentChain.per_slice`).

        Raises
        ------
        ValueError
            when the generator's output (hence the objective) is not finite.
        """
        t0 = time.perf_counter()
        stats = self.stats
        tol = self.tol if tol is None else float(tol)
        max_iter = self.max_iter if max_iter is None else int(max_iter)
        target = target.to(self.device, torch.float32)
        batch = target.shape[0]
        z = self._starts(batch, z0, key)
        n_starts = z.shape[0] // batch
        target_rep = target.repeat(n_starts, 1, 1, 1) if n_starts > 1 else target
        c = float(latent_weight)
        G = self.adapter

        def objective(zz, rows=None, image=None):
            if image is None:
                stats.generator_calls += 1
                stats.generator_images += zz.shape[0]
                image = G(zz)
            wanted = target_rep if rows is None else target_rep[rows]
            return misfit(image, wanted).add(torch.linalg.vecdot(zz, zz), alpha=c), image

        chained = coupling is not None and (coupling.weight > 0 or coupling.before is not None
                                            or coupling.after is not None)
        if candidates is not None and not chained:
            z = self._best_start(objective, z, candidates, batch)
        if chained:
            z, images, values, iterations = self._solve_chain(
                objective, z, n_starts, batch, coupling, tol, key, max_iter)
        else:
            with torch.enable_grad(), self.adapter.frozen(), self.adapter.threads(z.shape[0]):
                if self.optimiser in ("bfgs", "lbfgs"):
                    z, values, images, iterations = self._run_quasi_newton(
                        z, objective, tol, key, max_iter=max_iter, reuse_graph=True)
                else:
                    z, values, images, iterations = self._run_adam(z, objective, tol, max_iter)
        if not bool(torch.isfinite(values).all()):
            raise ValueError(
                "the generator's output became NaN or Inf during the latent step (objective "
                f"{values.flatten()[:3].tolist()}): its weights or the latent diverged. Check "
                "the generator (G(z) must be finite for every z), or lower the solver's lr.")
        if n_starts > 1 and not chained:
            best = values.view(n_starts, batch).argmin(dim=0)
            rows = best * batch + torch.arange(batch, device=best.device)
            z, images, values = z[rows], images[rows], values[rows]
        if self.warm_start:
            self._warm[key] = z
        stats.solves += 1
        stats.iterations += iterations
        stats.seconds += time.perf_counter() - t0
        return LatentSolution(z=z, image=images, objective=values, iterations=iterations)

    def _best_start(self, objective, z, candidates, batch):
        """The first start of each target replaced by its candidate where that is lower."""
        cand = torch.as_tensor(candidates, dtype=torch.float32).to(self.device)
        rows = torch.arange(batch, device=self.device).repeat(2)
        with torch.no_grad(), self.adapter.frozen(), self.adapter.threads(2 * batch):
            values, _ = objective(torch.cat([z[:batch], cand.reshape(batch, -1)]), rows)
        better = (values[batch:] < values[:batch])[:, None]
        self.stats.encoder_starts += int(better.sum())
        return torch.cat([torch.where(better, cand.reshape(batch, -1), z[:batch]), z[batch:]])

    def _solve_chain(self, objective, z, n_starts, batch, chain, tol, key, max_iter=None):
        """The coupled solve: each start is one problem of dimension batch × d."""
        d = self.latent_dim
        slice_rows = torch.arange(n_starts * batch, device=self.device).view(n_starts, batch)

        def chain_objective(zz, rows=None):
            m = zz.shape[0]
            rows = slice(None) if rows is None else rows
            per_slice, images = objective(zz.reshape(m * batch, d),
                                          slice_rows[rows].reshape(-1))
            total = per_slice.view(m, batch).sum(dim=1) + chain.total(zz.reshape(m, batch, d))
            return total, images.view(m, batch, *images.shape[1:])

        chains = z.reshape(n_starts, batch * d)
        dense = self.optimiser == "bfgs" and batch * d <= DENSE_CHAIN_MAX_DIM
        with torch.enable_grad(), self.adapter.frozen(), self.adapter.threads(n_starts * batch):
            if self.optimiser == "adam":
                chains, totals, _, iterations = self._run_adam(chains, chain_objective, tol,
                                                               max_iter)
            else:
                chains, totals, _, iterations = self._run_quasi_newton(
                    chains, chain_objective, tol, f"{key}/chain{batch}", dense=dense,
                    max_iter=max_iter)
        best = int(totals.argmin())
        z = chains[best].reshape(batch, d)
        with torch.no_grad(), self.adapter.frozen(), self.adapter.threads(batch):
            values, images = objective(z, slice_rows[best])
            values = values + chain.per_slice(z[None])[0]
        return z, images, values, iterations

    def _new_memory(self, dense=None):
        dense = self.optimiser == "bfgs" if dense is None else dense
        return BFGSMemory() if dense else LBFGSMemory(self.history_size)

    def _run_quasi_newton(self, z, objective, tol, key, dense=None, max_iter=None,
                          reuse_graph=False):
        # For a single problem the last evaluation's generator graph is kept (retain_graph):
        # when the next solve of this key starts exactly there (the warm start of a 2D outer
        # iteration), only the misfit changes, and the forward pass through G is skipped. (A
        # batch's rows end in different evaluations, so it would rarely match: not kept.)
        keep = reuse_graph and self.warm_start and z.shape[0] == 1
        kept = self._graph.pop(key, None) if keep else None
        last = []

        def fg(zz, rows):
            if rows is None and kept is not None and kept[0].shape == zz.shape \
                    and torch.equal(kept[0], zz):
                leaf, values, images = kept[1], *objective(kept[1], None, kept[2])
            else:
                leaf = zz.detach().requires_grad_(True)
                values, images = objective(leaf, rows)
            (grad,) = torch.autograd.grad(values.sum(), leaf, retain_graph=keep)
            if keep:
                last[:] = [leaf.detach(), leaf, images]
            return values.detach(), grad, images.detach()

        # warm starts carry the curvature too: the next problem (a nearby target, the same
        # generator) has nearly the same Hessian, so its first step needs no backtracking
        memory = self._memory.get(key) if self.warm_start else None
        z, values, images, iterations, _, memory = batched_quasi_newton(
            fg, z, memory if memory is not None else self._new_memory(dense),
            self.max_iter if max_iter is None else max_iter, tol, self.adapter.value_eps)
        if self.warm_start:
            self._memory[key] = memory
            if last and torch.equal(last[0], z):
                self._graph[key] = tuple(last)
        return z, values, images, iterations

    def _run_adam(self, z, objective, tol, max_iter=None):
        max_iter = self.max_iter if max_iter is None else max_iter
        z = z.clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=self.lr)
        previous, calm, iterations = None, 0, max_iter
        for it in range(1, max_iter + 1):
            loss = objective(z)[0].sum()
            (z.grad,) = torch.autograd.grad(loss, z)
            opt.step()
            value = loss.item()
            # Adam oscillates near a minimum: ask for `patience` calm steps in a row.
            small = previous is not None and abs(previous - value) <= tol * max(abs(value), 1e-12)
            calm = calm + 1 if small else 0
            if calm >= self.ADAM_PATIENCE:
                iterations = it
                break
            previous = value
        with torch.no_grad():
            z = z.detach()
            values, images = objective(z)
        return z, values, images, iterations
