"""The Poisson-weighted data term: the weights against the data's variance over Poisson
realisations, zero counts, the weighted gradients, the discrepancy principle's target and the
refusals."""
import numpy as np
import pytest

from cil_genreg import LatentLeastSquares
from cil_genreg.algorithms.latent_objective import LatentObjective
from cil_genreg.experiments.comparison import compare
from cil_genreg.experiments.methods import reconstruct
from cil_genreg.experiments.parameter_choice import discrepancy_principle
from cil_genreg.physics.forward import make_geometry, make_projector
from cil_genreg.physics.measurement import GaussianMeasurement, ScannerMeasurement
from cil_genreg.physics.scanner import ScannerSettings, scan
from cil_genreg.physics.weights import check_weights, poisson_weights, weighted_noise_level
from cil_genreg.utilities.bridge import as_tensor
from generators import ConvGenerator


def body(n):
    """A chest-like phantom: a water ellipse with two lungs and a bone, in [0, 1] units."""
    yy, xx = (np.mgrid[:n, :n] + 0.5 - n / 2) / (n / 2)
    x = np.where((xx / 0.9) ** 2 + (yy / 0.65) ** 2 <= 1, 0.5, 0.0)
    for side in (-0.35, 0.35):
        x[((xx - side) / 0.25) ** 2 + (yy / 0.4) ** 2 <= 1] = 0.1
    x[xx ** 2 + (yy + 0.4) ** 2 <= 0.02] = 0.9
    return x.astype(np.float32)


#: a 64² truth of 358 mm (5.6 mm pixels): the attenuation of a chest, counts from ~5 to I0
CHEST = dict(native=64, pixel_mm=0.7 * 512 / 64)


@pytest.fixture(scope="module")
def chest():
    ig, ag = make_geometry(16, 12)
    measurement = ScannerMeasurement(I0=2e3, **CHEST)
    return measurement, make_projector(ig, ag, kernel=measurement.kernel)


def test_weights_are_the_inverse_variance_of_the_data_over_poisson_realisations(chest):
    """Over 300 scans of one phantom, w_i Var y_i is the same for every ray (σ_W²), to 20 %,
    on the rays with enough counts; and log w follows log(1 / Var y) (correlation > 0.9)."""
    measurement, A = chest
    truth = body(64)
    scans = [measurement.measure(truth, A, seed) for seed in range(300)]
    variance = np.var([m.data.as_array() for m in scans], axis=0, ddof=1)
    weights = np.mean([m.weights.as_array() for m in scans], axis=0)
    expected = scan(truth, A.range_geometry(), 16, ScannerSettings(
        I0=2e3, pixel_mm=CHEST["pixel_mm"], poisson=False)).counts.as_array()
    enough = expected > 30
    assert enough.sum() > 100 and expected.min() < 30  # both kinds of ray are there
    sigma_w2 = np.mean([m.weighted_sigma ** 2 for m in scans])
    ratio = weights[enough] * variance[enough] / sigma_w2
    assert np.median(np.abs(ratio - 1)) < 0.2
    assert np.corrcoef(np.log(weights[enough]), -np.log(variance[enough]))[0, 1] > 0.9
    assert weights.max() / weights.min() > 10  # weighting matters on this phantom
    assert np.mean(weights) == pytest.approx(1, rel=1e-5)


def test_zero_counts_give_finite_positive_weights(chest):
    _, A = chest
    counts = A.range_geometry().allocate(0)
    values = np.full(counts.shape, 100.0, dtype=np.float32)
    values[0, :3] = 0
    counts.fill(values)
    w = poisson_weights(counts).as_array()
    assert np.all(np.isfinite(w)) and w.min() > 0
    assert w.mean() == pytest.approx(1, rel=1e-6)
    assert w[0, 0] == pytest.approx(0.1 / np.maximum(values, 0.1).mean(), rel=1e-5)
    # a scan that sees (almost) nothing through the body: still finite weights and σ_W
    dark = ScannerMeasurement(I0=5, **CHEST).measure(body(64), A, 0)
    assert np.all(np.isfinite(dark.weights.as_array())) and dark.weights.min() > 0
    assert np.isfinite(dark.weighted_sigma) and dark.weighted_sigma > 0
    assert weighted_noise_level(counts, 2.0) == pytest.approx(
        1 / (2.0 * np.sqrt(np.maximum(values, 0.1).mean())))


def test_weighted_latent_least_squares_gradient_against_finite_differences(chest):
    _, A = chest
    generator = ConvGenerator()
    rng = np.random.default_rng(0)
    y = A.direct(A.domain_geometry().allocate("random", seed=3))
    w = A.range_geometry().allocate(None)
    w.fill(rng.uniform(0.05, 3.0, w.shape).astype(np.float32))
    f = LatentLeastSquares(A, generator, y, c=0.7, weight=w)
    z = f.latent_geometry.allocate("random", seed=1)
    r = (A.direct(f.image(z)) - y).as_array()
    assert f(z) == pytest.approx(0.7 * np.sum(w.as_array() * r ** 2), rel=1e-4)
    assert f(z) != pytest.approx(LatentLeastSquares(A, generator, y, c=0.7)(z), rel=1e-2)
    g = f.gradient(z)
    for _ in range(3):
        d = f.latent_geometry.allocate(None)
        d.fill(rng.standard_normal(generator.latent_dim).astype(np.float32))
        h = 1e-1  # f ~ 2e3 in float32: a smaller step is lost in rounding
        fd = (f(z + h * d) - f(z - h * d)) / (2 * h)
        assert g.dot(d) == pytest.approx(fd, rel=1e-2, abs=2e-3)
    # the batched evaluator of the quasi-Newton solver weighs the same way
    value, grad = LatentObjective(f, f.latent_geometry)(as_tensor(z).reshape(1, -1))[:2]
    assert float(value[0]) == pytest.approx(f(z), rel=1e-4)
    np.testing.assert_allclose(grad[0].numpy(), g.as_array(), rtol=1e-3, atol=1e-4)
    unweighted = LatentLeastSquares(A, generator, y, c=0.7, L=None)
    assert f.estimate_L() == pytest.approx(unweighted.estimate_L() * w.max(), rel=1e-4)


