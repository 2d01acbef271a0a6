"""The three generative regularisers as CIL Functions, against closed forms of a linear
generator G(z) = Wz + b, finite differences, optimality, and CIL's conventions."""
import math

import numpy as np
import pytest
import torch
from cil.framework import ImageGeometry
from cil.optimisation.functions import L2NormSquared, ScaledFunction

from cil_genreg import (RangeGenerativeRegulariser, SoftGenerativeRegulariser,
                        SparseDeviationGenerativeRegulariser)
from cil_genreg.functions import soft_threshold
from generators import ConvGenerator, LinearGenerator

TIGHT = dict(tolerance=1e-12, max_iteration=300, adaptive_tolerance=False)  # exact per call


@pytest.fixture
def lin():
    G = LinearGenerator()
    W = G.weight.detach().double().numpy()
    b = G.bias.detach().double().numpy()
    ig = ImageGeometry(8, 8)
    x = ig.allocate("random", seed=1)
    return G, W, b, ig, x


def ridge(W, rhs, ridge_weight):
    return np.linalg.solve(W.T @ W + ridge_weight * np.eye(W.shape[1]), W.T @ rhs)


def rel_err(a, b):
    return np.linalg.norm(np.ravel(a) - np.ravel(b)) / max(np.linalg.norm(np.ravel(b)), 1e-12)


def test_soft_value_gradient_prox_and_conjugate_closed_forms(lin):
    G, W, b, ig, x = lin
    mu, tau = 0.1, 0.3
    R = SoftGenerativeRegulariser(G, mu=mu, **TIGHT)
    xv = x.as_array().ravel().astype(float)
    z = ridge(W, xv - b, mu)
    assert R(x) == pytest.approx(np.sum((W @ z + b - xv) ** 2) + mu * z @ z, rel=1e-3)
    assert rel_err(R.latent, z) < 1e-3
    assert rel_err(R.gradient(x).as_array(), 2 * (xv - W @ z - b)) < 1e-3
    zp = ridge(W, xv - b, mu * (1 + 2 * tau))
    prox = (xv + 2 * tau * (W @ zp + b)) / (1 + 2 * tau)
    assert rel_err(R.proximal(x, tau).as_array(), prox) < 1e-3
    s = ig.allocate("random", seed=2) - 0.5
    sv = s.as_array().ravel().astype(float)
    conj = sv @ sv / 4 + b @ sv + np.sum((W.T @ sv) ** 2) / (4 * mu)
    assert R.convex_conjugate(s) == pytest.approx(conj, rel=1e-3)


def test_range_prox_value_and_conjugate_closed_forms(lin):
    G, W, b, ig, x = lin
    tau = 0.3
    R = RangeGenerativeRegulariser(G, **TIGHT)
    xv = x.as_array().ravel().astype(float)
    z = ridge(W, xv - b, 2 * tau)
    p = R.proximal(x, tau)
    assert rel_err(p.as_array(), W @ z + b) < 1e-3
    # on the range, R(G(z)) = ||z||^2; off the range (a generic x, 64 pixels vs 4 latents) +inf
    assert R(p) == pytest.approx(z @ z, rel=1e-3)
    assert R(x) == math.inf
    s = ig.allocate("random", seed=2) - 0.5
    sv = s.as_array().ravel().astype(float)
    assert R.convex_conjugate(s) == pytest.approx(b @ sv + np.sum((W.T @ sv) ** 2) / 4, rel=1e-3)
    with pytest.raises(NotImplementedError, match="proximal algorithm"):
        R.gradient(x)


def test_range_value_finds_a_latent_for_an_image_of_the_range():
    G = ConvGenerator()
    R = RangeGenerativeRegulariser(G, **TIGHT)
    z_true = torch.randn(1, G.latent_dim, generator=torch.Generator().manual_seed(4))
    x = ImageGeometry(16, 16).allocate(None)
    x.fill(G(z_true).detach().numpy().reshape(16, 16))
    value = R(x)
    assert math.isfinite(value)
    assert np.linalg.norm(R.generated_image().as_array() - x.as_array()) <= 1e-2 * x.norm()


def test_sparse_conjugate_closed_form_and_domain(lin):
    G, W, b, ig, x = lin
    mu = 0.2
    R = SparseDeviationGenerativeRegulariser(G, mu=mu, **TIGHT)
    s = 0.5 * (ig.allocate("random", seed=2) - 0.5)
    sv = s.as_array().ravel().astype(float)
    assert R.convex_conjugate(s) == pytest.approx(b @ sv + np.sum((W.T @ sv) ** 2) / (4 * mu),
                                                  rel=1e-3)
    assert R.convex_conjugate(3 * s / np.abs(sv).max()) == math.inf


