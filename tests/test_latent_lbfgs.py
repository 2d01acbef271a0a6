"""LatentLBFGS: the package's quasi-Newton solver as a CIL Algorithm on functions of the latent."""
import numpy as np
import pytest
import scipy.optimize
import torch
from cil.optimisation.algorithms import FISTA
from cil.optimisation.functions import (Function, L2NormSquared, LeastSquares,
                                        OperatorCompositionFunction)

from cil_genreg import GeneratorOperator, LatentLeastSquares
from cil_genreg.algorithms import LatentLBFGS
from cil_genreg.algorithms.latent_objective import LatentObjective, _Generic
from generators import ConvGenerator, LinearGenerator
from test_algorithms import matrix_of, projector


@pytest.fixture(scope="module")
def conv_problem():
    G = ConvGenerator()
    ig, _, A = projector(16, 7, 23)
    truth = G(torch.tensor([[0.5, -1.0, 0.3, 0.8, -0.2, 0.1]])).detach().numpy()[0, 0]
    x = ig.allocate(None)
    x.fill(truth)
    y = A.direct(x)
    return G, A, y


def test_converges_to_the_closed_form_on_a_convex_quadratic():
    """G(z) = Wz + b: ||A(Wz + b) - y||^2 + alpha ||z||^2 is a convex quadratic in z."""
    G = LinearGenerator()
    ig, _, A = projector(8, 6, 12)
    y = A.direct(ig.allocate("random", seed=3))
    alpha = 0.5
    f_ls = LatentLeastSquares(A, G, y)
    M = matrix_of(A, ig) @ G.weight.detach().double().numpy()
    b = matrix_of(A, ig) @ G.bias.detach().double().numpy()
    z_star = np.linalg.solve(M.T @ M + alpha * np.eye(4),
                             M.T @ (y.as_array().ravel() - b))
    algo = LatentLBFGS(initial=f_ls.latent_geometry.allocate(0),
                       f=f_ls + alpha * L2NormSquared(), tolerance=1e-10, max_iteration=50)
    algo.run(verbose=0)
    np.testing.assert_allclose(algo.solution.as_array(), z_star, rtol=1e-3, atol=1e-4)
    assert algo.iteration < 50 and algo.stop_reason in ("tolerance", "line search failed")


def test_matches_scipy_lbfgs_on_a_nonlinear_generator(conv_problem):
    G, A, y = conv_problem
    alpha = 0.1
    f_ls = LatentLeastSquares(A, G, y)
    f = f_ls + alpha * L2NormSquared()
    z0 = f_ls.latent_geometry.allocate(0)
    algo = LatentLBFGS(initial=z0, f=f, tolerance=1e-9, max_iteration=200).run(verbose=0)

    z = f_ls.latent_geometry.allocate(0)

    def fun(v):
        z.fill(v.astype(np.float32))
        return float(f(z)), f.gradient(z).as_array().astype(float)

    ref = scipy.optimize.minimize(fun, np.zeros(G.latent_dim), jac=True, method="L-BFGS-B",
                                  options={"gtol": 1e-9, "ftol": 1e-12, "maxiter": 500})
    ours = algo.objective[-1]
    assert ours == pytest.approx(ref.fun, rel=1e-4)
    np.testing.assert_allclose(algo.solution.as_array(), ref.x, atol=2e-3)
    assert ours == pytest.approx(float(f(algo.solution)), rel=1e-5)


def test_cil_conventions_objective_callbacks_solution_and_stopping(conv_problem):
    G, A, y = conv_problem
    f_ls = LatentLeastSquares(A, G, y)
    f = f_ls + 0.1 * L2NormSquared()
    seen = []
    algo = LatentLBFGS(initial=f_ls.latent_geometry.allocate(0), f=f, tolerance=1e-5)
    algo.run(500, callbacks=[lambda a: seen.append((a.iteration, a.get_last_objective()))],
             verbose=0)
    # stopped by the tolerance long before 500 iterations; one callback per iteration
    assert algo.stop_reason == "tolerance" and 3 < algo.iteration < 500
    assert [i for i, _ in seen] == list(range(algo.iteration + 1))
    assert algo.iterations == [-1] + list(range(1, algo.iteration + 1))  # CIL's bookkeeping
    assert len(algo.objective) == algo.iteration + 1  # the start, then every iteration
    assert all(b <= a * (1 + 1e-6) for a, b in zip(algo.objective, algo.objective[1:]))
    assert algo.objective[0] == pytest.approx(float(f(f_ls.latent_geometry.allocate(0))), rel=1e-5)
    assert algo.solution.geometry == f_ls.latent_geometry
    # running again after the stop does nothing
    before = algo.iteration
    algo.run(5, verbose=0)
    assert algo.iteration == before
    # max_iteration caps, and an objective interval of 0 records nothing
    capped = LatentLBFGS(initial=f_ls.latent_geometry.allocate(0), f=f, max_iteration=3,
                         update_objective_interval=0).run(10, verbose=0)
    # (CIL counts from -1 when the start's objective is not evaluated: 3 updates end at 2)
    assert capped.iteration == 2 and capped.stop_reason == "max_iteration"
    assert capped.objective == []


