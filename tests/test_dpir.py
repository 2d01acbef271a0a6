"""DPIR (PlugAndPlayHQS): with the exact MAP denoiser of a Gaussian prior, HQS at a fixed noise
level reaches the closed-form minimiser of its objective; the x-step solves its linear system;
the noise levels are DPIR's log-spaced schedule; bad input is refused clearly; and on a tiny CT
problem method "dpir" beats FBP."""
import math

import numpy as np
import pytest
import torch

from cil.framework import ImageGeometry
from cil.optimisation.operators import MatrixOperator
from cil.optimisation.utilities.callbacks import ProgressCallback

from cil_genreg import models
from cil_genreg.algorithms import PlugAndPlayHQS, noise_schedule
from cil_genreg.experiments import methods
from cil_genreg.models.checkpoints import CheckpointError
from cil_genreg.utilities.defaults import DPIR_SIGMA_MAX


class GaussianMAPDenoiser(torch.nn.Module):
    r"""The MAP (and MMSE) denoiser of :math:`x \sim N(0, s^2 I)` under noise of variance
    :math:`\sigma^2`: :math:`D_\sigma(v) = v s^2 / (s^2 + \sigma^2)`, the proximal map of
    :math:`\sigma^2 R`, :math:`R(x) = \|x\|^2 / (2s^2)`."""

    def __init__(self, s2):
        super().__init__()
        self.s2 = float(s2)
        self.calls = []

    def forward(self, v, sigma):
        self.calls.append(float(sigma))
        return v * (self.s2 / (self.s2 + float(sigma) ** 2))


def _problem(n=36, m=20, seed=0):
    """An underdetermined matrix problem (the prior decides the null space)."""
    rng = np.random.default_rng(seed)
    M = (rng.standard_normal((m, n)) / np.sqrt(m)).astype(np.float32)
    A = MatrixOperator(M)
    y = A.range_geometry().allocate(0)
    y.fill(M @ rng.random(n).astype(np.float32) + 0.05 * rng.standard_normal(m).astype(np.float32))
    return A, M.astype(np.float64), y


def _hqs(A, y, denoiser, lam, **kw):
    return PlugAndPlayHQS(initial=A.domain_geometry().allocate(0), operator=A, data=y,
                          denoiser=denoiser, lam=lam, update_objective_interval=0, **kw)


def test_fixed_sigma_reaches_the_map_of_the_moreau_envelope_objective():
    # z = D_sigma(x) = prox of (lam / (2 mu)) R with R = ||x||^2 / (2 s^2) iff sigma^2 = lam/(2 mu);
    # HQS then minimises ||Ax - y||^2 + lam * env(x), env(x) = ||x||^2 / (2 (s^2 + sigma^2)):
    # (M^T M + lam / (2 (s^2 + sigma^2))) x* = M^T y, z* = x* s^2 / (s^2 + sigma^2)
    A, M, y, = _problem()
    s2, sigma, lam = 0.5, 0.3, 2.0
    algo = _hqs(A, y, GaussianMAPDenoiser(s2), lam, sigma_max=sigma, sigma_min=sigma,
                schedule_iterations=1, cg_iterations=100, cg_tolerance=1e-6)
    algo.run(250, verbose=0)
    b = M.T @ y.as_array()
    x_star = np.linalg.solve(M.T @ M + lam / (2 * (s2 + sigma ** 2)) * np.eye(M.shape[1]), b)
    np.testing.assert_allclose(algo.data_step.as_array(), x_star, atol=1e-4)
    np.testing.assert_allclose(algo.solution.as_array(), x_star * s2 / (s2 + sigma ** 2),
                               atol=1e-4)
    assert algo.mu == pytest.approx(lam / (2 * sigma ** 2))
    # the test tells the constants apart: sigma^2 = lam / mu (no 2) or the plain MAP of
    # ||Ax - y||^2 + lam ||x||^2 / (2 s^2) would be other points
    for weight in (lam / (s2 + sigma ** 2), lam / (2 * s2)):
        other = np.linalg.solve(M.T @ M + weight * np.eye(M.shape[1]), b)
        assert np.abs(other - x_star).max() > 1e-2


def test_x_step_solves_its_linear_system():
    A, M, y = _problem(seed=1)
    lam = 0.5
    algo = _hqs(A, y, GaussianMAPDenoiser(0.3), lam, cg_iterations=100, cg_tolerance=1e-5)
    algo.run(3, verbose=0)
    z = algo.solution.as_array().astype(np.float64)
    algo.run(1, verbose=0)
    x, mu = algo.data_step.as_array().astype(np.float64), algo.mu
    assert mu == pytest.approx(lam / (2 * algo.noise_level(3) ** 2))
    rhs = M.T @ y.as_array() + mu * z
    residual = (M.T @ M + mu * np.eye(M.shape[1])) @ x - rhs
    assert np.linalg.norm(residual) < 1e-4 * np.linalg.norm(rhs)
    exact = np.linalg.solve(M.T @ M + mu * np.eye(M.shape[1]), rhs)
    np.testing.assert_allclose(x, exact, atol=1e-4 * np.abs(exact).max())
    iterations, bound = algo.cg_history[-1]
    assert 0 < iterations <= 100 and bound <= 1e-5