@pytest.mark.parametrize("method", ["tv", "hybrid"])
def test_unit_weights_are_the_unweighted_data_term(chest, method):
    """W = I reconstructs exactly as the unweighted term (the plumbing, and the FISTA step)."""
    measurement, A = chest
    measured = measurement.measure(body(64), A, 0)
    ones = A.range_geometry().allocate(1)
    options = dict(iterations=10, x0=A.domain_geometry().allocate(0))
    if method == "hybrid":
        options.update(generator=ConvGenerator(), lam_tv=0.1)
    same = [reconstruct(method, A, measured.data, 0.3, weights=W, **options).as_array()
            for W in (None, ones)]
    np.testing.assert_allclose(same[0], same[1], rtol=1e-5, atol=1e-6)
    other = reconstruct(method, A, measured.data, 0.3, weights=measured.weights, **options)
    assert np.abs(other.as_array() - same[0]).max() > 1e-3


def test_the_weighted_residual_of_the_truth_is_about_m_sigma_w_squared():
    """The discrepancy principle's weighted target: ‖A x̄ − y‖²_W ≈ m σ_W² at the truth when
    the noise dominates the model error (a low dose, a reconstruction grid only 2× coarser:
    at 4× the partial-volume error of the bright rays, which the weights trust, dominates),
    where the unweighted σ would set a bound several times too high."""
    ig, ag = make_geometry(32, 30)
    measurement = ScannerMeasurement(I0=100, **CHEST)
    A = make_projector(ig, ag, kernel=measurement.kernel)
    fits, loose = [], []
    for seed in range(3):
        m = measurement.measure(body(64), A, seed)
        r = A.direct(m.truth) - m.data
        weighted = float(r.dot(r * m.weights))
        fits.append(weighted / (r.size * m.weighted_sigma ** 2))
        loose.append(r.size * m.sigma ** 2 / weighted)
    assert 0.8 < np.mean(fits) < 1.3
    assert np.mean(loose) > 2
    choice = discrepancy_principle(lambda lam: m.truth, A, m.data, m.weighted_sigma, [1.0],
                                   tau=1.5, weights=m.weights)
    assert choice.table[0][1] == pytest.approx(weighted, rel=1e-5)
    assert choice.satisfied


def test_bad_weights_are_refused_with_what_to_do(chest):
    measurement, A = chest
    y = measurement.measure(body(64), A, 0).data
    good = A.range_geometry().allocate(1)
    for fill, match in ((-1.0, "negative"), (np.nan, "non-finite"), (0.0, "all zero")):
        bad = good.copy()
        bad.fill(np.full(bad.shape, fill, dtype=np.float32))
        with pytest.raises(ValueError, match=match):
            reconstruct("tv", A, y, 1.0, weights=bad)
    wrong = make_geometry(16, 8)[1].allocate(1)
    with pytest.raises(ValueError, match="one weight per datum"):
        reconstruct("tv", A, y, 1.0, weights=wrong)
    with pytest.raises(ValueError, match="one weight per datum"):
        discrepancy_principle(lambda lam: None, A, y, 1.0, [1.0], weights=wrong)
    with pytest.raises(ValueError, match="one weight per datum"):
        LatentLeastSquares(A, ConvGenerator(), y, weight=wrong)
    with pytest.raises(TypeError, match="DataContainer"):
        check_weights(np.ones(good.shape), A.range_geometry())
    with pytest.raises(ValueError, match="no weighted data term"):
        reconstruct("dpir", A, y, 1.0, denoiser=object(), weights=good)
    with pytest.raises(ValueError, match="counts"):
        poisson_weights(y * -1.0)


def test_compare_with_the_weighted_data_term_needs_counts_and_no_dpir(chest):
    measurement, _ = chest
    images = np.stack([body(64)])
    out = compare(images, None, angles=12, methods=("fbp", "tv"), lambdas={"tv": (0.3, 1.0)},
                  iterations=20, progress=False, measurement=measurement, size=16,
                  data_term="weighted")
    psnr = {(r["method"], r["choice"]): r["psnr"] for r in out["summary"]}
    assert psnr["tv", "best"] > psnr["fbp", "initial"]
    with pytest.raises(ValueError, match="needs photon counts"):
        compare(np.stack([body(16)]), None, angles=4, methods=("tv",), progress=False,
                measurement=GaussianMeasurement(0.05), data_term="weighted")
    with pytest.raises(ValueError, match="dpir"):
        compare(images, None, angles=4, methods=("tv", "dpir"), progress=False,
                measurement=measurement, size=16, data_term="weighted")
    with pytest.raises(ValueError, match="data_term"):
        compare(images, None, angles=4, methods=("tv",), progress=False,
                measurement=measurement, size=16, data_term="poisson")
