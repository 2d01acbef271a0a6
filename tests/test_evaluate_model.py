"""evaluate-model: the latent fit, latent statistics, and the JSON + PNG report."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from cil_genreg import models
from cil_genreg.cli import main
from cil_genreg.experiments.evaluation import evaluate_model, ks_statistic, latent_fit, latent_statistics
from cil_genreg.latent import encode_mean


def test_latent_fit_recovers_images_in_the_range(tiny_vae):
    torch.manual_seed(0)
    with torch.no_grad():
        x = tiny_vae(0.5 * torch.randn(4, 4))[:, 0].numpy()
    z, fitted, p = latent_fit(tiny_vae, x, reg=1e-6, steps=300, lr=0.05, progress=False)
    assert z.shape == (4, 4) and fitted.shape == (4, 1, 28, 28)
    assert float(p.min()) > 40.0
    # an image far from the range is fitted much worse
    _, _, q = latent_fit(tiny_vae, np.eye(28, dtype=np.float32)[None], steps=100,
                         progress=False)
    assert float(q[0]) < 20.0


def test_latent_fit_from_the_encoder_starts_at_its_code():
    """With no Adam step the fit is the start: the encoder's reconstruction, not G(0)."""
    G = models.pretrained("mnist-vae")
    from cil_genreg.datasets import mnist
    x = mnist(split="test", n=3)
    _, enc, p_enc = latent_fit(G, x, steps=0, progress=False, start="encoder")
    with torch.no_grad():
        code = encode_mean(G, torch.as_tensor(x[:, None]))
        assert torch.allclose(enc, G(code), atol=1e-5)
    _, _, p_zero = latent_fit(G, x, steps=0, progress=False)
    assert float(p_enc.min()) > float(p_zero.max()) + 5
    # and Adam from there only improves it
    _, _, p_fit = latent_fit(G, x, steps=30, progress=False, start="encoder")
    assert bool((p_fit >= p_enc - 1e-4).all())


def test_latent_fit_from_the_encoder_needs_one():
    gan = models.build("gan", 3, 28, width=4)
    with pytest.raises(ValueError, match="encoder"):
        latent_fit(gan, np.zeros((1, 28, 28), np.float32), steps=1, progress=False,
                   start="encoder")
    with pytest.raises(ValueError, match="start"):
        latent_fit(gan, np.zeros((1, 28, 28), np.float32), steps=1, progress=False,
                   start="middle")


def test_ks_and_moments_against_standard_normal():
    g = torch.Generator().manual_seed(0)
    normal = torch.randn(4000, 3, generator=g)
    assert float(ks_statistic(normal).max()) < 0.03
    shifted = normal * 0.3 + 1.0
    assert float(ks_statistic(shifted).min()) > 0.4
    s = latent_statistics(shifted)
    assert abs(s["mean_abs_mean"] - 1.0) < 0.05 and abs(s["std_median"] - 0.3) < 0.02


def test_evaluate_model_writes_report_and_figure(tmp_path, tiny_vae):
    x = np.random.default_rng(0).uniform(0, 1, (6, 28, 28)).astype(np.float32)
    report = evaluate_model(tiny_vae, x, n=6, out_dir=tmp_path, steps=10, n_samples=9,
                            n_interpolations=2, frames=5, progress=False, info={"who": "test"})
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk["n_images"] == 6 and on_disk["info"] == {"who": "test"}
    for key in ("latent_fit", "samples", "interpolation", "latent_distribution"):
        assert key in on_disk
    lf = on_disk["latent_fit"]
    assert lf["reg"] == 1e-3 and lf["psnr_min_db"] <= lf["psnr_median_db"] <= lf["psnr_max_db"]
    assert "encoder_psnr_mean_db" in lf
    # a tiny untrained VAE cannot fit uniform noise: its fits lose the fine detail, HFEN ~ 1
    assert 0.5 < lf["hfen_mean"] < 1.5
    assert on_disk["interpolation"]["pairs"] == 2
    assert len(on_disk["latent_distribution"]["std_per_dim"]) == 4
    png = Image.open(tmp_path / "evaluation.png")
    assert png.size[0] > 500 and report["figure"].endswith("evaluation.png")


def test_evaluate_model_rejects_wrong_size(tiny_vae):
    with pytest.raises(ValueError, match="resize"):
        evaluate_model(tiny_vae, np.zeros((2, 32, 32), np.float32), progress=False)


def test_cli_evaluate_model(tmp_path, capsys):
    torch.manual_seed(0)
    ckpt = models.save(models.build("gan", 3, 28, width=4), tmp_path / "g.safetensors")
    out = tmp_path / "report"
    assert main(["evaluate-model", str(ckpt), "--data", "shapes", "--n", "4", "--steps", "5",
                 "--out", str(out), "--quiet"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    report = json.loads((out / "report.json").read_text())
    assert report["n_images"] == 4 == printed["n"]
    assert report["latent_distribution"]["codes"] == "latent fit"  # a GAN has no encoder
    assert (out / "evaluation.png").stat().st_size > 10_000
    assert main(["evaluate-model", str(tmp_path / "missing.safetensors"), "--data", "shapes",
                 "--out", str(out)]) == 1


def test_cli_evaluate_pretrained_by_name(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["evaluate-model", "mnist-vae", "--data", "mnist", "--n", "4", "--steps", "3",
                 "--out", str(out), "--quiet", "--start", "encoder"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["latent_fit"]["start"] == "encoder"
    assert report["latent_fit"]["objective"].endswith("from the encoder's code")
    # from the encoder the fit starts at its reconstruction: at least as good after 3 steps
    assert report["latent_fit"]["psnr_mean_db"] >= report["latent_fit"]["encoder_psnr_mean_db"] - 0.5
    assert report["info"]["dataset"] == "mnist" and report["info"]["split"] == "test"
    assert report["info"]["model_metadata"]["split"] == "train"
    assert report["latent_distribution"]["latent_dim"] == 32
