"""Plug-and-Play: a denoiser as a CIL Function's proximal map, under FISTA, ISTA and PDHG."""
import math

import numpy as np
import pytest
import torch

from cil.framework import ImageGeometry
from cil.optimisation.algorithms import FISTA, ISTA, PDHG
from cil.optimisation.functions import L2NormSquared, LeastSquares
from cil.optimisation.operators import MatrixOperator

from cil_genreg import DenoiserPrior, models
from cil_genreg.models.checkpoints import CheckpointError


class Identity(torch.nn.Module):
    def forward(self, v, sigma):
        return v.clone()


class Smoothing(torch.nn.Module):
    """A linear 'denoiser': a fixed symmetric 3x3 blur (eigenvalues in (0, 1]), zero padding;
    it ignores sigma."""

    def __init__(self):
        super().__init__()
        k = torch.tensor([0.25, 0.5, 0.25])
        self.register_buffer("kernel", (k[:, None] * k[None, :])[None, None])

    def forward(self, v, sigma):
        return torch.nn.functional.conv2d(v, self.kernel, padding=1)


def smoothing_matrix(n):
    """The (n², n²) matrix of :class:`Smoothing` on n × n images."""
    blur = Smoothing()
    eye = torch.eye(n * n).reshape(n * n, 1, n, n)
    return blur(eye, 0).reshape(n * n, n * n).T.numpy().astype(np.float64)


def test_identity_denoiser_prox_is_the_identity_and_fills_out():
    ig = ImageGeometry(8, 8)
    x = ig.allocate("random", seed=1)
    R = DenoiserPrior(Identity())
    np.testing.assert_array_equal(R.proximal(x, 0.3).as_array(), x.as_array())
    out = ig.allocate(0)
    assert R.proximal(x, 0.3, out=out) is out
    np.testing.assert_array_equal(out.as_array(), x.as_array())
    assert R.last_sigma == pytest.approx(math.sqrt(0.3))
    assert math.isnan(R(x))


def _problem(n=6, m=50, seed=0):
    rng = np.random.default_rng(seed)
    matrix = rng.standard_normal((m, n * n)).astype(np.float32) / np.sqrt(m)
    A = MatrixOperator(matrix)
    truth = rng.random(n * n).astype(np.float32)
    y = A.range_geometry().allocate(0)
    y.fill(matrix @ truth)
    return A, matrix.astype(np.float64), y, n


@pytest.mark.parametrize("algorithm", [ISTA, FISTA])
def test_pnp_with_a_linear_denoiser_reaches_its_fixed_point(algorithm):
    A, M, y, n = _problem()
    S = smoothing_matrix(n)
    f = LeastSquares(A, y)          # ||Ax - y||^2, gradient 2 A^T (A x - y)
    tau = 1.0 / (2 * np.linalg.norm(M, 2) ** 2)
    # x* = S (x* - tau 2 M^T (M x* - y))  <=>  (I - S + 2 tau S M^T M) x* = 2 tau S M^T y
    lhs = np.eye(n * n) - S + 2 * tau * S @ M.T @ M
    expected = np.linalg.solve(lhs, 2 * tau * S @ M.T @ y.as_array())
    # the denoiser works on images: give it an (n, n) geometry via a reshape in and out
    R = _VectorDenoiser(Smoothing(), n, sigma=0.05)
    algo = algorithm(initial=A.domain_geometry().allocate(0), f=f, g=R, step_size=tau,
                     update_objective_interval=10)
    algo.run(3000, verbose=0)
    np.testing.assert_allclose(algo.solution.as_array(), expected, atol=2e-4)
    assert math.isnan(algo.objective[-1])   # PnP has no objective: CIL logs NaN, runs on


class _VectorDenoiser(DenoiserPrior):
    """MatrixOperator's domain is a vector: denoise it as an n x n image."""

    def __init__(self, denoiser, n, **kw):
        super().__init__(denoiser, **kw)
        self.ig = ImageGeometry(n, n)

    def proximal(self, x, tau, out=None):
        image = self.ig.allocate(None)
        image.fill(x.as_array().reshape(self.ig.shape))
        result = super().proximal(image, tau)
        out = x.geometry.allocate(None) if out is None else out
        out.fill(result.as_array().reshape(x.shape))
        return out


def test_scaled_prior_ties_sigma_to_step_times_lambda():
    A, M, y, n = _problem()
    R = _VectorDenoiser(Identity(), n)
    fista = FISTA(initial=A.domain_geometry().allocate(0), f=LeastSquares(A, y), g=4.0 * R,
                  update_objective_interval=0)
    fista.run(2, verbose=0)
    assert R.last_sigma == pytest.approx(math.sqrt(fista.step_size * 4.0), rel=1e-6)


def test_pdhg_runs_pnp_without_logging_its_objective():
    A, M, y, n = _problem()
    R = _VectorDenoiser(Smoothing(), n, sigma=0.05)
    f = L2NormSquared(b=y)
    pdhg = PDHG(f=f, g=R, operator=A, update_objective_interval=0)
    pdhg.run(300, verbose=0)
    x = pdhg.solution.as_array()
    assert np.isfinite(x).all()
    assert np.linalg.norm(M @ x - y.as_array()) < 0.5 * np.linalg.norm(y.as_array())
    with pytest.raises(NotImplementedError, match="update_objective_interval=0"):
        R.convex_conjugate(pdhg.solution)


def test_bad_input_is_refused_clearly(tmp_path, tiny_vae):
    with pytest.raises(ValueError, match="sigma"):
        DenoiserPrior(Identity(), sigma=0)
    with pytest.raises(ValueError, match="sigma"):
        DenoiserPrior(Identity(), sigma=-0.1)
    with pytest.raises(ValueError, match="tau"):
        DenoiserPrior(Identity()).proximal(ImageGeometry(8, 8).allocate(0), 0.0)
    with pytest.raises(TypeError, match="generator"):
        DenoiserPrior(tiny_vae)
    with pytest.raises(NotImplementedError, match="proximal algorithm"):
        DenoiserPrior(Identity()).gradient(ImageGeometry(8, 8).allocate(0))
    path = models.save(tiny_vae, tmp_path / "vae.safetensors")
    with pytest.raises(CheckpointError, match="is a generator .* not a Plug-and-Play denoiser"):
        models.load(path, kind="denoiser")


def test_a_denoiser_is_refused_as_a_generator(tmp_path):
    from cil_genreg import SoftGenerativeRegulariser
    from cil_genreg.experiments.methods import load_generator
    net = models.build_network("denoiser", 16, channels=(4, 8), blocks=1)
    path = models.save(net, tmp_path / "denoiser.safetensors")
    with pytest.raises(CheckpointError, match="is a Plug-and-Play denoiser .* not a generator"):
        load_generator(str(path))
    with pytest.raises(TypeError, match="needs a generator .* got a Plug-and-Play denoiser"):
        SoftGenerativeRegulariser(models.load(path))
    loaded = models.load(path, kind="denoiser")
    assert isinstance(loaded, models.DRUNetDenoiser)
    R = DenoiserPrior(loaded, sigma=0.05)
    x = ImageGeometry(16, 16).allocate("random", seed=0)
    assert R.proximal(x, 1.0).shape == (16, 16)
