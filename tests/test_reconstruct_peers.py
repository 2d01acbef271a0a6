"""`cil-genreg reconstruct --method pnp | dpir --denoiser FILE` and `--method postprocess
--postprocess FILE` on the shared digit sinogram, with tiny networks trained here; a network of another kind
is refused naming what the file is, a missing one saying what to pass, and a post-processing
network on another geometry warns and still writes its image."""
import numpy as np
import pytest

from cil_genreg.cli import main as cli_main

TINY = ["--data", "shapes", "--size", "28", "--n", "24", "--epochs", "1", "--batch-size", "8",
        "--width", "4", "--quiet"]


@pytest.fixture(scope="module")
def networks(tmp_path_factory):
    """A tiny denoiser and a tiny post-processing network for the sinogram's geometry (28²,
    10 parallel angles, Gaussian 5 %)."""
    out = tmp_path_factory.mktemp("peer-networks")
    denoiser, post = str(out / "denoiser.safetensors"), str(out / "post.safetensors")
    assert cli_main(["train", "--model", "denoiser", "--out", denoiser] + TINY) == 0
    assert cli_main(["train", "--model", "postprocess", "--angles", "10", "--noise", "0.05",
                     "--out", post] + TINY) == 0
    return denoiser, post


def _common(sinogram, out):
    d, _, _ = sinogram
    return ["--data", str(d / "sino.npy"), "--angles", str(d / "angles.npy"), "--quiet",
            "--out", str(out)]


def test_pnp_and_postprocess_write_an_image(sinogram, networks, tmp_path, recwarn):
    denoiser, post = networks
    assert cli_main(["reconstruct", "--method", "pnp", "--denoiser", denoiser, "--lam", "1",
                     "--iterations", "5"] + _common(sinogram, tmp_path / "pnp.npy")) == 0
    assert cli_main(["reconstruct", "--method", "dpir", "--denoiser", denoiser, "--lam", "0.3"]
                    + _common(sinogram, tmp_path / "dpir.npy")) == 0
    assert cli_main(["reconstruct", "--method", "postprocess", "--postprocess", post]
                    + _common(sinogram, tmp_path / "post.npy")) == 0
    for name in ("pnp", "dpir", "post"):
        image = np.load(tmp_path / f"{name}.npy")
        assert image.shape == (28, 28) and np.isfinite(image).all()
    assert not [w for w in recwarn if "post-processing network" in str(w.message)]


def test_postprocess_on_another_geometry_warns_and_writes(sinogram, networks, tmp_path):
    d, _, _ = sinogram
    out = tmp_path / "limited.npy"
    with pytest.warns(UserWarning, match=r"trained for parallel beam, 10 angles over 180°.* "
                                         r"applied to parallel beam, 10 angles over 90°"):
        status = cli_main(["reconstruct", "--method", "postprocess", "--postprocess",
                           networks[1], "--data", str(d / "sino.npy"), "--angles-deg", "10",
                           "--geometry", "limited", "--quiet", "--out", str(out)])
    assert status == 0 and np.load(out).shape == (28, 28)


def test_peers_refuse_a_network_of_another_kind_or_none(sinogram, networks, tiny_checkpoint,
                                                        tmp_path, capsys):
    denoiser, post = networks
    out = tmp_path / "x.npy"

    def refused(argv):
        assert cli_main(["reconstruct"] + argv + _common(sinogram, out)) == 1
        assert not out.exists()
        return " ".join(capsys.readouterr().err.split())

    err = refused(["--method", "pnp"])
    assert "--method pnp needs a Plug-and-Play denoiser" in err and "--denoiser FILE" in err
    assert "--method dpir needs a Plug-and-Play denoiser" in refused(["--method", "dpir"])
    err = refused(["--method", "dpir", "--denoiser", str(tiny_checkpoint)])
    assert "--denoiser:" in err and "is a generator (VAE" in err and "not a Plug-and-Play" in err
    assert "--postprocess FILE" in refused(["--method", "postprocess"])
    err = refused(["--method", "pnp", "--denoiser", str(tiny_checkpoint)])
    assert "--denoiser:" in err and "is a generator (VAE" in err and "not a Plug-and-Play" in err
    err = refused(["--method", "postprocess", "--postprocess", denoiser])
    assert "is a Plug-and-Play denoiser" in err and "not a post-processing network" in err
    assert "not a generator" in refused(["--method", "soft", "--model", post])
    assert "drop it, or use --method pnp or dpir" in refused(["--method", "tv", "--denoiser",
                                                               denoiser])
    assert "no --lam" in refused(["--method", "postprocess", "--postprocess", post,
                                  "--lam", "1"])
    assert "multiple of 4" in refused(["--method", "pnp", "--denoiser", denoiser,
                                       "--image-size", "26"])
