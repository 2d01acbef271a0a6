"""The discrepancy principle on Tikhonov regularisation, where every x_λ is known exactly."""
import numpy as np
import pytest
from cil.framework import AcquisitionGeometry, ImageGeometry
from cil.plugins.astra import ProjectionOperator

from cil_genreg.experiments.parameter_choice import discrepancy_principle


def test_picks_the_largest_lambda_within_the_noise_level():
    ig = ImageGeometry(8, 8)
    ag = AcquisitionGeometry.create_Parallel2D().set_angles(np.linspace(0, 180, 8, endpoint=False)).set_panel(12)
    A = ProjectionOperator(ig, ag, device="cpu")
    M = np.stack([A.direct(_unit(ig, k)).as_array().ravel() for k in range(64)], axis=1).astype(float)
    rng = np.random.default_rng(0)
    truth = rng.random(64)
    sigma = 0.05
    yv = M @ truth + sigma * rng.standard_normal(M.shape[0])
    y = ag.allocate(None)
    y.fill(yv.reshape(ag.shape).astype(np.float32))
    calls = []

    def tikhonov(lam):  # argmin ||Mx - y||^2 + lam ||x||^2, exactly
        calls.append(lam)
        x = ig.allocate(None)
        x.fill(np.linalg.solve(M.T @ M + lam * np.eye(64), M.T @ yv).reshape(8, 8).astype(np.float32))
        return x

    lambdas = np.logspace(-3, 2, 11)
    choice = discrepancy_principle(tikhonov, A, y, sigma, lambdas)
    residual = lambda lam: np.sum((M @ np.linalg.solve(M.T @ M + lam * np.eye(64), M.T @ yv) - yv) ** 2)  # noqa: E731
    bound = yv.size * sigma ** 2
    feasible = [lam for lam in lambdas if residual(lam) <= bound]
    assert choice.satisfied and choice.lam == pytest.approx(max(feasible))
    assert choice.bound == pytest.approx(bound)
    # tried from the largest down, stopping at the first that fits
    assert calls == sorted(calls, reverse=True) and calls[-1] == pytest.approx(choice.lam)
    assert all(r > bound for _, r in choice.table[:-1]) and choice.table[-1][1] <= bound * (1 + 1e-5)
    # with an impossible noise level no λ fits: the smallest residual is returned, flagged
    none = discrepancy_principle(tikhonov, A, y, 1e-6, [1.0, 10.0])
    assert not none.satisfied and none.lam == 1.0
    with pytest.raises(ValueError, match="empty"):
        discrepancy_principle(tikhonov, A, y, sigma, [])


def _unit(ig, k):
    e = ig.allocate(0)
    e.as_array().flat[k] = 1.0
    return e


class _Known:
    """A fake method whose residual ‖A x_λ − y‖² is a given function of λ: x_λ = r(λ)·e with A
    the identity on a vector of m = 4 data, so ‖x − 0‖² = 4 r²."""

    def __init__(self, residual):
        from cil.framework import VectorGeometry
        from cil.optimisation.operators import IdentityOperator
        self.vg = VectorGeometry(4)
        self.A = IdentityOperator(self.vg)
        self.y = self.vg.allocate(0)
        self.residual = residual

    def __call__(self, lam):
        x = self.vg.allocate(0)
        x.fill(np.full(4, np.sqrt(self.residual(lam) / 4), np.float32))
        return x


def test_nonmonotone_residual_gives_the_largest_feasible_lambda():
    # feasible (residual <= 4 sigma^2 = 4): lambda in {0.1, 1, 10}; 3 and 30 are not
    table = {0.1: 1.0, 1.0: 2.0, 3.0: 9.0, 10.0: 3.9, 30.0: 16.0}
    known = _Known(table.get)
    choice = discrepancy_principle(known, known.A, known.y, 1.0, list(table))
    assert choice.satisfied and choice.lam == 10.0
    assert [lam for lam, _ in choice.table] == [30.0, 10.0]
    assert choice.table[0][1] == pytest.approx(16.0, rel=1e-5)
    # tau scales the bound: with tau = 5 (bound 20) the largest lambda fits
    assert discrepancy_principle(known, known.A, known.y, 1.0, list(table), tau=5).lam == 30.0
