"""`cil-genreg reconstruct` on a tiny saved sinogram of a held-out digit: the image it writes
beats FBP's; geometry errors are clear."""
import numpy as np
import pytest

from cil_genreg.utilities import metrics
from cil_genreg.cli import main as cli_main




def test_soft_writes_an_image_better_than_fbp(sinogram, capsys):
    d, truth, _ = sinogram
    common = ["--data", str(d / "sino.npy"), "--angles", str(d / "angles.npy"), "--quiet"]
    assert cli_main(["reconstruct", "--method", "fbp", "--image-size", "28",
                     "--out", str(d / "fbp.npy")] + common) == 0
    assert cli_main(["reconstruct", "--method", "soft", "--model", "mnist-vae",
                     "--iterations", "30", "--out", str(d / "soft.npy")] + common) == 0
    fbp, soft = np.load(d / "fbp.npy"), np.load(d / "soft.npy")
    assert fbp.shape == soft.shape == (28, 28)
    assert metrics.psnr(soft, truth) > metrics.psnr(fbp, truth) + 5
    assert "written to" in capsys.readouterr().out


def test_tv_with_discrepancy_principle_and_png(sinogram, capsys):
    d, truth, sigma = sinogram
    status = cli_main(["reconstruct", "--method", "tv", "--data", str(d / "sino.npy"),
                       "--angles-deg", "10", "--image-size", "28", "--lam", "1", "4", "16",
                       "--sigma", str(sigma), "--iterations", "20", "--quiet",
                       "--out", str(d / "tv.png")])
    assert status == 0 and (d / "tv.png").stat().st_size > 0
    assert "discrepancy principle: λ =" in capsys.readouterr().out


def test_geometry_mismatch_and_bad_output_are_reported(sinogram, capsys):
    d, _, _ = sinogram
    status = cli_main(["reconstruct", "--method", "fbp", "--data", str(d / "sino.npy"),
                       "--angles-deg", "12", "--image-size", "28", "--out", str(d / "x.npy")])
    assert status == 1 and "data shape" in capsys.readouterr().err
    status = cli_main(["reconstruct", "--method", "fbp", "--data", str(d / "sino.npy"),
                       "--angles-deg", "10", "--out", str(d / "x.jpg")])
    assert status == 1 and ".npy, .tif" in capsys.readouterr().err


