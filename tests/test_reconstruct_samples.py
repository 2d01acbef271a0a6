"""`cil-genreg reconstruct --samples N`: the posterior's mean and std written beside the
reconstruction (the latent posterior for --method latent, the joint (x, w) one for --method
soft); refused, before anything runs, where there is no sampler."""
import numpy as np
import pytest

from cil_genreg.cli import main as cli_main




def _argv(d, sigma, out, *extra):
    return ["reconstruct", "--data", str(d / "sino.npy"), "--angles-deg", "10", "--quiet",
            "--sigma", f"{sigma:.6g}", "--out", str(out)] + list(extra)


def test_samples_write_the_posterior_mean_and_std(sinogram, capsys):
    d, truth, sigma = sinogram
    out = d / "latent.npy"
    assert cli_main(_argv(d, sigma, out, "--method", "latent", "--iterations", "20",
                          "--samples", "40", "--burn-in", "40")) == 0
    mean, std = np.load(d / "latent_mean.npy"), np.load(d / "latent_std.npy")
    assert mean.shape == std.shape == (28, 28)
    assert np.isfinite(mean).all() and np.isfinite(std).all() and (std >= 0).all()
    assert std.max() > 0
    assert np.sqrt(np.mean((mean - truth) ** 2)) < 0.25
    text = capsys.readouterr().out
    assert "posterior" in text and "acceptance" in text and "latent_std.npy" in text


def test_soft_samples_write_the_joint_posterior_mean_and_std(sinogram, capsys):
    d, truth, sigma = sinogram
    out = d / "soft.npy"
    assert cli_main(_argv(d, sigma, out, "--method", "soft", "--iterations", "20",
                          "--samples", "30", "--burn-in", "30")) == 0
    mean, std = np.load(d / "soft_mean.npy"), np.load(d / "soft_std.npy")
    assert mean.shape == std.shape == (28, 28)
    assert np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()
    soft = np.load(out)
    assert np.sqrt(np.mean((mean - truth) ** 2)) < np.sqrt(np.mean((soft - truth) ** 2)) + 0.05
    text = capsys.readouterr().out
    assert "p(x, w | y)" in text and "τ =" in text and "soft_std.npy" in text


@pytest.mark.parametrize("extra, match", [
    (["--method", "range", "--samples", "10"], "--method latent"),
    (["--method", "latent", "--samples", "10", "--tau", "0.1"], "--method soft"),
    (["--method", "soft", "--samples", "10", "--tau", "nan"], "--tau"),
    (["--method", "latent", "--samples", "0"], "--samples"),
    (["--method", "latent", "--samples", "10", "--burn-in", "-1"], "--burn-in"),
])
def test_samples_are_refused_for_other_methods_and_bad_counts(sinogram, capsys, extra, match):
    d, _, sigma = sinogram
    status = cli_main(_argv(d, sigma, d / "refused.npy", *extra))
    assert status != 0 and match in capsys.readouterr().err
    assert not (d / "refused.npy").exists()


def test_samples_need_sigma_and_do_not_overwrite(sinogram, capsys):
    d, _, sigma = sinogram
    argv = _argv(d, sigma, d / "x.npy", "--method", "latent", "--samples", "5")
    argv.remove("--sigma")
    argv.remove(f"{sigma:.6g}")
    assert cli_main(argv) != 0 and "--sigma" in capsys.readouterr().err
    (d / "y_std.npy").write_bytes(b"keep")
    assert cli_main(_argv(d, sigma, d / "y.npy", "--method", "latent", "--samples", "5")) != 0
    assert "y_std.npy" in capsys.readouterr().err and not (d / "y.npy").exists()
    assert (d / "y_std.npy").read_bytes() == b"keep"
