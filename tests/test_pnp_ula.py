"""PlugAndPlayULA: the closed-form posterior of a linear-Gaussian toy (the exact MMSE denoiser of
a Gaussian prior), deepinv's ULA step for step, and its errors."""
import importlib.abc
import importlib.util
import importlib.machinery
import sys
import types

import numpy as np
import pytest
import torch
from cil.framework import ImageGeometry, VectorGeometry
from cil.optimisation.operators import LinearOperator

from cil_genreg.algorithms import PlugAndPlayULA

SHAPE = (4, 4)


class MatrixOperator(LinearOperator):
    """x ↦ M vec(x) from a 4×4 ImageGeometry to a VectorGeometry."""

    def __init__(self, matrix):
        self.M = np.asarray(matrix, np.float32)
        super().__init__(domain_geometry=ImageGeometry(*SHAPE),
                         range_geometry=VectorGeometry(self.M.shape[0]))

    def direct(self, x, out=None):
        result = self.range_geometry().allocate(None)
        result.fill(self.M @ x.as_array().ravel())
        return result

    def adjoint(self, x, out=None):
        result = self.domain_geometry().allocate(None)
        result.fill((self.M.T @ x.as_array()).reshape(SHAPE).astype(np.float32))
        return result


class GaussianDenoiser(torch.nn.Module):
    """The MMSE denoiser of the prior N(m, s²I): D_σ(v) = (s² v + σ² m)/(s² + σ²)."""

    def __init__(self, mean, variance):
        super().__init__()
        self.mean, self.variance = mean, variance

    def forward(self, v, sigma):
        return (self.variance * v + sigma ** 2 * self.mean) / (self.variance + sigma ** 2)


def toy(seed=0, m_rows=10, sigma=0.2):
    rng = np.random.default_rng(seed)
    A = MatrixOperator(rng.normal(size=(m_rows, 16)) / 4)
    truth = ImageGeometry(*SHAPE).allocate(None)
    truth.fill(rng.uniform(0.3, 0.7, SHAPE).astype(np.float32))
    y = A.direct(truth)
    y.fill(y.as_array() + sigma * rng.normal(size=m_rows).astype(np.float32))
    return A, y, truth, sigma


def test_the_chain_matches_the_closed_form_gaussian_posterior():
    A, y, truth, sigma = toy()
    m, s2, sd, alpha = 0.5, 0.04, 0.1, 1.0
    sampler = PlugAndPlayULA(truth, A, y, GaussianDenoiser(m, s2), sigma, sigma_denoiser=sd,
                             alpha=alpha, burn_in=300, chains=8, clip=None, seed=1)
    sampler.sample(1500)
    # target: N(μ, P⁻¹), P = AᵀA/σ² + α/(s² + ε) I (the prior smoothed by the denoiser's
    # noise); ULA's own stationary law for this linear drift: covariance (P − δP²/2)⁻¹
    M = A.M.astype(np.float64)
    prior = alpha / (s2 + sd ** 2)
    P = M.T @ M / sigma ** 2 + prior * np.eye(16)
    mu = np.linalg.solve(P, M.T @ y.as_array() / sigma ** 2 + prior * m)
    cov = np.linalg.inv(P - sampler.step * P @ P / 2)
    mean, std = sampler.mean.as_array().ravel(), sampler.std.as_array().ravel()
    ess = sampler.ess
    assert ess > 100
    assert np.abs(mean - mu).max() < 5 * np.sqrt(np.diag(cov).max() / ess)
    np.testing.assert_allclose(std ** 2, np.diag(cov), rtol=0.3)
    assert sampler.acceptance == 1.0 and sampler.mean.shape == SHAPE
    assert sampler.samples.shape == (8 * 1500, 16)


def test_the_default_step_is_a_third_of_the_inverse_lipschitz_constant():
    A, y, truth, sigma = toy()
    sampler = PlugAndPlayULA(truth, A, y, GaussianDenoiser(0.5, 0.04), sigma,
                             sigma_denoiser=0.05, alpha=2.0, norm=3.0)
    assert sampler.step == pytest.approx(1 / (3 * (9 / sigma ** 2 + 2 / 0.05 ** 2)))