def test_readme_reconstruct_commands_run_as_written(sinogram, tmp_path, monkeypatch, capsys):
    # the README's `cil-genreg reconstruct` lines, run in a folder holding the files they name
    import os
    import re
    import shlex
    import shutil
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "README.md"), encoding="utf-8") as f:
        section = f.read().split("## Reconstructing your own data")[1].split("\n## ")[0]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
    commands = [c for c in block.replace("\\\n", " ").splitlines() if c.strip()]
    assert len(commands) == 2 and all(c.startswith("cil-genreg reconstruct") for c in commands)
    d, truth, _ = sinogram
    shutil.copy(d / "sino.npy", tmp_path / "sinogram.npy")
    shutil.copy(d / "angles.npy", tmp_path / "angles.npy")
    monkeypatch.chdir(tmp_path)
    for command in commands:
        argv = shlex.split(command)[1:] + ["--quiet", "--iterations", "30"]
        assert cli_main(argv) == 0, command
    for name in ("image.npy", "image.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert metrics.psnr(np.load(tmp_path / "image.npy"), truth) > 18
    assert "discrepancy principle: λ =" in capsys.readouterr().out


def test_latent_prior_option_uses_a_fitted_prior_or_says_how_to_get_one(sinogram, tmp_path,
                                                                         capsys):
    """--latent-prior fitted needs a model that carries a prior (`cil-genreg fit-prior`); with
    one, auto uses it: the same image as fitted, another than standard."""
    import torch
    from cil_genreg import models
    d, _, _ = sinogram
    common = ["reconstruct", "--method", "latent", "--data", str(d / "sino.npy"),
              "--angles", str(d / "angles.npy"), "--iterations", "10", "--quiet", "--overwrite"]
    assert cli_main(common + ["--model", "mnist-vae", "--latent-prior", "fitted",
                              "--out", str(tmp_path / "x.npy")]) == 1
    assert "fit-prior" in capsys.readouterr().err
    model = models.pretrained("mnist-vae")
    codes = torch.randn(200, model.latent_dim) * torch.linspace(0.1, 3, model.latent_dim)
    models.attach_prior(model, models.LatentGaussian.fit(codes, shrinkage=0.2))
    path = models.save(model, tmp_path / "with_prior.safetensors")
    images = {}
    for prior in ("auto", "fitted", "standard"):
        assert cli_main(common + ["--model", str(path), "--latent-prior", prior,
                                  "--out", str(tmp_path / f"{prior}.npy")]) == 0
        images[prior] = np.load(tmp_path / f"{prior}.npy")
    np.testing.assert_array_equal(images["auto"], images["fitted"])
    assert np.abs(images["fitted"] - images["standard"]).max() > 1e-3


def test_precision_option_runs_bfloat16_and_refuses_what_cannot_run(sinogram, capsys):
    import torch
    d, truth, _ = sinogram
    common = ["--data", str(d / "sino.npy"), "--angles", str(d / "angles.npy"), "--quiet"]
    assert cli_main(["reconstruct", "--method", "soft", "--precision", "bfloat16",
                     "--inner-iterations", "2", "--iterations", "20",
                     "--out", str(d / "soft_bf16.npy")] + common) == 0
    assert metrics.psnr(np.load(d / "soft_bf16.npy"), truth) > 15
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:  # argparse: one of the supported values
        cli_main(["reconstruct", "--method", "soft", "--precision", "half",
                  "--out", str(d / "x.npy")] + common)
    assert exit_.value.code == 2 and "invalid choice: 'half'" in capsys.readouterr().err
    assert cli_main(["reconstruct", "--method", "soft", "--precision", "float16",
                     "--out", str(d / "x.npy")] + common) == 1
    assert "bfloat16" in capsys.readouterr().err  # what to use on the CPU instead
    assert cli_main(["reconstruct", "--method", "tv", "--precision", "bfloat16",
                     "--out", str(d / "x.npy")] + common) == 1
    assert "drop --precision" in capsys.readouterr().err
    assert cli_main(["reconstruct", "--method", "soft", "--inner-iterations", "0",
                     "--out", str(d / "x.npy")] + common) == 2
    assert "--inner-iterations must be an integer >= 1" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert cli_main(["reconstruct", "--method", "soft", "--device", "cuda",
                         "--precision", "float16", "--out", str(d / "x.npy")] + common) == 1
        assert "--device cpu" in capsys.readouterr().err
    assert not (d / "x.npy").exists()


def test_generative_methods_default_to_two_warm_started_inner_iterations():
    """The CLI's default latent iterations per proximal map (the CT speed lever) reach the
    regulariser of every generative method, and only theirs; --inner-iterations overrides it."""
    from cil_genreg.commands import reconstruct as command
    from cil_genreg.cli import build_parser
    parser = build_parser()
    base = ["reconstruct", "--data", "s.npy", "--out", "x.npy"]
    for method in ("soft", "sparse", "range"):
        args = parser.parse_args(base + ["--method", method])
        assert command._regulariser_options(args)["max_iteration"] == \
            command.DEFAULT_INNER_ITERATIONS == 2
        args = parser.parse_args(base + ["--method", method, "--inner-iterations", "5"])
        assert command._regulariser_options(args)["max_iteration"] == 5
    for method in ("tv", "fbp", "latent"):
        args = parser.parse_args(base + ["--method", method])
        assert "max_iteration" not in command._regulariser_options(args)
