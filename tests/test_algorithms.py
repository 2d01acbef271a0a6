"""The regularisers inside CIL's algorithms with an ASTRA CPU projector."""
import numpy as np
import pytest
import torch
from cil.framework import AcquisitionGeometry, ImageGeometry
from cil.optimisation.algorithms import APGD, FISTA, GD, PDHG
from cil.optimisation.functions import L2NormSquared, LeastSquares
from cil.plugins.astra import FBP, ProjectionOperator

from cil_genreg import (LatentLeastSquares, RangeGenerativeRegulariser,
                        SoftGenerativeRegulariser, SparseDeviationGenerativeRegulariser)
from generators import ConvGenerator, LinearGenerator


def projector(n, angles, panel):
    ig = ImageGeometry(n, n)
    ag = AcquisitionGeometry.create_Parallel2D().set_angles(
        np.linspace(0, 180, angles, endpoint=False)).set_panel(panel)
    return ig, ag, ProjectionOperator(ig, ag, device="cpu")


def matrix_of(A, ig):
    cols = []
    e = ig.allocate(0)
    for k in range(e.size):
        e.fill(0)
        e.as_array().flat[k] = 1.0
        cols.append(A.direct(e).as_array().ravel().astype(float))
    return np.stack(cols, axis=1)


@pytest.fixture(scope="module")
def quadratic_problem():
    """argmin_x ||Ax - y||^2 + lam R_soft(x) with G(z) = Wz + b is a convex quadratic:
    R_soft(x) = (x - b)^T P (x - b), P = mu (W W^T + mu I)^{-1}."""
    G = LinearGenerator()
    ig, ag, A = projector(8, 6, 12)
    M = matrix_of(A, ig)
    rng = np.random.default_rng(0)
    y = ag.allocate(None)
    y.fill(rng.random(ag.shape).astype(np.float32))
    W, b = G.weight.detach().double().numpy(), G.bias.detach().double().numpy()
    mu, lam = 0.1, 2.0
    P = mu * np.linalg.inv(W @ W.T + mu * np.eye(64))
    yv = y.as_array().ravel().astype(float)
    x_star = np.linalg.solve(M.T @ M + lam * P, M.T @ yv + lam * P @ b)
    return G, ig, A, y, mu, lam, x_star


def rel_err(x, x_star):
    return np.linalg.norm(x.as_array().ravel() - x_star) / np.linalg.norm(x_star)


def test_fista_reaches_the_exact_minimiser(quadratic_problem):
    G, ig, A, y, mu, lam, x_star = quadratic_problem
    R = SoftGenerativeRegulariser(G, mu=mu, tolerance=1e-12, max_iteration=200)
    algo = FISTA(initial=ig.allocate(0), f=LeastSquares(A, y), g=lam * R,
                 update_objective_interval=50)
    algo.run(400, verbose=0)
    assert rel_err(algo.solution, x_star) < 1e-3


def test_pdhg_reaches_the_exact_minimiser(quadratic_problem):
    G, ig, A, y, mu, lam, x_star = quadratic_problem
    R = SoftGenerativeRegulariser(G, mu=mu, tolerance=1e-12, max_iteration=200)
    algo = PDHG(f=L2NormSquared(b=y), g=lam * R, operator=A, initial=ig.allocate(0),
                update_objective_interval=100)
    algo.run(300, verbose=0)
    assert rel_err(algo.solution, x_star) < 1e-3
    # PDHG's objectives (primal uses R, dual uses its convex conjugate) ran and agree at the end
    primal, dual = algo.objective[-1], algo.dual_objective[-1]
    assert abs(primal - dual) <= 1e-3 * abs(primal)


@pytest.fixture(scope="module")
def sparse_angle():
    """A 16x16 image in the range of a small conv generator, 5 angles, 3% noise."""
    G = ConvGenerator()
    ig, ag, A = projector(16, 5, 23)
    z_true = torch.randn(1, G.latent_dim, generator=torch.Generator().manual_seed(2))
    truth = ig.allocate(None)
    truth.fill(G(z_true).detach().numpy().reshape(16, 16))
    y = A.direct(truth)
    rng = np.random.default_rng(1)
    y += 0.03 * y.max() * rng.standard_normal(ag.shape).astype(np.float32)
    fbp = FBP(ig, ag, device="cpu")(y)
    return G, ig, A, y, truth, fbp


def psnr(x, truth):
    mse = np.mean((x.as_array() - truth.as_array()) ** 2)
    return 10 * np.log10(1.0 / mse)


SOLVER = dict(max_iteration=30, tolerance=1e-6)


def make(kind, G):
    if kind == "soft":
        return SoftGenerativeRegulariser(G, mu=1e-3, **SOLVER)
    if kind == "range":
        return RangeGenerativeRegulariser(G, **SOLVER)
    return SparseDeviationGenerativeRegulariser(G, mu=1e-3, **SOLVER)


@pytest.mark.parametrize("kind", ["soft", "range", "sparse"])
@pytest.mark.parametrize("algorithm", ["FISTA", "APGD", "PDHG"])
def test_regularisers_beat_fbp_in_proximal_algorithms(sparse_angle, kind, algorithm):
    G, ig, A, y, truth, fbp = sparse_angle
    lam = {"soft": 1.0, "range": 1e-3, "sparse": 0.05}[kind]
    g = lam * make(kind, G)
    if algorithm == "PDHG":
        algo = PDHG(f=L2NormSquared(b=y), g=g, operator=A, initial=fbp.copy(),
                    update_objective_interval=1000)
    else:
        cls = FISTA if algorithm == "FISTA" else APGD
        algo = cls(initial=fbp.copy(), f=LeastSquares(A, y), g=g, update_objective_interval=1000)
    algo.run(40, verbose=0)
    assert psnr(algo.solution, truth) > psnr(fbp, truth) + 3


def test_soft_regulariser_beats_fbp_in_gradient_descent(sparse_angle):
    G, ig, A, y, truth, fbp = sparse_angle
    f = LeastSquares(A, y) + 1.0 * SoftGenerativeRegulariser(G, mu=1e-3, **SOLVER)
    algo = GD(initial=fbp.copy(), f=f, step_size=1.0 / (2 * A.norm() ** 2 + 2.0),
              update_objective_interval=1000)
    algo.run(60, verbose=0)
    assert psnr(algo.solution, truth) > psnr(fbp, truth) + 3


def test_latent_least_squares_range_method_beats_fbp(sparse_angle):
    G, ig, A, y, truth, fbp = sparse_angle
    f = LatentLeastSquares(A, G, y)
    for cls in (FISTA, GD):
        if cls is FISTA:
            algo = FISTA(initial=f.latent_geometry.allocate(0), f=f, g=1e-3 * L2NormSquared(),
                         update_objective_interval=1000)
        else:
            objective = f + 1e-3 * L2NormSquared()
            algo = GD(initial=f.latent_geometry.allocate(0), f=objective,
                      step_size=1.0 / objective.L, update_objective_interval=1000)
        algo.run(150, verbose=0)
        assert psnr(f.image(algo.solution), truth) > psnr(fbp, truth) + 3
