"""The structured-covariance VAE: its precision factor (adjoint, log-det, Gaussian
log-likelihood, the shifted solve), its training, its checkpoint, and the structured soft
regulariser against the soft one, finite differences and the proximal map's optimality."""
import math

import numpy as np
import pytest
import torch

from cil_genreg import models
from cil_genreg.models import StructuredVAE, precision as P
from cil_genreg.latent import StructuredMisfit

torch.set_num_threads(1)


def random_factor(h, w, rho, batch=2, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    k = len(P.offsets(rho))
    log_d = 0.5 * torch.randn(batch, 1, h, w, generator=g, dtype=dtype)
    u = torch.tanh(torch.randn(batch, k, h, w, generator=g, dtype=dtype))
    return log_d, u


@pytest.mark.parametrize("rho", [1, 2])
def test_factor_and_its_transpose_are_adjoint_and_triangular(rho):
    log_d, u = random_factor(7, 6, rho)
    g = torch.Generator().manual_seed(1)
    r, s = (torch.randn(2, 1, 7, 6, generator=g, dtype=torch.float64) for _ in range(2))
    lhs = (P.apply_factor(r, log_d, u, rho) * s).sum()
    rhs = (r * P.apply_factor_transpose(s, log_d, u, rho)).sum()
    assert abs(float(lhs - rhs)) < 1e-12 * float(lhs.abs() + 1)
    B = P.dense_factor(log_d[:1], u[:1], rho)
    assert torch.equal(B, torch.triu(B))
    assert torch.allclose(torch.diag(B), log_d[0].exp().flatten())
    assert len(P.offsets(rho)) == 2 * rho * (rho + 1)


@pytest.mark.parametrize("rho", [1, 2])
def test_log_det_is_exact_and_nll_is_the_gaussian_log_density(rho):
    log_d, u = random_factor(8, 8, rho, batch=1)
    B = P.dense_factor(log_d, u, rho)
    prec = B.T @ B
    assert abs(float(torch.linalg.slogdet(prec)[1] - P.log_det_precision(log_d)[0])) < 1e-9
    assert torch.allclose(torch.diag(prec).reshape(8, 8), P.precision_diagonal(log_d, u, rho)[0, 0])
    g = torch.Generator().manual_seed(2)
    mean, x = (torch.rand(1, 1, 8, 8, generator=g, dtype=torch.float64) for _ in range(2))
    mvn = torch.distributions.MultivariateNormal(mean.flatten(), precision_matrix=prec)
    nll = P.gaussian_nll(x, mean, log_d, u, rho)
    assert abs(float(nll[0] + mvn.log_prob(x.flatten()))) < 1e-8 * abs(float(nll[0])) + 1e-9


def test_shifted_solve_meets_its_tolerance_and_the_dense_solution():
    log_d, u = random_factor(9, 9, 1)
    g = torch.Generator().manual_seed(3)
    b = torch.randn(2, 1, 9, 9, generator=g, dtype=torch.float64)
    e, iterations, residual = P.solve_shifted(b, 0.7, log_d, u, 1, tol=1e-10)
    assert iterations > 0 and bool((residual <= 1e-10).all())
    B = P.dense_factor(log_d[1:], u[1:], 1)
    dense = torch.linalg.solve(torch.eye(81, dtype=torch.float64) + 0.7 * B.T @ B,
                               b[1].flatten())
    assert torch.allclose(e[1].flatten(), dense, atol=1e-8)


# -- the model -------------------------------------------------------------------------------
@pytest.fixture
def tiny_structured():
    torch.manual_seed(0)
    vae = models.build("vae", latent_dim=4, image_shape=16, width=4).eval()
    images = torch.rand(12, 16, 16)
    model = StructuredVAE.from_vae(vae, neighbourhood=1, images=images)
    with torch.no_grad():  # a head that is not constant: d and u vary with z and position
        model.head.out.weight.normal_(0, 0.3)
    return model.eval(), vae, images


def test_from_vae_keeps_the_mean_and_freezes_it(tiny_structured):
    model, vae, images = tiny_structured
    z = torch.randn(3, 4)
    assert torch.equal(model(z), vae(z))
    with torch.no_grad():
        mean, log_d, u = model.factors(z)
    assert torch.equal(mean, vae(z)) and u.shape == (3, 4, 16, 16)
    lo, hi = (math.log(v) for v in models.D_RANGE)
    assert float(log_d.min()) >= lo and float(log_d.max()) <= hi and float(u.abs().max()) < 1
    mse = float((vae(vae.encode(images[:, None])[0]) - images[:, None]).square().mean())
    assert abs(float(model.reference_precision) * mse - 1) < 1e-5
    assert not any(p.requires_grad for p in model.decoder.parameters())
    assert all(p.requires_grad for p in model.head.parameters())


def test_the_head_trains_by_maximum_likelihood(tiny_structured):
    from cil_genreg.training import train
    from cil_genreg.training.validation import structured_nll
    _, vae, _ = tiny_structured
    torch.manual_seed(1)
    data = (torch.rand(64, 1, 16, 16) * 0.2 + 0.4)
    model = StructuredVAE.from_vae(vae, images=data)
    before = structured_nll(model, data)
    decoder = {k: v.clone() for k, v in model.decoder.state_dict().items()}
    result = train(model=model, data=data, epochs=4, batch_size=16, lr=1e-2, progress=False,
                   val_data=data[:8])
    assert structured_nll(result.model, data) < before - 0.05
    assert all(torch.equal(v, result.model.decoder.state_dict()[k]) for k, v in decoder.items())
    assert "val_nll_per_pixel" in result.history[-1]


def test_checkpoint_round_trip_keeps_head_reference_and_prior(tiny_structured, tmp_path):
    model, vae, images = tiny_structured
    prior = models.fit_latent_prior(vae, images, rank=3)
    models.attach_prior(model, prior)
    path = models.save(model, str(tmp_path / "s.safetensors"), {"note": "test"})
    back = models.load(path)
    assert isinstance(back, StructuredVAE) and back.config == model.config
    assert float(back.reference_precision) == float(model.reference_precision)
    z = torch.randn(2, 4)
    for a, b in zip(model.factors(z), back.factors(z)):
        assert torch.equal(a, b)
    assert torch.equal(back.latent_prior.basis, prior.basis)
    whitened = models.factor_generator(models.whitened(back))
    assert whitened.output_channels == 6 and whitened(torch.zeros(1, 4)).shape == (1, 6, 16, 16)


def test_misfit_reduces_to_the_soft_one_for_a_constant_precision():
    g = torch.Generator().manual_seed(4)
    m, v = (torch.rand(2, 1, 16, 16, generator=g) for _ in range(2))
    s2 = 400.0
    image = torch.cat([m, torch.full_like(m, 0.5 * math.log(s2)), torch.zeros(2, 4, 16, 16)], 1)
    plain = (v - m).flatten(1).square().sum(1)
    assert torch.allclose(StructuredMisfit(s2)(image, v), plain, rtol=1e-4, atol=1e-5)
    tau = 0.3
    assert torch.allclose(StructuredMisfit(s2, tau=tau)(image, v), plain / (1 + 2 * tau),
                          rtol=1e-4, atol=1e-5)


def test_cli_trains_the_head_of_an_init_model_and_resumes(tmp_path, capsys, tiny_checkpoint):
    from cil_genreg.cli import main
    data = tmp_path / "imgs.npy"
    np.save(data, np.random.default_rng(0).random((40, 28, 28), dtype=np.float32))
    out = tmp_path / "s.safetensors"
    args = ["train", "--model", "structured-vae", "--init", str(tiny_checkpoint), "--data",
            str(data), "--epochs", "1", "--batch-size", "20", "--out", str(out), "--quiet",
            "--threads", "1"]
    assert main(args) == 0
    assert "held-out NLL" in capsys.readouterr().out
    model = models.load(out)
    meta = model.metadata
    assert isinstance(model, StructuredVAE) and model.neighbourhood == 1
    assert meta["init"] == str(tiny_checkpoint) and "held_out_nll_nats_per_pixel" in meta
    vae = models.load(tiny_checkpoint)
    z = torch.randn(2, 4)
    assert torch.equal(model(z), vae(z))  # the mean decoder did not move
    assert main(args[:8] + ["2"] + args[9:] + ["--resume"]) == 0
    assert models.load(out).metadata["epochs"] == 2
    capsys.readouterr()
    assert main([a for a in args if a not in ("--init", str(tiny_checkpoint))]
                + ["--overwrite"]) != 0
    assert "needs --init" in capsys.readouterr().err


# -- the regulariser (CIL side) ----------------------------------------------------------------
TIGHT = dict(tolerance=1e-12, max_iteration=300, adaptive_tolerance=False, optimiser="bfgs")
JOINT = dict(TIGHT, latent_fit="joint")


@pytest.fixture
def problem(tiny_structured):
    from cil.framework import ImageGeometry
    ig = ImageGeometry(16, 16)
    x = ig.allocate(0)
    g = torch.Generator().manual_seed(5)
    x.fill((0.3 + 0.4 * torch.rand(16, 16, generator=g)).numpy())
    return tiny_structured[0], ig, x


def constant_head(model, s2):
    with torch.no_grad():
        model.head.out.weight.zero_()
        model.head.out.bias.zero_()
        model.reference_precision.fill_(s2)
    model.head.set_initial_precision(s2 ** 0.5)
    d = float(model.factors(torch.zeros(1, 4))[1].exp().mean())
    model.reference_precision.fill_(d * d)  # s = d exactly, whatever the logit's rounding
    return model


@pytest.mark.parametrize("fit", ["joint", "mean"])
def test_equals_the_soft_regulariser_for_a_constant_precision(problem, fit):
    from cil_genreg import SoftGenerativeRegulariser, StructuredSoftRegulariser
    model, ig, x = problem
    model = constant_head(model, 900.0)
    S = StructuredSoftRegulariser(model, mu=0.05, latent_fit=fit, **TIGHT)
    R = SoftGenerativeRegulariser(model, mu=0.05, **TIGHT)
    assert S(x) == pytest.approx(R(x), rel=1e-4)
    np.testing.assert_allclose(S.gradient(x).as_array(), R.gradient(x).as_array(), atol=1e-4)
    np.testing.assert_allclose(S.proximal(x, 0.4).as_array(), R.proximal(x, 0.4).as_array(),
                               atol=1e-4)


@pytest.mark.parametrize("fit", ["joint", "mean"])
def test_prox_solves_its_system_and_is_optimal_in_x(problem, fit):
    from cil_genreg import StructuredSoftRegulariser
    model, ig, x = problem
    S = StructuredSoftRegulariser(model, mu=0.05, latent_fit=fit, **TIGHT)
    tau = 0.5
    p = S.proximal(x, tau)
    m, log_d, u = (t.double() for t in S.factors())
    v = torch.from_numpy(x.as_array()).double()[None, None]
    xs, residual = S.solve_x_step(v.float(), tau)
    assert float(residual.max()) <= S.cg_tolerance
    np.testing.assert_allclose(xs[0, 0].numpy(), p.as_array(), atol=1e-5)
    # optimality in x: (x - v) + 2 tau s^-2 P (x - m) = 0
    xp = torch.from_numpy(p.as_array()).double()[None, None]
    stationarity = (xp - v) + 2 * tau / S.reference_precision * P.apply_precision(
        xp - m, log_d, u, 1)
    assert float(stationarity.abs().max()) < 1e-4 * float((xp - v).abs().max() + 1e-3)
    assert S.cg_iterations > 0


def test_mean_fit_value_is_the_structured_misfit_at_the_soft_latent(problem):
    from cil_genreg import SoftGenerativeRegulariser, StructuredSoftRegulariser
    model, ig, x = problem
    S = StructuredSoftRegulariser(model, mu=0.05, **TIGHT)
    R = SoftGenerativeRegulariser(model, mu=0.05, **TIGHT)
    value = S(x)
    R(x)
    np.testing.assert_allclose(S.latent, R.latent, atol=1e-4)  # the soft regulariser's z*
    image = torch.cat(S.factors(), 1)
    z = torch.from_numpy(S.latent)
    v = torch.from_numpy(x.as_array())[None, None]
    expected = StructuredMisfit(S.reference_precision)(image, v) + 0.05 * (z * z).sum()
    assert value == pytest.approx(float(expected), rel=1e-5)
    with pytest.raises(ValueError, match="latent_fit"):
        StructuredSoftRegulariser(model, latent_fit="both")


def test_gradient_matches_finite_differences(problem):
    """Danskin's gradient of the joint fit, exact where z* is unique."""
    from cil_genreg import StructuredSoftRegulariser
    model, ig, x = problem
    S = StructuredSoftRegulariser(model, mu=0.05, **JOINT)
    grad = S.gradient(x).as_array()
    g = np.random.default_rng(0).standard_normal(x.shape).astype(np.float32)
    h = 1e-2 * g / np.linalg.norm(g)
    plus, minus = x.copy(), x.copy()
    plus.fill(x.as_array() + h)
    minus.fill(x.as_array() - h)
    fd = (S(plus) - S(minus)) / 2
    assert fd == pytest.approx(float(np.sum(grad * h)), rel=2e-2)


def test_volumes_and_out(problem):
    from cil.framework import ImageGeometry
    from cil_genreg import StructuredSoftRegulariser
    model, ig, x = problem
    S = StructuredSoftRegulariser(model, mu=0.05, **JOINT)
    vol = ImageGeometry(16, 16, 2).allocate(0)
    vol.fill(np.stack([x.as_array(), x.as_array()[::-1]]))
    out = vol.geometry.allocate(0)
    S.proximal(vol, 0.3, out=out)
    single = StructuredSoftRegulariser(model, mu=0.05, **JOINT).proximal(x, 0.3)
    np.testing.assert_allclose(out.as_array()[0], single.as_array(), atol=1e-4)


def test_bad_inputs_give_clear_errors(problem):
    from cil.framework import ImageGeometry
    from cil_genreg import StructuredSoftRegulariser
    model, ig, x = problem
    S = StructuredSoftRegulariser(model, mu=0.05)
    bad = x.copy()
    arr = bad.as_array()
    arr[3, 3] = np.nan
    bad.fill(arr)
    with pytest.raises(ValueError, match="NaN"):
        S(bad)
    for tau in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="tau"):
            S.proximal(x, tau)
    with pytest.raises(ValueError, match="16x16"):
        S(ImageGeometry(12, 12).allocate(0))
    with pytest.raises(TypeError, match="structured"):
        StructuredSoftRegulariser(models.build("vae", latent_dim=4, image_shape=16, width=4))
    with pytest.raises(NotImplementedError):
        S.convex_conjugate(x)
    with pytest.raises(ValueError, match="reference_precision"):
        StructuredSoftRegulariser(model, reference_precision=0.0)
