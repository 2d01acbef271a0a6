"""LatentLeastSquares and GeneratorOperator: values, autograd gradients against finite
differences, geometries and errors."""
import numpy as np
import pytest
import torch
from cil.framework import AcquisitionGeometry, ImageGeometry, VectorGeometry
from cil.plugins.astra import ProjectionOperator

from cil_genreg import GeneratorOperator, LatentLeastSquares
from generators import ConvGenerator, LinearGenerator


@pytest.fixture
def problem():
    G = ConvGenerator()
    ig = ImageGeometry(16, 16)
    ag = AcquisitionGeometry.create_Parallel2D().set_angles(
        np.linspace(0, 180, 7, endpoint=False)).set_panel(23)
    A = ProjectionOperator(ig, ag, device="cpu")
    y = A.direct(ig.allocate("random", seed=3))
    return G, ig, A, y


def test_value_and_gradient_against_finite_differences(problem):
    G, ig, A, y = problem
    f = LatentLeastSquares(A, G, y, c=0.7)
    assert isinstance(f.latent_geometry, VectorGeometry)
    assert f.latent_geometry.shape == (G.latent_dim,)
    z = f.latent_geometry.allocate("random", seed=1)
    image = f.image(z)
    assert image.geometry == ig
    assert f(z) == pytest.approx(0.7 * (A.direct(image) - y).squared_norm(), rel=1e-5)
    g = f.gradient(z)
    rng = np.random.default_rng(0)
    for _ in range(3):
        d = f.latent_geometry.allocate(None)
        d.fill(rng.standard_normal(G.latent_dim).astype(np.float32))
        h = 1e-2
        fd = (f(z + h * d) - f(z - h * d)) / (2 * h)
        assert g.dot(d) == pytest.approx(fd, rel=1e-2, abs=1e-3)
    out = f.latent_geometry.allocate(0)
    assert f.gradient(z, out=out) is out
    np.testing.assert_allclose(out.as_array(), g.as_array(), rtol=1e-5)


def test_gradient_closed_form_for_a_linear_generator():
    G = LinearGenerator()
    ig = ImageGeometry(8, 8)
    ag = AcquisitionGeometry.create_Parallel2D().set_angles([0, 45, 90, 135]).set_panel(12)
    A = ProjectionOperator(ig, ag, device="cpu")
    y = A.direct(ig.allocate("random", seed=3))
    f = LatentLeastSquares(A, G, y)
    z = f.latent_geometry.allocate("random", seed=2)
    x = f.image(z)
    image_grad = A.adjoint(A.direct(x) - y).as_array().ravel()
    expected = 2 * G.weight.detach().numpy().T @ image_grad
    np.testing.assert_allclose(f.gradient(z).as_array(), expected, rtol=1e-4, atol=1e-5)
    # L >= 2||A||^2 ||W||^2 for this linear G (the estimate is exact here up to power iteration)
    W = G.weight.detach().double().numpy()
    exact = 2 * A.norm() ** 2 * np.linalg.norm(W, 2) ** 2
    assert f.L == pytest.approx(exact, rel=1e-2)


def test_volume_latents_are_stacked_per_slice(problem):
    G, ig, A, y = problem
    vol = ImageGeometry(16, 16, 3)
    op = GeneratorOperator(G, range_geometry=vol)
    assert op.domain_geometry().shape == (3 * G.latent_dim,)
    z = op.domain_geometry().allocate("random", seed=0)
    x = op.direct(z)
    assert x.geometry == vol
    zs = torch.tensor(z.as_array()).reshape(3, G.latent_dim)
    np.testing.assert_allclose(x.as_array(), G(zs).detach().numpy()[:, 0], atol=1e-6)
    w = vol.allocate("random", seed=1)
    g = op.adjoint_jacobian(z, w)
    zt = zs.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(G(zt), zt, torch.tensor(w.as_array()).unsqueeze(1))
    np.testing.assert_allclose(g.as_array(), expected.numpy().ravel(), rtol=1e-5, atol=1e-6)
    assert not op.is_linear()


def test_errors(problem):
    G, ig, A, y = problem
    with pytest.raises(ValueError, match="16x16"):
        GeneratorOperator(G, range_geometry=ImageGeometry(20, 20))
    op = GeneratorOperator(G)
    with pytest.raises(ValueError, match="entries"):
        op.direct(VectorGeometry(G.latent_dim + 1).allocate(0))
    bad = op.domain_geometry().allocate(0)
    bad.as_array()[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        op.direct(bad)
    wrong = A.domain_geometry().allocate(0)
    with pytest.raises(ValueError, match="shape"):
        LatentLeastSquares(A, G, wrong)