def test_sparse_prox_beats_random_perturbations_of_itself():
    G = ConvGenerator()
    mu, tau = 0.05, 0.05
    R = SparseDeviationGenerativeRegulariser(G, mu=mu, tolerance=1e-10, max_iteration=300, restarts=4, seed=0)
    rng = np.random.default_rng(0)
    v = ImageGeometry(16, 16).allocate(None)
    img = G(torch.randn(1, G.latent_dim)).detach().numpy().reshape(16, 16)
    v.fill(img + (rng.random((16, 16)) < 0.1) * 0.8 + 0.02 * rng.standard_normal((16, 16)))
    x = R.proximal(v, tau).as_array().astype(float)
    z = torch.tensor(R.latent)
    vv = v.as_array().astype(float)

    def objective(xx, zz):  # 1/2||x - v||^2 + tau (||x - G(z)||_1 + mu ||z||^2)
        gz = G(zz.float()).detach().numpy().reshape(16, 16).astype(float)
        return 0.5 * np.sum((xx - vv) ** 2) + tau * (np.abs(xx - gz).sum() + mu * float((zz ** 2).sum()))

    best = objective(x, z)
    for k in range(60):
        scale = [1e-3, 1e-2, 1e-1][k % 3]
        dx = scale * rng.standard_normal(x.shape) * (k % 2)
        dz = torch.tensor(scale * rng.standard_normal(z.shape)) * ((k // 2) % 2 or 1 - k % 2)
        assert objective(x + dx, z + dz) >= best - 1e-6
    # and the image update is G(z*) + soft threshold of the residual
    gz = G(z).detach()
    expected = gz + soft_threshold(torch.tensor(vv, dtype=torch.float32) - gz, tau)
    assert np.allclose(x, expected.numpy().reshape(16, 16), atol=1e-5)


def finite_difference(f, x, direction, h=1e-3):
    xp, xm = x + h * direction, x - h * direction
    return (f(xp) - f(xm)) / (2 * h)


def test_soft_gradient_against_finite_differences():
    G = ConvGenerator()
    R = SoftGenerativeRegulariser(G, mu=0.05, tolerance=1e-12, max_iteration=500, warm_start=True)
    ig = ImageGeometry(16, 16)
    x = ig.allocate("random", seed=5)
    g = R.gradient(x)
    for seed in range(3):
        d = ig.allocate("random", seed=10 + seed) - 0.5
        fd = finite_difference(R, x, d)
        assert g.dot(d) == pytest.approx(fd, rel=2e-2, abs=1e-3)


def test_cil_conventions_out_scaled_sum_and_geometry(lin):
    G, W, b, ig, x = lin
    R = SoftGenerativeRegulariser(G, mu=0.1, **TIGHT)
    out = ig.allocate(0)
    returned = R.proximal(x, 0.3, out=out)
    assert returned is out and out.geometry == ig
    np.testing.assert_allclose(out.as_array(), R.proximal(x, 0.3).as_array(), atol=1e-4)
    grad_out = ig.allocate(0)
    assert R.gradient(x, out=grad_out) is grad_out
    # lam * R is CIL's ScaledFunction: prox_{tau lam R} and lam R(x)
    lam = 0.5
    scaled = lam * R
    assert isinstance(scaled, ScaledFunction)
    np.testing.assert_allclose(scaled.proximal(x, 0.6).as_array(),
                               R.proximal(x, 0.3).as_array(), atol=1e-4)
    assert scaled(x) == pytest.approx(lam * R(x), rel=1e-5)
    total = R + L2NormSquared()
    assert total(x) == pytest.approx(R(x) + x.squared_norm(), rel=1e-5)
    np.testing.assert_allclose(total.gradient(x).as_array(),
                               (R.gradient(x) + 2 * x).as_array(), atol=1e-4)
    # in place: x as out
    y = x.copy()
    R.proximal(y, 0.3, out=y)
    np.testing.assert_allclose(y.as_array(), R.proximal(x, 0.3).as_array(), atol=1e-4)
    R.reset()
    assert R.latent is None


@pytest.mark.parametrize("cls", [SoftGenerativeRegulariser, RangeGenerativeRegulariser,
                                 SparseDeviationGenerativeRegulariser])
def test_volume_prox_is_the_slicewise_prox(cls):
    G = ConvGenerator()
    kw = dict(tolerance=1e-12, max_iteration=200, warm_start=False, init="zeros")
    vol_geom = ImageGeometry(16, 16, 3)
    vol = vol_geom.allocate("random", seed=7)
    R3 = cls(G, **kw)
    p3 = R3.proximal(vol, 0.2)
    assert p3.shape == (3, 16, 16) and p3.geometry == vol_geom
    assert R3.latent.shape == (3, G.latent_dim)
    for k in range(3):
        sl = ImageGeometry(16, 16).allocate(None)
        sl.fill(vol.as_array()[k])
        p2 = cls(G, **kw).proximal(sl, 0.2)
        # the batched L-BFGS solves each slice as if alone: equal up to float32 rounding
        np.testing.assert_allclose(p3.as_array()[k], p2.as_array(), atol=1e-5)


def test_bad_inputs_give_clear_errors(lin):
    G, W, b, ig, x = lin
    R = SoftGenerativeRegulariser(G, mu=0.1)
    wrong = ImageGeometry(9, 8).allocate(0)
    with pytest.raises(ValueError, match=r"8x8.*\(8, 9\)"):
        R(wrong)
    bad = x.copy()
    bad.as_array()[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        R.proximal(bad, 0.1)
    bad.as_array()[0, 0] = np.inf
    with pytest.raises(ValueError, match="Inf"):
        R.gradient(bad)
    for tau in (0, -1.0, np.inf):
        with pytest.raises(ValueError, match="tau"):
            R.proximal(x, tau)
    with pytest.raises(TypeError, match="DataContainer"):
        R(np.zeros((8, 8)))
    with pytest.raises(ValueError, match="geometry"):
        SoftGenerativeRegulariser(G, mu=0.1, geometry=ImageGeometry(10, 10))
    R_geom = SoftGenerativeRegulariser(G, mu=0.1, geometry=ig)
    other = ImageGeometry(8, 8, voxel_size_x=2.0, voxel_size_y=2.0).allocate(0)
    with pytest.raises(ValueError, match="geometry"):
        R_geom(other)
    with pytest.raises(ValueError, match="mu"):
        SoftGenerativeRegulariser(G, mu=-1)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        SoftGenerativeRegulariser(lambda z: z, mu=0.1)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA|cuda"):
            SoftGenerativeRegulariser(G, mu=0.1, device="cuda")


@pytest.mark.parametrize("cls", [SoftGenerativeRegulariser, SparseDeviationGenerativeRegulariser])
def test_mu_zero_conjugate_raises_but_value_and_prox_work(cls, lin):
    """With mu = 0 the conjugate is sup_z <G(z), s>, unbounded for a linear G: no value."""
    G, W, b, ig, x = lin
    R = cls(G, mu=0.0, **TIGHT)
    s = 0.5 * (ig.allocate("random", seed=2) - 0.5)
    with pytest.raises(ValueError, match=r"mu > 0.*coercive"):
        R.convex_conjugate(s)
    assert math.isfinite(R(x))
    p = R.proximal(x, 0.3)
    assert np.isfinite(p.as_array()).all()
    if cls is SoftGenerativeRegulariser:
        # mu = 0: the least-squares fit of x, and the gradient 2(x - G(z*))
        xv = x.as_array().ravel().astype(float)
        z = np.linalg.lstsq(W, xv - b, rcond=None)[0]
        assert rel_err(R.gradient(x).as_array(), 2 * (xv - W @ z - b)) < 1e-3


@pytest.mark.parametrize("cls", [SoftGenerativeRegulariser, RangeGenerativeRegulariser,
                                 SparseDeviationGenerativeRegulariser])
def test_proximal_out_is_filled_returned_and_keeps_the_geometry(cls):
    G = LinearGenerator()
    ig = ImageGeometry(8, 8, voxel_size_x=0.5, voxel_size_y=2.0, center_x=1.0)
    x = ig.allocate("random", seed=1)
    expected = cls(G, **TIGHT).proximal(x, 0.3)
    assert expected.geometry == ig
    out = ig.allocate(-7.0)
    # a fresh regulariser each time: same start, so the same latent step, with or without out
    returned = cls(G, **TIGHT).proximal(x, 0.3, out=out)
    assert returned is out and out.geometry == ig
    assert not np.any(out.as_array() == -7.0)
    np.testing.assert_allclose(out.as_array(), expected.as_array(), atol=1e-6)


def sparse_objective(W, b, xv, mu, z):
    """||x - Wz - b||_1 + mu ||z||^2 for a batch of latents z (k, d)."""
    return np.abs(xv[None] - z @ W.T - b[None]).sum(1) + mu * np.sum(z ** 2, 1)


def test_sparse_value_against_a_dense_grid_for_d_1():
    G = LinearGenerator(latent_dim=1)
    W = G.weight.detach().double().numpy()
    b = G.bias.detach().double().numpy()
    x = ImageGeometry(8, 8).allocate("random", seed=3)
    xv = x.as_array().ravel().astype(float)
    mu = 0.1
    grid = np.linspace(-5, 5, 200001)[:, None]
    values = sparse_objective(W, b, xv, mu, grid)
    assert 0 < values.argmin() < len(grid) - 1  # the minimum is inside the grid
    R = SparseDeviationGenerativeRegulariser(G, mu=mu, **TIGHT)
    assert R(x) == pytest.approx(values.min(), rel=1e-3)
    assert R.latent[0, 0] == pytest.approx(grid[values.argmin(), 0], abs=1e-2)


def test_sparse_value_against_scipy_powell(lin):
    import scipy.optimize as optimize
    G, W, b, ig, x = lin
    xv = x.as_array().ravel().astype(float)
    mu = 0.1
    R = SparseDeviationGenerativeRegulariser(G, mu=mu, **TIGHT)
    value = R(x)

    def f(z):
        return sparse_objective(W, b, xv, mu, z[None])[0]

    # convex in z for a linear G: Powell from a few starts, the best kept
    starts = [np.zeros(W.shape[1]), ridge(W, xv - b, mu)]
    best = min(optimize.minimize(f, z0, method="Powell",
                                 options=dict(xtol=1e-10, ftol=1e-12, maxiter=20000)).fun
               for z0 in starts)
    assert value == pytest.approx(best, rel=1e-3)
    # the value is the objective at the latent found (exact L1, not its Huber smoothing)
    assert value == pytest.approx(f(R.latent[0].astype(float)), rel=1e-5)


def test_sparse_gradient_raises_and_points_to_the_proximal(lin):
    G, W, b, ig, x = lin
    R = SparseDeviationGenerativeRegulariser(G, mu=0.1)
    with pytest.raises(NotImplementedError, match=r"non-smooth.*proximal"):
        R.gradient(x)
    with pytest.raises(NotImplementedError, match="proximal"):
        R.gradient(x, out=ig.allocate(0))


class _EncodedLinearGenerator(LinearGenerator):
    """A linear generator with its exact left inverse as the encoder (a perfect autoencoder),
    which counts its calls."""

    def __init__(self):
        super().__init__(latent_dim=4, image_shape=(8, 8), seed=3)
        self.encoded = 0

    def encode(self, x):
        self.encoded += 1
        v = x.reshape(len(x), -1) - self.bias
        return torch.linalg.lstsq(self.weight, v.T).solution.T


def test_encoder_start_is_used_once_then_the_warm_start():
    G = _EncodedLinearGenerator()
    ig = ImageGeometry(8, 8)
    z_true = torch.tensor([[1.5, -2.0, 0.7, 3.0]])
    x = ig.allocate(None)
    x.fill(G(z_true).detach().numpy()[0, 0])
    iterations = {}
    for init in ("encoder", "zeros"):
        R = RangeGenerativeRegulariser(G, init=init, tolerance=1e-6, adaptive_tolerance=False)
        R.proximal(x, 1e-3)
        iterations[init] = R.stats.iterations
        np.testing.assert_allclose(R.latent[0], z_true[0].numpy() / (1 + 2e-3), atol=1e-2)
    # the encoder lands next to the answer: far fewer inner iterations than from z = 0
    assert iterations["encoder"] < iterations["zeros"]
    R = RangeGenerativeRegulariser(G, init="auto")
    counted = R.generator  # the regulariser's own (eval-mode) copy of G: it counts the calls
    counted.encoded = 0
    R.proximal(x, 1e-3)
    R.proximal(x, 1e-3)
    assert counted.encoded == 1  # the second prox starts from the warm start, not the encoder
    R.reset()
    R.proximal(x, 1e-3)
    assert counted.encoded == 2  # reset() forgets the warm start
    with pytest.raises(ValueError, match="no encode method"):
        RangeGenerativeRegulariser(LinearGenerator(), init="encoder")


def test_adaptive_tolerance_makes_the_first_prox_inexact_and_a_repeated_one_exact(lin):
    """With adaptive_tolerance (the default) the first proximal map, the start of an outer iteration,
    runs at most inexact_max_iteration inner iterations; the same input again (the outer
    iteration has settled: delta = 0) is solved to tol, continuing from the warm start."""
    G, W, b, ig, x = lin
    mu, tau = 0.1, 0.3
    xv = x.as_array().ravel().astype(float)
    zp = ridge(W, xv - b, mu * (1 + 2 * tau))
    exact = (xv + 2 * tau * (W @ zp + b)) / (1 + 2 * tau)
    R = SoftGenerativeRegulariser(G, mu=mu, init="zeros", tolerance=1e-10, max_iteration=300,
                                  inexact_max_iteration=2)
    R.proximal(x, tau)
    assert R.stats.iterations == 2
    assert rel_err(R.latent, zp) > 1e-6  # two BFGS iterations from z = 0 are not the answer
    p = R.proximal(x, tau)
    assert R.stats.iterations > 2
    assert rel_err(p.as_array(), exact) < 1e-4
    with pytest.raises(ValueError, match="inexact_max_iteration"):
        SoftGenerativeRegulariser(G, inexact_max_iteration=0)