def test_known_terms_agree_with_cil_and_a_user_composition(conv_problem):
    G, A, y = conv_problem
    f_ls = LatentLeastSquares(A, G, y, c=0.7)
    geometry = f_ls.latent_geometry
    composed = OperatorCompositionFunction(LeastSquares(A, y, c=0.7),
                                           GeneratorOperator(G, range_geometry=A.domain_geometry()))
    f = f_ls + 0.3 * L2NormSquared()
    fast = LatentObjective(f, geometry)
    assert fast.kinds == ["through generator", "closed form"]
    user = LatentObjective(composed + 0.3 * L2NormSquared(), geometry)
    assert user.kinds == ["through generator", "closed form"]
    z = torch.randn(3, G.latent_dim, generator=torch.Generator().manual_seed(0))
    values, grads, _ = fast(z)
    generic = _Generic(f, geometry)
    v_ref, g_ref = generic(z)
    np.testing.assert_allclose(values, v_ref, rtol=1e-5)
    np.testing.assert_allclose(grads, g_ref, rtol=1e-4, atol=1e-4)
    v_user, g_user, _ = user(z)
    np.testing.assert_allclose(v_user, v_ref, rtol=1e-5)
    np.testing.assert_allclose(g_user, g_ref, rtol=1e-4, atol=1e-4)


class Quartic(Function):
    """sum((z - 1)^4): a smooth function the package does not know."""

    def __call__(self, x):
        return float(np.sum((x.as_array() - 1.0) ** 4))

    def gradient(self, x, out=None):
        g = x.copy()
        g.fill(4.0 * (x.as_array() - 1.0) ** 3)
        if out is not None:
            out.fill(g)
            return out
        return g


def test_any_differentiable_cil_function_through_call_and_gradient(conv_problem):
    G, A, y = conv_problem
    geometry = LatentLeastSquares(A, G, y).latent_geometry
    algo = LatentLBFGS(initial=geometry.allocate(0), f=Quartic() + L2NormSquared(),
                       tolerance=1e-9, max_iteration=200)
    assert algo.fg.kinds == ["generic", "closed form"]
    algo.run(verbose=0)
    # stationary: 4 (z - 1)^3 + 2 z = 0, the same real root t in every coordinate
    t = scipy.optimize.brentq(lambda s: 4 * (s - 1) ** 3 + 2 * s, 0.0, 1.0)
    np.testing.assert_allclose(algo.solution.as_array(), t, atol=1e-3)


def test_the_range_method_is_one_line_and_beats_fista_in_iterations(conv_problem):
    G, A, y = conv_problem
    f_ls = LatentLeastSquares(A, G, y)
    z = LatentLBFGS(initial=f_ls.latent_geometry.allocate(0), f=f_ls + 0.1 * L2NormSquared(),
                    max_iteration=30).run(verbose=0).solution
    fista = FISTA(initial=f_ls.latent_geometry.allocate(0), f=f_ls, g=0.1 * L2NormSquared(),
                  update_objective_interval=0)
    fista.run(100, verbose=0)
    f = f_ls + 0.1 * L2NormSquared()
    assert f(z) <= f(fista.solution) * (1 + 1e-4)


def test_restarts_run_as_one_batch_and_keep_the_best(conv_problem):
    G, A, y = conv_problem
    f_ls = LatentLeastSquares(A, G, y)
    f = f_ls + 0.01 * L2NormSquared()
    start = f_ls.latent_geometry.allocate(0)
    start.fill(np.full(G.latent_dim, 3.0, dtype=np.float32))  # a poor start
    single = LatentLBFGS(initial=start, f=f, max_iteration=60).run(verbose=0)
    calls = []
    module = f_ls.generator_operator.adapter.module  # the generator the function runs
    forward = module.forward
    module.forward = lambda z: calls.append(z.shape[0]) or forward(z)
    try:
        multi = LatentLBFGS(initial=start, f=f, max_iteration=60, restarts=4, seed=1)
        multi.run(verbose=0)
    finally:
        del module.forward
    assert calls[0] == 5  # the five starts in one generator pass
    assert multi.objective[-1] <= single.objective[-1] * (1 + 1e-6)
    assert float(f(multi.solution)) == pytest.approx(multi.objective[-1], rel=1e-5)


def test_bad_input():
    G = LinearGenerator()
    ig, _, A = projector(8, 4, 12)
    f = LatentLeastSquares(A, G, A.direct(ig.allocate(1.0)))
    z0 = f.latent_geometry.allocate(0)
    with pytest.raises(TypeError, match="DataContainer"):
        LatentLBFGS(initial=np.zeros(4), f=f)
    with pytest.raises(ValueError, match="tolerance"):
        LatentLBFGS(initial=z0, f=f, tolerance=0)
    with pytest.raises(ValueError, match="memory"):
        LatentLBFGS(initial=z0, f=f, memory="newton")
    with pytest.raises(ValueError, match="iterations"):
        LatentLBFGS(initial=z0, f=f).run(verbose=0)
