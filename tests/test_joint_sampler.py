"""The soft method's joint posterior sampler against the closed form: for a linear generator
G(w) = B w + c the joint posterior p(x, w | y) ∝ exp(−‖Ax − y‖²/2σ² − ‖x − G(w)‖²/2τ² − ‖w‖²/2)
is Gaussian, with precision

    P = [[AᵀA/σ² + I/τ², −B/τ²], [−Bᵀ/τ², BᵀB/τ² + I]]

and P (x, w) = (Aᵀy/σ² + c/τ², −Bᵀc/τ²) at its mean; the image block x | w, y is
N(m, Q⁻¹), Q = AᵀA/σ² + I/τ², Q m = Aᵀy/σ² + G(w)/τ². A 4 × 4 image, a random 10 × 16 matrix
as a CIL operator (so A has a null space, where only τ bounds the image)."""
import math

import numpy as np
import pytest
import torch
from cil.framework import ImageGeometry, VectorGeometry
from cil.optimisation.operators import LinearOperator

from cil_genreg.algorithms import (JointPosteriorSampler, calibration, latent_given_image,
                                   soft_posterior_scales)
from cil_genreg.algorithms.image_block import GaussianImageBlock
from cil_genreg.latent import ChainDivergedError, effective_sample_size
from generators import LinearGenerator

SIGMA, TAU, N, M, D = 0.3, 0.3, 16, 10, 3


class DenseOperator(LinearOperator):
    """A matrix acting on the flattened image, as a CIL LinearOperator."""

    def __init__(self, matrix, ig):
        super().__init__(domain_geometry=ig, range_geometry=VectorGeometry(matrix.shape[0]))
        self.matrix = np.asarray(matrix, np.float64)

    def direct(self, x, out=None):
        out = self.range_geometry().allocate(None) if out is None else out
        out.fill((self.matrix @ x.as_array().ravel()).astype(np.float32))
        return out

    def adjoint(self, y, out=None):
        out = self.domain_geometry().allocate(None) if out is None else out
        out.fill((self.matrix.T @ y.as_array().ravel()).astype(np.float32)
                 .reshape(self.domain_geometry().shape))
        return out


@pytest.fixture(scope="module")
def gaussian():
    rng = np.random.default_rng(0)
    G = LinearGenerator(latent_dim=D, image_shape=(4, 4), seed=2)
    B = G.weight.detach().numpy().astype(np.float64)
    c = G.bias.detach().numpy().astype(np.float64)
    matrix = rng.standard_normal((M, N)) / 2
    ig = ImageGeometry(4, 4)
    A = DenseOperator(matrix, ig)
    truth = B @ np.array([0.5, -1.0, 0.3]) + c + TAU * rng.standard_normal(N)
    y = A.range_geometry().allocate(None)
    y.fill((matrix @ truth + SIGMA * rng.standard_normal(M)).astype(np.float32))
    data = y.as_array().astype(np.float64)
    precision = np.block([[matrix.T @ matrix / SIGMA ** 2 + np.eye(N) / TAU ** 2, -B / TAU ** 2],
                          [-B.T / TAU ** 2, B.T @ B / TAU ** 2 + np.eye(D)]])
    cov = np.linalg.inv(precision)
    mean = cov @ np.concatenate([matrix.T @ data / SIGMA ** 2 + c / TAU ** 2,
                                 -B.T @ c / TAU ** 2])
    return dict(G=G, A=A, y=y, B=B, c=c, matrix=matrix, data=data, ig=ig, truth=truth,
                mean=mean, cov=cov)


def _sampler(g, **kwargs):
    options = dict(initial=g["ig"].allocate(0), A=g["A"], y=g["y"], generator=g["G"],
                   sigma=SIGMA, tau=TAU, step=0.05, burn_in=200, chains=8, latent_steps=3,
                   seed=0)
    options.update(kwargs)
    return JointPosteriorSampler(**options)


def test_the_image_block_draws_the_conditional_gaussian(gaussian):
    g = gaussian
    matrix, data = g["matrix"], g["data"]
    prior_mean = g["B"] @ np.array([0.2, 0.4, -0.6]) + g["c"]
    q = matrix.T @ matrix / SIGMA ** 2 + np.eye(N) / TAU ** 2
    cov = np.linalg.inv(q)
    mean = cov @ (matrix.T @ data / SIGMA ** 2 + prior_mean / TAU ** 2)
    block = GaussianImageBlock(g["A"], g["y"], SIGMA, TAU, tolerance=1e-8, seed=3)
    np.testing.assert_allclose(block.mean(prior_mean.reshape(4, 4), np.zeros((4, 4))).ravel(),
                               mean, atol=1e-5)
    x = np.zeros((4, 4))
    draws = []
    for _ in range(4000):
        x = block.draw(prior_mean.reshape(4, 4), x)
        draws.append(x.ravel())
    draws = np.array(draws)
    sd = np.sqrt(np.diag(cov))
    np.testing.assert_array_less(np.abs(draws.mean(0) - mean), 4.5 * sd / math.sqrt(4000))
    np.testing.assert_allclose(np.cov(draws.T), cov, atol=0.08 * sd.max() ** 2)
    assert max(block.iterations) <= N + 2 and block.worst_residual <= 1e-8


