"""The latent posterior sampler against the closed form: for a linear generator
G(w) = W w + b the posterior p(w | y) ∝ exp(−‖A G(w) − y‖²/2σ² − ‖w‖²/2) is Gaussian, with
precision P = MᵀM/σ² + I (M = A W) and mean P⁻¹Mᵀ(y − A b)/σ²."""
import math

import numpy as np
import pytest
import torch
from cil.framework import AcquisitionGeometry, ImageGeometry
from cil.plugins.astra import ProjectionOperator

from cil_genreg import LatentLeastSquares
from cil_genreg.algorithms import LatentPosteriorSampler, calibration
from cil_genreg.latent import ChainDivergedError, LangevinChain, effective_sample_size
from generators import LinearGenerator


@pytest.fixture(scope="module")
def gaussian():
    G = LinearGenerator(latent_dim=3, image_shape=(8, 8), seed=1)
    ig = ImageGeometry(8, 8)
    ag = AcquisitionGeometry.create_Parallel2D().set_angles(
        np.linspace(0, 180, 5, endpoint=False)).set_panel(11)
    A = ProjectionOperator(ig, ag, device="cpu")
    W = G.weight.detach().numpy().astype(np.float64)
    b = G.bias.detach().numpy().astype(np.float64)
    x = ig.allocate(None)

    def project(v):
        x.fill(v.reshape(8, 8).astype(np.float32))
        return A.direct(x).as_array().ravel().astype(np.float64)

    M = np.stack([project(W[:, j]) for j in range(W.shape[1])], axis=1)
    sigma = float(np.sqrt(np.trace(M.T @ M) / W.shape[1]))  # likelihood ~ prior
    truth = G(torch.tensor([[0.5, -1.0, 0.3]])).detach().numpy()[0, 0]
    x.fill(truth)
    y = A.direct(x)
    y += (sigma * np.random.default_rng(0).standard_normal(ag.shape)).astype(np.float32)
    precision = M.T @ M / sigma ** 2 + np.eye(W.shape[1])
    cov = np.linalg.inv(precision)
    mean = cov @ M.T @ (y.as_array().ravel() - project(b)) / sigma ** 2
    f = LatentLeastSquares(A, G, y, c=0.5)
    return dict(G=G, A=A, y=y, f=f, sigma=sigma, mean=mean, cov=cov, W=W, b=b, truth=truth)


def _sampler(g, exact=True, samples=600, chains=6, step=0.1, seed=0, burn_in=150):
    start = g["f"].latent_geometry.allocate(0)
    s = LatentPosteriorSampler(initial=start, f=g["f"], sigma=g["sigma"], step=step,
                               burn_in=burn_in, exact=exact, chains=chains, seed=seed)
    return s.sample(samples)


def test_mala_matches_the_closed_form_posterior(gaussian):
    g = gaussian
    s = _sampler(g)
    w = s.samples
    assert w.shape == (600 * 6, 3)
    ess = s.ess
    assert 100 < ess <= len(w)
    sd = np.sqrt(np.diag(g["cov"]))
    np.testing.assert_array_less(np.abs(w.mean(0) - g["mean"]), 4.5 * sd / math.sqrt(ess))
    np.testing.assert_allclose(np.cov(w.T), g["cov"], atol=0.25 * sd.max() ** 2)
    assert 0.35 < s.acceptance < 0.85
    # the pixel mean and std of the images: W mean + b, sqrt(diag(W cov Wᵀ))
    pixel_sd = np.sqrt(np.diag(g["W"] @ g["cov"] @ g["W"].T)).reshape(8, 8)
    np.testing.assert_allclose(s.std.as_array(), pixel_sd, rtol=0.25)
    np.testing.assert_allclose(s.mean.as_array().ravel(), g["W"] @ g["mean"] + g["b"],
                               atol=4.5 * pixel_sd.max() / math.sqrt(ess))


def test_ula_is_close_and_calibration_reports_coverage(gaussian):
    s = _sampler(gaussian, exact=False, samples=400, chains=4, seed=1)
    assert s.acceptance == 1.0
    sd = np.sqrt(np.diag(gaussian["cov"]))
    np.testing.assert_array_less(np.abs(s.samples.mean(0) - gaussian["mean"]), 0.5 * sd)
    report = calibration(s, gaussian["truth"])
    assert 0.5 < report["coverage"] <= 1.0
    assert report["ess"] > 20 and report["seconds_per_effective_sample"] > 0
    assert set(report) >= {"std_error_correlation", "acceptance", "step", "draws"}
    low, high = s.interval(0.95)
    assert np.all(low.as_array() <= s.mean.as_array() + 1e-6)
    assert np.all(high.as_array() >= s.mean.as_array() - 1e-6)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(sigma=float("nan")), ValueError, "sigma"),
    (dict(sigma=float("inf")), ValueError, "sigma"),
    (dict(sigma=0.0), ValueError, "sigma"),
    (dict(step=-0.1), ValueError, "step"),
    (dict(thin=0), ValueError, "thin"),
    (dict(burn_in=-1), ValueError, "burn_in"),
])
def test_bad_inputs_are_refused(gaussian, kwargs, error, match):
    options = dict(initial=gaussian["f"].latent_geometry.allocate(0), f=gaussian["f"],
                   sigma=gaussian["sigma"])
    options.update(kwargs)
    with pytest.raises(error, match=match):
        LatentPosteriorSampler(**options)


def test_zero_samples_and_no_draws_are_refused(gaussian):
    s = LatentPosteriorSampler(initial=gaussian["f"].latent_geometry.allocate(0),
                               f=gaussian["f"], sigma=gaussian["sigma"], burn_in=5)
    with pytest.raises(ValueError, match="samples"):
        s.sample(0)
    with pytest.raises(ValueError, match="no draws"):
        s.mean
    with pytest.raises(TypeError, match="LatentLeastSquares"):
        LatentPosteriorSampler(initial=gaussian["f"].latent_geometry.allocate(0),
                               f=lambda z: 0, sigma=1.0)


def test_a_diverging_chain_stops_naming_the_step(gaussian):
    s = LatentPosteriorSampler(initial=gaussian["f"].latent_geometry.allocate(0),
                               f=gaussian["f"], sigma=gaussian["sigma"] * 1e-3, step=1e3,
                               burn_in=0, exact=False)
    with pytest.raises(ChainDivergedError, match="step size 1e\\+03"):
        s.sample(200)
    assert not s._kept or all(torch.isfinite(w).all() for w in s._kept)


def test_langevin_chain_on_a_standard_gaussian_and_the_ess():
    def potential(w):
        return 0.5 * w.square().sum(1), w

    chain = LangevinChain(potential, torch.zeros(8, 5, dtype=torch.float64), 0.5, seed=0)
    draws = []
    for t in range(1200):
        chain.advance(adapt=t < 200)
        if t == 199:
            chain.reset_counts()
        if t >= 200:
            draws.append(chain.w.clone())
    draws = torch.stack(draws)
    assert abs(chain.acceptance - 0.574) < 0.1
    assert draws.var((0, 1)).sub(1).abs().max() < 0.15
    ess = effective_sample_size(draws[..., 0])
    assert 300 < ess <= draws.shape[0] * 8
    iid = torch.randn(2000, generator=torch.Generator().manual_seed(0))
    assert effective_sample_size(iid) == pytest.approx(2000, rel=0.25)
    assert math.isnan(effective_sample_size(torch.ones(50)))
    with pytest.raises(ValueError, match="step"):
        LangevinChain(potential, torch.zeros(1, 2), float("nan"))
