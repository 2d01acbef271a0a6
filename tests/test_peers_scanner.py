"""Post-processing pairs from the scanner simulation (no inverse crime): the truth is the block
mean of the native slice, the FBP input is exactly what method 'postprocess' gets in the
comparison and in the CT demo, `cil-genreg train --model postprocess --physics scanner`
learns at --size from native images, and a network of another dose warns, naming both."""
import warnings

import numpy as np
import pytest
import torch

from cil_genreg.cli import main as cli_main
from cil_genreg.experiments import methods
from cil_genreg.experiments.comparison import compare
from cil_genreg.experiments.postprocess_data import (check_geometry, fbp_pairs, geometry_of,
                                                     same_geometry)
from cil_genreg.physics.forward import make_geometry, make_projector
from cil_genreg.physics.measurement import GaussianMeasurement, ScannerMeasurement, measurement


def disc(n, value=0.5):
    yy, xx = (np.mgrid[:n, :n] + 0.5 - n / 2) / (n / 2)
    return np.where(xx ** 2 + yy ** 2 <= 0.7, value, 0.0).astype(np.float32)


class Recorder(torch.nn.Module):
    """A 'post-processing network' that returns its input and keeps every input it saw."""
    kind = "postprocess"

    def __init__(self, geometry):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.metadata = {"geometry": geometry}
        self.seen = []

    def forward(self, x0):
        self.seen.append(x0.detach().cpu().numpy().copy())
        return x0


def test_scanner_pairs_are_fbp_and_block_mean_and_the_input_compare_gives_postprocess():
    scanner = ScannerMeasurement(1e4, native=64)
    images = np.stack([disc(64), disc(64, 0.3), disc(64, 0.8)])
    pairs, geometry = fbp_pairs(images, 8, measurement=scanner, size=16, seed=5)
    assert pairs.shape == (3, 2, 16, 16) and pairs.dtype == np.float32
    np.testing.assert_allclose(pairs[:, 1], images.reshape(3, 16, 4, 16, 4).mean(axis=(2, 4)),
                               atol=1e-6)
    assert geometry == {"type": "parallel", "angles": 8, "span": 180.0, "size": 16,
                        "panel": 23, "physics": "scanner", "dose": 1e4, "native": 64}
    assert np.abs(pairs[:, 0] - pairs[:, 1]).max() > 0.01  # the input is FBP, not the truth
    net = Recorder(geometry)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # same geometry, same dose: no warning
        compare(images, None, angles=8, methods=("postprocess",), progress=False,
                measurement=scanner, size=16, seed=5, postprocessor=net)
    np.testing.assert_array_equal(np.concatenate(net.seen)[:, 0], pairs[:, 0])
    with pytest.raises(ValueError, match="side 64 for training pairs of 16², got 32"):
        fbp_pairs(images[:, :32, :32], 8, measurement=scanner, size=16)


def test_gaussian_pairs_stay_the_default():
    images = np.stack([disc(16)])
    pairs, geometry = fbp_pairs(images, 8, noise=0.02)
    np.testing.assert_array_equal(pairs[:, 1], images)
    assert geometry["physics"] == "gaussian" and geometry["noise"] == 0.02
    same, _ = fbp_pairs(images, 8, measurement=GaussianMeasurement(0.02))
    np.testing.assert_array_equal(same, pairs)


def test_ct_demo_gives_postprocess_the_fbp_of_the_training_pairs(monkeypatch, tmp_path):
    """The CT demo's path (unseen patient, scanner, dose 1e4): the FBP image its postprocess
    method receives is the input of fbp_pairs on the same native slice, bit for bit."""
    from demo_helpers import load_demo
    demo = load_demo("ct_tomography")
    args = demo.parse_args(["--n", "1", "--size", "32", "--angles", "8"])
    images, _ = demo.load_images(args, native=True)
    pairs, geometry = fbp_pairs(images, 8, measurement=measurement("scanner", dose=1e4),
                                size=32, seed=0)
    net = Recorder(geometry)
    real_load = methods.load_model
    monkeypatch.setattr(methods, "load_model", lambda name, kind: net if kind == "postprocess"
                        else real_load(name, kind))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        demo.main(["--n", "1", "--size", "32", "--angles", "8", "--iterations", "1",
                   "--methods", "fbp", "--postprocess", "recorded", "--quiet",
                   "--out", str(tmp_path)])
    assert not [w for w in caught if "post-processing" in str(w.message)]
    assert len(net.seen) == 2  # the comparison, then the timing (same image and seed)
    for seen in net.seen:
        np.testing.assert_array_equal(seen[0, 0], pairs[0, 0])


def test_train_postprocess_on_scanner_data_learns_at_size_from_native_images(tmp_path, capsys):
    out = str(tmp_path / "post.safetensors")
    assert cli_main(["train", "--model", "postprocess", "--physics", "scanner", "--dose", "2e3",
                     "--data", "ct-patients:chest3", "--size", "128", "--n", "3", "--angles",
                     "30", "--epochs", "1", "--batch-size", "2", "--width", "4",
                     "--val-fraction", "0.34", "--quiet", "--out", out]) == 0
    assert "simulated from 512² images" in capsys.readouterr().out
    net = methods.load_model(out, "postprocess")
    assert net.image_shape == (128, 128)
    assert net.metadata["geometry"] == {"type": "parallel", "angles": 30, "span": 180.0,
                                        "size": 128, "panel": 183, "physics": "scanner",
                                        "dose": 2e3, "native": 512}
    assert cli_main(["train", "--model", "postprocess", "--physics", "scanner", "--data",
                     "shapes", "--size", "100", "--out", str(tmp_path / "x.safetensors")]) == 1
    assert "divides" in capsys.readouterr().err
    assert cli_main(["train", "--model", "postprocess", "--physics", "scanner", "--dose", "0",
                     "--data", "shapes", "--out", str(tmp_path / "x.safetensors")]) == 2


def test_another_dose_or_physics_warns_naming_both():
    ig, ag = make_geometry(16, 8)
    A = make_projector(ig, ag)
    trained = dict(geometry_of(A), physics="scanner", dose=1e4, native=64)
    net = Recorder(trained)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_geometry(net, A, ScannerMeasurement(1e4, native=64))
        assert check_geometry(net, A)  # how the data were made unknown: the geometry only
    with pytest.warns(UserWarning, match=r"scanner counts at dose 1e4 and is applied to .*"
                                         r"scanner counts at dose 2e3.*--dose 2e3"):
        assert not check_geometry(net, A, ScannerMeasurement(2e3, native=64))
    with pytest.warns(UserWarning, match=r"dose 1e4 and is applied to .*Gaussian noise 2%"):
        assert not check_geometry(net, A, GaussianMeasurement(0.02))
    legacy = {k: v for k, v in geometry_of(A).items()}
    legacy["noise"] = 0.02  # a checkpoint from before the physics entry: Gaussian data
    assert same_geometry(legacy, dict(geometry_of(A), physics="gaussian", noise=0.02))
    assert not same_geometry(legacy, dict(geometry_of(A), physics="gaussian", noise=0.05))
    assert not same_geometry(trained, dict(trained, angles=9))
    assert not same_geometry(trained, dict(trained, span=90.0))
