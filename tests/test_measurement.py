"""How a truth becomes data in an experiment: the inverse crime (Gaussian) or the scanner."""
import numpy as np
import pytest

from cil_genreg.experiments.comparison import compare
from cil_genreg.physics.forward import make_geometry, make_projector
from cil_genreg.physics.measurement import (GaussianMeasurement, ScannerMeasurement,
                                            measurement)


def disc(n, value=0.5):
    yy, xx = (np.mgrid[:n, :n] + 0.5 - n / 2) / (n / 2)
    return np.where(xx ** 2 + yy ** 2 <= 0.7, value, 0.0).astype(np.float32)


def test_gaussian_is_the_inverse_crime_with_its_sigma():
    ig, ag = make_geometry(16, 8)
    A = make_projector(ig, ag)
    m = GaussianMeasurement(0.05).measure(disc(16), A, 0)
    clean = A.direct(m.truth).as_array()
    assert m.sigma == pytest.approx(0.05 * clean.max())
    assert np.std(m.data.as_array() - clean) == pytest.approx(m.sigma, rel=0.3)
    with pytest.raises(ValueError, match="does not fit"):
        GaussianMeasurement(0.05).measure(disc(32), A, 0)


def test_scanner_sigma_estimates_the_noise_of_the_data_without_the_truth():
    """The discrepancy principle's σ from the counts matches the data's spread around the
    noise-free scan (the same truth, a huge dose) to within 10 %."""
    ig, ag = make_geometry(16, 12)
    A = make_projector(ig, ag)
    truth = disc(64)
    noisy = [ScannerMeasurement(I0=2e3, native=64).measure(truth, A, seed) for seed in range(8)]
    clean = ScannerMeasurement(I0=2e3, native=64, poisson=False).measure(truth, A, 0)
    spread = np.sqrt(np.mean([np.mean((m.data.as_array() - clean.data.as_array()) ** 2)
                              for m in noisy]))
    assert np.mean([m.sigma for m in noisy]) == pytest.approx(spread, rel=0.1)
    np.testing.assert_allclose(noisy[0].truth.as_array(),
                               truth.reshape(16, 4, 16, 4).mean(axis=(1, 3)), atol=1e-6)


def test_compare_with_the_scanner_scores_against_the_block_mean_at_the_reconstruction_size():
    images = np.stack([disc(64), disc(64, 0.3)])
    out = compare(images, None, angles=12, methods=("fbp", "tv"), lambdas={"tv": (0.3, 1.0)},
                  iterations=20, progress=False, measurement=ScannerMeasurement(1e4, native=64),
                  size=16)
    assert out["examples"]["truth"].shape == (16, 16)
    psnr = {(r["method"], r["choice"]): r["psnr"] for r in out["summary"]}
    assert psnr["tv", "best"] > psnr["fbp", "initial"] > 15
    with pytest.raises(ValueError, match="side 64"):
        compare(images[:, :32, :32], None, angles=4, methods=("fbp",), progress=False,
                measurement=ScannerMeasurement(1e4, native=64), size=16)


def test_named_measurements_and_refusals():
    assert measurement("gaussian", noise=0.02).level == 0.02
    assert measurement("scanner", dose=2e3).settings.I0 == 2e3
    with pytest.raises(ValueError, match="physics"):
        measurement("poisson")
    with pytest.raises(ValueError, match="I0"):
        measurement("scanner", dose=0)
    with pytest.raises(ValueError, match="divides"):
        ScannerMeasurement(native=512).native_size(100)


def test_for_images_refuses_truths_at_another_side_than_the_measurement_needs():
    import numpy as np
    from cil_genreg.physics.measurement import ScannerMeasurement, for_images
    scanner = ScannerMeasurement(I0=1e4, native=64)
    m, size = for_images(np.zeros((2, 64, 64)), scanner, size=16)
    assert m is scanner and size == 16
    m, size = for_images(np.zeros((2, 32, 32)), noise=0.05)
    assert size == 32 and m.native_size(32) == 32
    with pytest.raises(ValueError, match="side 64 for a reconstruction of 16², got 32"):
        for_images(np.zeros((2, 32, 32)), scanner, size=16, made="a reconstruction of")
