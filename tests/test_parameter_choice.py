"""The discrepancy principle on Tikhonov regularisation, where every x_λ is known exactly."""
import numpy as np
import pytest
from cil.framework import AcquisitionGeometry, ImageGeometry
from cil.plugins.astra import ProjectionOperator

from cil_genreg.parameter_choice import discrepancy_principle


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