class _Stub(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Stub(f"{self.__name__}.{name}")

    def __call__(self, *args, **kwargs):
        return None


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """deepinv 0.3 imports plotting and metric packages (wandb, torchvision, torchmetrics,
    natsort) that its sampling never calls: stubbed when they are not installed."""

    roots = {name for name in ("wandb", "torchvision", "torchmetrics", "natsort")
             if importlib.util.find_spec(name) is None}

    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in self.roots:
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _Stub(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


@pytest.fixture
def deepinv():
    if importlib.util.find_spec("deepinv") is None:
        pytest.skip("deepinv is not installed (pip install --no-deps deepinv==0.3.0)")
    finder = _StubFinder()
    sys.meta_path.insert(0, finder)
    before = set(sys.modules)
    try:
        import deepinv
        yield deepinv
    finally:
        sys.meta_path.remove(finder)
        for name in set(sys.modules) - before:
            if name.split(".")[0] in finder.roots:
                del sys.modules[name]


def test_the_chain_is_deepinvs_ula_step_for_step(deepinv):
    A, y, truth, sigma = toy(seed=2)
    denoiser = GaussianDenoiser(0.5, 0.3)
    step, sd, steps, seed = 2e-3, 0.08, 60, 7
    ours = PlugAndPlayULA(truth, A, y, denoiser, sigma, sigma_denoiser=sd, alpha=1.5,
                          step=step, burn_in=0, clip=(0.35, 0.65), seed=seed)
    ours.sample(steps)
    M = torch.as_tensor(A.M)
    physics = deepinv.physics.LinearPhysics(
        A=lambda x: (M @ x.reshape(-1, 16).T).T,
        A_adjoint=lambda r: (M.T @ r.T).T.reshape(-1, 1, *SHAPE))
    theirs = deepinv.sampling.ULA(deepinv.optim.ScorePrior(denoiser),
                                  deepinv.optim.data_fidelity.L2(sigma=sigma),
                                  step_size=step, sigma=sd, alpha=1.5, max_iter=steps,
                                  thinning=1, burnin_ratio=0.0, clip=(0.35, 0.65),
                                  save_chain=True)
    x0 = torch.as_tensor(truth.as_array()).reshape(1, 1, *SHAPE)
    theirs(torch.as_tensor(y.as_array()).reshape(1, -1), physics, seed=seed, x_init=x0)
    chain = torch.cat(theirs.get_chain()).reshape(steps, *SHAPE)
    clipped = (chain == 0.35) | (chain == 0.65)
    assert clipped.any() and not clipped.all()
    torch.testing.assert_close(ours.kept_images(), chain, atol=1e-5, rtol=1e-5)


def test_bad_input_is_refused_with_a_message():
    A, y, truth, sigma = toy()
    D = GaussianDenoiser(0.5, 0.04)
    sampler = PlugAndPlayULA(truth, A, y, D, sigma, burn_in=2)
    with pytest.raises(ValueError, match="samples"):
        sampler.sample(0)
    with pytest.raises(ValueError, match="step"):
        PlugAndPlayULA(truth, A, y, D, sigma, step=-1e-3)
    with pytest.raises(ValueError, match="sigma"):
        PlugAndPlayULA(truth, A, y, D, float("nan"))
    with pytest.raises(ValueError, match="sigma_denoiser"):
        PlugAndPlayULA(truth, A, y, D, sigma, sigma_denoiser=float("inf"))
    with pytest.raises(ValueError, match="clip"):
        PlugAndPlayULA(truth, A, y, D, sigma, clip=(1.0, 0.0))
    with pytest.raises(TypeError, match="denoiser"):
        PlugAndPlayULA(truth, A, y, lambda v, s: v, sigma)


def test_a_nan_chain_stops_naming_the_step():
    A, y, truth, sigma = toy()

    class Broken(GaussianDenoiser):
        calls = 0

        def forward(self, v, s):
            Broken.calls += 1
            return v * float("nan") if Broken.calls == 3 else super().forward(v, s)

    sampler = PlugAndPlayULA(truth, A, y, Broken(0.5, 0.04), sigma, burn_in=1)
    with pytest.raises(FloatingPointError, match="at step 3"):
        sampler.sample(10)
