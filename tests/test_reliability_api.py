"""The Python API refuses bad input with a clear error (issue 9), and never changes the
caller's generator module behind their back."""
import numpy as np
import pytest
import torch
from cil.framework import AcquisitionGeometry, ImageGeometry
from cil.plugins.astra import ProjectionOperator

from cil_genreg import (LatentLeastSquares, RangeGenerativeRegulariser, SoftGenerativeRegulariser,
                        SparseDeviationGenerativeRegulariser)
from cil_genreg.experiments import methods
from cil_genreg.physics import forward
from cil_genreg.latent import resolve_device
from generators import LinearGenerator

REGULARISERS = [SoftGenerativeRegulariser, SparseDeviationGenerativeRegulariser,
                RangeGenerativeRegulariser]
FAST = dict(max_iteration=10)


@pytest.fixture
def setup():
    G = LinearGenerator()
    ig = ImageGeometry(8, 8)
    return G, ig, ig.allocate("random", seed=1)


class NaNBeyond(LinearGenerator):
    """G(z) = W z + b while every |z_i| <= 0.5, NaN beyond: finite near z = 0 only."""

    def forward(self, z):
        out = super().forward(z)
        far = (z.abs() > 0.5).any(dim=1).reshape(-1, 1, 1, 1)
        return torch.where(far, torch.full_like(out, float("nan")), out)


class NaNEverywhere(LinearGenerator):
    def forward(self, z):
        return super().forward(z) * float("nan")


@pytest.mark.parametrize("cls", REGULARISERS)
def test_a_generator_giving_nan_is_refused_not_passed_on(cls, setup):
    _, ig, _ = setup
    kw = {} if cls is RangeGenerativeRegulariser else {"mu": 1e-3}
    with pytest.raises(ValueError, match="NaN or Inf for z = 0"):
        cls(NaNEverywhere(), **kw)
    G = NaNBeyond()
    target = ig.allocate(None)
    target.fill(LinearGenerator()(torch.full((1, 4), 3.0)).detach().numpy()[0, 0])
    R = cls(G, **kw, optimiser="adam", lr=0.5, **FAST)  # Adam steps into the NaN region
    with pytest.raises(ValueError, match="NaN or Inf during the latent step"):
        R.proximal(target, 1.0)


@pytest.mark.parametrize("cls", [SoftGenerativeRegulariser, SparseDeviationGenerativeRegulariser])
@pytest.mark.parametrize("mu", [float("nan"), float("inf"), -0.1])
def test_mu_nan_inf_or_negative(cls, mu, setup):
    with pytest.raises(ValueError, match="mu must be"):
        cls(setup[0], mu=mu)


@pytest.mark.parametrize("lam", [float("nan"), float("inf"), -1.0, 0.0])
def test_lambda_nan_inf_or_not_positive(lam):
    ig, ag = forward.make_geometry(16, 4)
    A = forward.make_projector(ig, ag)
    with pytest.raises(ValueError, match="lam must be"):
        methods.reconstruct("tv", A, A.direct(ig.allocate(0)), lam, iterations=1)


def test_out_of_another_dtype_shape_or_kind(setup):
    G, ig, x = setup
    R = SoftGenerativeRegulariser(G, mu=0.1, **FAST)
    with pytest.raises(TypeError, match="dtype float64"):
        R.proximal(x, 0.5, out=ImageGeometry(8, 8, dtype=np.float64).allocate(0))
    with pytest.raises(ValueError, match=r"shape \(9, 8\)"):
        R.proximal(x, 0.5, out=ImageGeometry(8, 9).allocate(0))
    data = AcquisitionGeometry.create_Parallel2D().set_angles([0, 45, 90, 135, 10, 20, 30, 40]) \
        .set_panel(8).allocate(0)
    with pytest.raises(TypeError, match="out is AcquisitionData"):
        R.gradient(x, out=data)
    with pytest.raises(TypeError, match="DataContainer"):
        R.gradient(x, out=np.zeros((8, 8), np.float32))
    good = ig.allocate(0)  # positive control: the right out is filled
    assert R.proximal(x, 0.5, out=good) is good and np.isfinite(good.as_array()).all()


def test_acquisition_data_where_an_image_is_expected(setup):
    G = setup[0]
    data = AcquisitionGeometry.create_Parallel2D().set_angles(np.linspace(0, 180, 8)) \
        .set_panel(8).allocate(0)
    for R in (SoftGenerativeRegulariser(G, mu=0.1), RangeGenerativeRegulariser(G)):
        with pytest.raises(TypeError, match="AcquisitionData.*image is expected"):
            R.proximal(data, 0.5)