def test_noise_levels_follow_dpirs_log_spaced_schedule_then_stay():
    sigmas = noise_schedule(0.2, 0.01, 8)
    assert sigmas[0] == pytest.approx(0.2) and sigmas[-1] == pytest.approx(0.01)
    ratios = sigmas[1:] / sigmas[:-1]
    np.testing.assert_allclose(ratios, (0.01 / 0.2) ** (1 / 7), rtol=1e-12)
    assert noise_schedule(0.1, 0.1, 1).tolist() == [0.1]
    A, _, y = _problem()
    denoiser = GaussianMAPDenoiser(0.3)
    algo = _hqs(A, y, denoiser, 0.1, sigma_max=0.2, sigma_min=0.01, schedule_iterations=8)
    seen = []
    algo.run(10, verbose=0, callbacks=[lambda a: seen.append((a.sigma, a.mu))])
    np.testing.assert_allclose([s for s, _ in seen], list(sigmas) + [0.01, 0.01], rtol=1e-6)
    np.testing.assert_allclose([m for _, m in seen], [0.1 / (2 * s ** 2) for s, _ in seen])
    np.testing.assert_allclose(denoiser.calls, [s for s, _ in seen], rtol=1e-6)


def test_default_first_level_is_dpirs_within_the_denoisers_training_range():
    A, _, y = _problem()
    assert _hqs(A, y, GaussianMAPDenoiser(0.3), 1.0).sigmas[0] == pytest.approx(DPIR_SIGMA_MAX)
    trained = GaussianMAPDenoiser(0.3)
    trained.metadata = {"sigma_range": [0.0, 0.1]}
    sigmas = _hqs(A, y, trained, 1.0, sigma_min=0.02).sigmas
    assert sigmas[0] == pytest.approx(0.1) and sigmas[-1] == pytest.approx(0.02)


def test_progress_callback_runs_and_the_objective_is_nan(capsys):
    A, _, y = _problem()
    algo = PlugAndPlayHQS(initial=A.domain_geometry().allocate(0), operator=A, data=y,
                          denoiser=GaussianMAPDenoiser(0.3), lam=1.0)
    algo.run(8, callbacks=[ProgressCallback(verbose=1)])
    assert algo.iteration == 8 and len(algo.objective) == 9
    assert all(math.isnan(v) for v in algo.objective)


def test_bad_input_is_refused_clearly(tiny_vae, tiny_checkpoint):
    A, _, y = _problem()
    D = GaussianMAPDenoiser(0.3)
    with pytest.raises(ValueError, match="sigma_max"):
        _hqs(A, y, D, 1.0, sigma_max=0.0)
    with pytest.raises(ValueError, match="sigma_min"):
        _hqs(A, y, D, 1.0, sigma_min=-0.01)
    with pytest.raises(ValueError, match="sigma_min = 0.3 is above sigma_max = 0.1"):
        _hqs(A, y, D, 1.0, sigma_max=0.1, sigma_min=0.3)
    with pytest.raises(ValueError, match="K"):
        _hqs(A, y, D, 1.0, schedule_iterations=0)
    with pytest.raises(TypeError, match="K"):
        noise_schedule(0.2, 0.01, 2.5)
    with pytest.raises(ValueError, match="lam"):
        _hqs(A, y, D, 0.0)
    with pytest.raises(ValueError, match="lam"):
        PlugAndPlayHQS(operator=A, data=y, denoiser=D)
    with pytest.raises(TypeError, match="needs a Plug-and-Play denoiser .* got a generator"):
        _hqs(A, y, tiny_vae, 1.0)
    with pytest.raises(CheckpointError, match="is a generator .* not a Plug-and-Play denoiser"):
        methods.load_model(str(tiny_checkpoint), "denoiser")
    ig = ImageGeometry(4, 4)
    with pytest.raises(ValueError, match="needs a denoiser"):
        methods.reconstruct("dpir", A, y, 1.0)
    with pytest.raises(Exception, match="shape"):
        _hqs(A, y, D, 1.0).set_up(ig.allocate(0), A, y, D, 1.0)


class BlurDenoiser(torch.nn.Module):
    """A classical denoiser with the package's interface: a Gaussian blur of width
    ``8 sigma`` pixels (about the Wiener filter of a smooth image at noise level sigma)."""

    kind = "denoiser"

    def forward(self, v, sigma):
        width = max(8.0 * float(sigma), 1e-3)
        r = torch.arange(-4, 5, dtype=v.dtype)
        k = torch.exp(-0.5 * (r / width) ** 2)
        k = k / k.sum()
        v = torch.nn.functional.conv2d(v, k.reshape(1, 1, 1, -1), padding=(0, 4))
        return torch.nn.functional.conv2d(v, k.reshape(1, 1, -1, 1), padding=(4, 0))


def test_dpir_through_reconstruct_beats_fbp_on_a_tiny_ct_problem():
    from cil_genreg import datasets
    from cil_genreg.physics.forward import (add_noise, initial_reconstruction, make_geometry,
                                            make_projector)
    from cil_genreg.utilities.metrics import psnr
    ig, ag = make_geometry(32, 8)
    A = make_projector(ig, ag)
    truth = ig.allocate(None)
    truth.fill(datasets.shapes(1, size=32, seed=7)[0])
    y, sigma_n = add_noise(A.direct(truth), 0.02, 0)
    fbp, _ = initial_reconstruction(A, y)
    seen = []
    x = methods.reconstruct("dpir", A, y, 0.46 * sigma_n ** 2, x0=fbp, denoiser=BlurDenoiser(),
                            callbacks=[lambda a: seen.append(a.sigma)])
    assert len(seen) == 8 and seen[0] == pytest.approx(DPIR_SIGMA_MAX)
    assert x.shape == (32, 32) and np.isfinite(x.as_array()).all()
    assert psnr(x, truth) > psnr(fbp, truth) + 3.0
    # the default CG cap solves the last x-steps (a capped, unsolved x-step regularises in
    # lam's place)
    algo = PlugAndPlayHQS(initial=fbp, operator=A, data=y, denoiser=BlurDenoiser(),
                          lam=0.46 * sigma_n ** 2, update_objective_interval=0)
    algo.run(8, verbose=0)
    assert all(bound <= 1e-3 for _, bound in algo.cg_history[-4:])
