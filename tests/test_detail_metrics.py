"""Fine-detail metrics: HFEN punishes blur more than noise of the same MSE; SSIM in a region;
the lung mask of a CT slice (and none for an image without lungs)."""
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from cil_genreg.utilities.metrics import hfen, lung_mask, lung_ssim, masked_ssim, ssim


def _phantom(size=64, seed=0):
    """A 'chest' in the wide window: body (0.5) in air (0), two lungs (0.15) with vessels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    image = np.where((xx - 0.5) ** 2 / 0.16 + (yy - 0.5) ** 2 / 0.12 < 1, 0.5, 0.0)
    for cx in (0.32, 0.68):
        image[(xx - cx) ** 2 / 0.012 + (yy - 0.5) ** 2 / 0.04 < 1] = 0.15
    for _ in range(12):  # vessels: small bright dots in the lungs
        r, c = rng.integers(size // 3, 2 * size // 3), rng.integers(size // 4, 3 * size // 4)
        if image[r, c] == 0.15:
            image[r, c] = 0.55
    return image.astype(np.float32)


def test_hfen_is_zero_for_the_truth_and_relative():
    truth = _phantom()
    assert hfen(truth, truth) == 0.0
    assert hfen(np.zeros_like(truth), truth) == pytest.approx(1.0)
    assert np.isnan(hfen(truth, np.full_like(truth, 0.3)))


def test_hfen_punishes_blur_more_than_noise_of_the_same_mse():
    truth = _phantom()
    blurred = gaussian_filter(truth, 1.0)
    mse = np.mean((blurred - truth) ** 2)
    noise = np.random.default_rng(1).standard_normal(truth.shape)
    noisy = truth + noise * np.sqrt(mse / np.mean(noise ** 2))
    assert np.mean((noisy - truth) ** 2) == pytest.approx(mse)
    assert hfen(blurred, truth) > hfen(noisy, truth)


def test_hfen_of_a_volume_filters_each_slice():
    truth = np.stack([_phantom(seed=s) for s in range(3)])
    x = truth + 0.01
    assert hfen(x, truth) < 1e-3  # a constant shift has no detail
    with pytest.raises(ValueError, match="shape"):
        hfen(truth[0], truth)


def test_masked_ssim_is_ssim_for_an_all_true_mask_and_nan_for_none():
    truth = _phantom()
    x = gaussian_filter(truth, 1.0)
    assert masked_ssim(x, truth, np.ones(truth.shape, bool)) == pytest.approx(ssim(x, truth))
    assert np.isnan(masked_ssim(x, truth, None))
    assert np.isnan(masked_ssim(x, truth, np.zeros(truth.shape, bool)))


def test_lung_mask_finds_the_lungs_not_the_air_around_the_body():
    truth = _phantom()
    mask = lung_mask(truth)
    assert mask is not None and mask.dtype == bool
    assert not mask[0].any() and not mask[:, 0].any()  # the outside air is not lung
    assert np.all(truth[mask] < 0.3)  # below −400 HU in the wide window
    yy, xx = np.nonzero(mask)
    assert (xx < 32).any() and (xx > 32).any()  # both lungs


def test_lung_mask_is_none_without_lungs_and_lung_ssim_nan():
    digit = np.zeros((28, 28), np.float32)
    digit[8:20, 12:16] = 1.0  # an MNIST-like digit: air around a stroke, no enclosed air
    assert lung_mask(digit) is None
    assert np.isnan(lung_ssim(digit, digit))
    truth = _phantom()
    assert lung_ssim(truth, truth) == pytest.approx(1.0)
    assert lung_ssim(gaussian_filter(truth, 1.0), truth) < ssim(gaussian_filter(truth, 1.0),
                                                                 truth) + 0.2


def test_lung_mask_of_a_volume_is_per_slice():
    volume = np.stack([_phantom(), np.zeros((64, 64), np.float32)])
    mask = lung_mask(volume)
    assert mask.shape == volume.shape and mask[0].any() and not mask[1].any()
