"""TV + generative regulariser in one CIL PDHG (BlockOperator [A; grad; P]): it is CIL's TV-PDHG
when the generative weight is 0, and on a linear generator (a convex problem with one
minimiser) it reaches the closed-form minimiser, also with a patch prior, and lowers the
joint objective below what either part's minimiser gives."""
import numpy as np
import pytest
from cil.optimisation.algorithms import PDHG
from cil.optimisation.functions import (BlockFunction, L2NormSquared, MixedL21Norm,
                                        TotalVariation, ZeroFunction)
from cil.optimisation.operators import BlockOperator, GradientOperator

from cil_genreg import PatchGenerativeRegulariser, PatchOperator, SoftGenerativeRegulariser
from cil_genreg.physics.forward import add_noise, make_geometry, make_projector
from cil_genreg.algorithms.hybrid import hybrid_objective, hybrid_pdhg
from generators import LinearGenerator

SOLVER = dict(tolerance=1e-9, max_iteration=100, adaptive_tolerance=False)


def problem(size=12, angles=6, seed=0):
    ig, ag = make_geometry(size, angles)
    A = make_projector(ig, ag)
    truth = ig.allocate(0.0)
    arr = np.zeros((size, size), np.float32)
    arr[3:9, 4:10] = 1.0
    truth.fill(arr)
    y, _ = add_noise(A.direct(truth), 0.02, seed)
    return A, y


def test_zero_generative_weight_is_cils_tv_pdhg_and_the_steps_are_the_diagonal_ones():
    A, y = problem()
    R = SoftGenerativeRegulariser(LinearGenerator(image_shape=(12, 12)))
    mine = hybrid_pdhg(A, y, R, lambda_tv=0.5, lambda_g=0.0)
    ig = A.domain_geometry()
    cil = PDHG(f=BlockFunction(L2NormSquared(b=y), 0.5 * MixedL21Norm()), g=ZeroFunction(),
               operator=BlockOperator(A, GradientOperator(ig)), sigma=mine.sigma, tau=mine.tau,
               update_objective_interval=10 ** 9)
    mine.run(30, verbose=0)
    cil.run(30, verbose=0)
    np.testing.assert_array_equal(mine.solution.as_array(), cil.solution.as_array())
    ones = A.range_geometry().allocate(1.0)
    np.testing.assert_allclose(mine.tau.as_array(), 1 / (A.adjoint(ones).as_array() + 4),
                               rtol=1e-5)
    assert mine.sigma.get_item(1) == 0.5


def matrix_of(op):
    """The dense matrix of a CIL linear operator, column by column."""
    ig = op.domain_geometry()
    e = ig.allocate(0.0)
    cols = []
    for k in range(e.size):
        arr = np.zeros(e.size, np.float32)
        arr[k] = 1.0
        e.fill(arr.reshape(ig.shape))
        cols.append(op.direct(e).as_array().ravel().astype(float))
    return np.stack(cols, axis=1)


def soft_quadratic(G, mu):
    """For G(z) = Wz + b: min_z ||G(z) - v||^2 + mu ||z||^2 = (v - b)^T M (v - b)."""
    W = G.weight.detach().double().numpy()
    return np.eye(W.shape[0]) - W @ np.linalg.solve(W.T @ W + mu * np.eye(W.shape[1]), W.T), \
        G.bias.detach().double().numpy()


@pytest.mark.parametrize("patches", [False, True])
def test_linear_generator_hybrid_reaches_the_closed_form_minimiser(patches):
    size, mu, lam_g = (16 if patches else 12), 0.1, 2.0
    A, y = problem(size)
    G = LinearGenerator(image_shape=(8, 8) if patches else (size, size), seed=3)
    R = SoftGenerativeRegulariser(G, mu=mu, **SOLVER)
    if patches:
        R = PatchGenerativeRegulariser(R, offsets=[(0, 0)])
    algo = hybrid_pdhg(A, y, R, 0.0, lam_g)
    start = hybrid_objective(algo)
    algo.run(300, verbose=0)
    M, b = soft_quadratic(G, mu)
    Am = matrix_of(A)
    Pm = matrix_of(PatchOperator(A.domain_geometry(), 8)) if patches else np.eye(size * size)
    nb = Pm.shape[0] // b.size
    Mp, bp = np.kron(np.eye(nb), M), np.tile(b, nb)
    # normal equations of ||Ax - y||^2 + lam_g (Px - b)^T M (Px - b)
    lhs = Am.T @ Am + lam_g * Pm.T @ Mp @ Pm
    rhs = Am.T @ y.as_array().ravel() + lam_g * Pm.T @ Mp @ bp
    x_star = np.linalg.solve(lhs, rhs)
    assert hybrid_objective(algo) < 0.1 * start
    assert np.linalg.norm(algo.solution.as_array().ravel() - x_star) < \
        1e-2 * np.linalg.norm(x_star)


def test_hybrid_lowers_its_objective_below_both_parts_minimisers():
    A, y = problem(12)
    G = LinearGenerator(image_shape=(12, 12), seed=3)

    def run(lam_tv, lam_g):
        R = SoftGenerativeRegulariser(G, mu=0.1, **SOLVER)
        algo = hybrid_pdhg(A, y, R, lam_tv, lam_g)
        algo.run(150, verbose=0)
        return algo

    both = run(0.3, 2.0)
    value = hybrid_objective(both)
    for part in (run(0.3, 0.0), run(0.0, 2.0)):
        assert value < hybrid_objective(both, part.solution)


def test_hybrid_refuses_bad_weights_and_regularisers():
    A, y = problem()
    R = SoftGenerativeRegulariser(LinearGenerator(image_shape=(12, 12)))
    with pytest.raises(ValueError, match="both 0"):
        hybrid_pdhg(A, y, R, 0, 0)
    with pytest.raises(ValueError, match="non-negative"):
        hybrid_pdhg(A, y, R, -1.0, 1.0)
    with pytest.raises(TypeError, match="generative regulariser"):
        hybrid_pdhg(A, y, TotalVariation(), 1.0, 1.0)
    nonneg = hybrid_pdhg(A, y, R, 0.5, 0.5, nonnegative=True)
    nonneg.run(20, verbose=0)
    assert nonneg.solution.as_array().min() >= 0