@pytest.mark.parametrize("dtype", [np.int32, np.uint8, np.complex64])
def test_integer_or_complex_images_are_refused_not_truncated(dtype, setup):
    G = setup[0]
    x = ImageGeometry(8, 8, dtype=dtype).allocate(0)
    before = x.as_array().copy()
    with pytest.raises(TypeError, match=f"dtype {np.dtype(dtype)}.*convert"):
        SoftGenerativeRegulariser(G, mu=0.1).proximal(x, 0.5, out=x)
    assert np.array_equal(x.as_array(), before)


def test_tau_as_a_tensor_is_refused(setup):
    G, _, x = setup
    R = SoftGenerativeRegulariser(G, mu=0.1)
    for tau in (torch.tensor(0.5), torch.tensor([0.5])):
        with pytest.raises(TypeError, match="tau must be a number.*float"):
            R.proximal(x, tau)


@pytest.mark.parametrize("device", ["gpu", "cpu:x", "tpu0", ""])
def test_unknown_device_names(device, setup):
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device(device)
    with pytest.raises(ValueError, match="unknown device"):
        SoftGenerativeRegulariser(setup[0], mu=0.1, device=device)


@pytest.fixture
def lls():
    G = LinearGenerator(image_shape=(16, 16))
    ig = ImageGeometry(16, 16)
    ag = AcquisitionGeometry.create_Parallel2D().set_angles(
        np.linspace(0, 180, 7, endpoint=False)).set_panel(23)
    A = ProjectionOperator(ig, ag, device="cpu")
    return G, ig, ag, A, A.direct(ig.allocate("random", seed=3))


def test_latent_least_squares_refuses_numpy_y_other_geometry_and_bad_c(lls):
    G, ig, ag, A, y = lls
    with pytest.raises(TypeError, match="y must be a CIL DataContainer"):
        LatentLeastSquares(A, G, y.as_array())
    other = AcquisitionGeometry.create_Parallel2D().set_angles(
        np.linspace(0, 90, 7, endpoint=False)).set_panel(23).allocate(0)  # same shape
    with pytest.raises(ValueError, match="geometry is not A's range geometry"):
        LatentLeastSquares(A, G, other)
    for c in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="c must be"):
            LatentLeastSquares(A, G, y, c=c)
    f = LatentLeastSquares(A, G, y, c=0.5)  # positive control
    assert np.isfinite(f(f.latent_geometry.allocate(0)))


def _snapshot(module):
    return {"training": module.training,
            "params": {k: (v.device.type, v.requires_grad, v.data_ptr(), v.detach().clone())
                       for k, v in module.named_parameters()}}


def _assert_same(module, snap):
    assert module.training == snap["training"]
    for k, v in module.named_parameters():
        device, grad, ptr, value = snap["params"][k]
        assert (v.device.type, v.requires_grad, v.data_ptr()) == (device, grad, ptr)
        assert torch.equal(v.detach(), value)


@pytest.mark.parametrize("training", [True, False])
def test_regularisers_never_change_the_callers_module(training, setup):
    """Building and using regularisers (one on another device: 'meta', a stand-in for a GPU
    here) leaves the user's module as it was: device, weights, requires_grad, training mode;
    and the second device does not break the first regulariser."""
    G, ig, x = setup
    G.train(training)
    snap = _snapshot(G)
    R_cpu = SoftGenerativeRegulariser(G, mu=0.1, **FAST)
    first = R_cpu.proximal(x, 0.5).as_array().copy()
    _assert_same(G, snap)
    R_other = RangeGenerativeRegulariser(G, device="meta")
    assert R_other.device.type == "meta" and R_other.generator is not G
    _assert_same(G, snap)
    R_cpu.reset()
    np.testing.assert_allclose(R_cpu.proximal(x, 0.5).as_array(), first, rtol=1e-5, atol=1e-6)
    ig8, ag8 = forward.make_geometry(8, 4)
    A = forward.make_projector(ig8, ag8)
    f = LatentLeastSquares(A, G, A.direct(x))
    f.gradient(f.latent_geometry.allocate(0))
    _assert_same(G, snap)


def test_evaluate_model_leaves_the_callers_module_as_it_was():
    from cil_genreg import datasets, models
    from cil_genreg.experiments.evaluation import evaluate_model
    torch.manual_seed(0)
    G = models.build("vae", latent_dim=2, image_shape=16, width=2).train()
    snap = _snapshot(G)
    report = evaluate_model(G, datasets.shapes(4, size=16, seed=1), n=4, steps=2,
                            n_samples=4, progress=False)
    assert np.isfinite(report["latent_fit"]["psnr_mean_db"])
    _assert_same(G, snap)