def test_the_joint_chain_matches_the_closed_form_posterior(gaussian):
    g = gaussian
    s = _sampler(g).sample(500)
    assert 0.35 < s.acceptance < 0.85 and s.cg_iterations > 0
    mean, std = s.mean.as_array().ravel(), s.std.as_array().ravel()
    exact_mean, exact_sd = g["mean"][:N], np.sqrt(np.diag(g["cov"])[:N])
    # per-pixel Monte-Carlo error: the effective sample size of each pixel's trace
    images = s.kept_images().reshape(500, 8, N)
    ess = np.array([effective_sample_size(images[:, :, i]) for i in range(N)])
    assert ess.min() > 100 and 100 < s.ess <= 4000
    np.testing.assert_array_less(np.abs(mean - exact_mean), 4.5 * exact_sd / np.sqrt(ess))
    np.testing.assert_array_less(np.abs(std / exact_sd - 1), 4.5 / np.sqrt(2 * ess) + 0.02)
    # the latent's marginal too
    w_sd = np.sqrt(np.diag(g["cov"])[N:])
    np.testing.assert_allclose(s.samples.mean(0), g["mean"][N:], atol=0.25 * w_sd.max())
    np.testing.assert_allclose(s.samples.std(0), w_sd, rtol=0.15)
    report = calibration(s, g["truth"].reshape(4, 4))
    assert 0.5 < report["coverage_gaussian"] <= 1 and report["ess_per_second"] > 0
    assert s.loss and np.isfinite(s.loss).all()


def test_the_outputs_are_of_x_not_of_the_generator(gaussian):
    s = _sampler(gaussian, burn_in=20, chains=2).sample(30)
    assert s.mean.geometry == gaussian["ig"] and s.x.geometry == gaussian["ig"]
    generated = s.images(torch.as_tensor(s.samples)).reshape(-1, N).numpy()
    # G(w) spans 3 directions; the draws of x fill all 16
    assert np.linalg.matrix_rank(generated - generated.mean(0), tol=1e-4) <= D
    assert np.linalg.matrix_rank(s.kept_images().reshape(-1, N).numpy(), tol=1e-4) == N


def test_tau_from_the_soft_lambda(gaussian):
    scales = soft_posterior_scales(0.5, 100.0, mu=1e-3)
    assert scales["tau"] == pytest.approx(0.05)
    assert scales["mu_consistent"] == pytest.approx(0.0025)
    assert scales["latent_variance"] == pytest.approx(2.5)
    s = _sampler(gaussian, tau=None, lam=(SIGMA / TAU) ** 2, burn_in=1)
    assert s.tau == pytest.approx(TAU)
    w = latent_given_image(gaussian["G"], _image(gaussian), TAU).as_array()
    B, c, x = gaussian["B"], gaussian["c"], gaussian["truth"]
    # the mode of p(w | x) for the linear generator: (BᵀB + τ²I) w = Bᵀ(x − c)
    exact = np.linalg.solve(B.T @ B + TAU ** 2 * np.eye(D), B.T @ (x - c))
    np.testing.assert_allclose(w, exact, atol=1e-3)


def _image(g):
    x = g["ig"].allocate(None)
    x.fill(g["truth"].reshape(4, 4).astype(np.float32))
    return x


@pytest.mark.parametrize("kwargs, match", [
    (dict(sigma=float("nan")), "sigma"),
    (dict(sigma=float("inf")), "sigma"),
    (dict(sigma=0.0), "sigma"),
    (dict(tau=float("nan")), "tau"),
    (dict(tau=float("inf")), "tau"),
    (dict(tau=-1.0), "tau"),
    (dict(tau=None, lam=float("nan")), "lam"),
    (dict(tau=None), "exactly one"),
    (dict(lam=2.0), "exactly one"),
    (dict(step=-0.1), "step"),
    (dict(step=float("nan")), "step"),
    (dict(thin=0), "thin"),
    (dict(burn_in=-1), "burn_in"),
    (dict(latent_steps=0), "latent_steps"),
    (dict(latent=np.zeros(5)), "latent"),
])
def test_bad_inputs_are_refused(gaussian, kwargs, match):
    with pytest.raises(ValueError, match=match):
        _sampler(gaussian, **kwargs)


def test_zero_samples_and_no_draws_are_refused(gaussian):
    s = _sampler(gaussian, burn_in=2, chains=1)
    with pytest.raises(ValueError, match="samples"):
        s.sample(0)
    with pytest.raises(ValueError, match="no draws"):
        s.std


def test_a_diverging_chain_stops_naming_the_step_and_keeps_no_nan(gaussian):
    s = _sampler(gaussian, tau=1e-3, step=1e3, exact=False, burn_in=0, chains=2)
    with pytest.raises(ChainDivergedError, match="step size 1e\\+03"):
        s.sample(200)
    assert all(np.isfinite(x.numpy()).all() for x in s._images)
    assert np.isfinite(s.x.as_array()).all()
