"""The fitted latent prior: the Gaussian of the codes, the whitened generator, its checkpoints and
the ``fit-prior`` command."""
import json

import numpy as np
import pytest
import torch
from cil.framework import ImageGeometry
from safetensors.torch import load_file

from cil_genreg import SoftGenerativeRegulariser, models
from cil_genreg.cli import main
from cil_genreg.models.checkpoints import CheckpointError
from cil_genreg.models.latent_prior import LatentGaussian, WhitenedGenerator
from generators import LinearGenerator
from test_checkpoints import _rewrite


def _codes(n=400, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g) * torch.tensor([5.0, 3.0, 2.0, 1.0, 0.1, 0.01])[:d]
    return torch.randn(n, d, generator=g, dtype=torch.float64) @ mix.double().T + 2.0


def test_fit_is_the_codes_gaussian_and_the_map_is_the_mahalanobis_whitening():
    codes = _codes()
    delta = 0.05
    prior = LatentGaussian.fit(codes, shrinkage=delta)
    mean = codes.mean(0)
    cov = torch.cov(codes.T) + delta * torch.eye(6, dtype=torch.float64)
    assert prior.rank == 6
    np.testing.assert_allclose(prior.mean.numpy(), mean.numpy(), rtol=1e-5, atol=1e-5)
    # ||w||^2 = (z - m)^T Sigma^-1 (z - m) for w = Sigma^-1/2 (z - m), and the two maps invert
    z = codes[:5].float()
    w = prior.from_latent(z)
    maha = ((z.double() - mean) @ torch.linalg.solve(cov, (z.double() - mean).T)).diagonal()
    np.testing.assert_allclose(w.double().square().sum(1).numpy(), maha.numpy(), rtol=1e-3)
    np.testing.assert_allclose(prior.to_latent(w).numpy(), z.numpy(), rtol=1e-4, atol=1e-4)
    # the codes' own covariance in w is e / (e + delta): the identity where e >> delta
    wc = prior.from_latent(codes.float()).double()
    e = prior.variances.double()
    np.testing.assert_allclose(torch.linalg.eigvalsh(torch.cov(wc.T)).numpy(),
                               torch.sort(e / (e + delta)).values.numpy(), rtol=1e-3, atol=1e-4)


def test_low_rank_fit_keeps_the_leading_directions_and_the_floor_elsewhere():
    codes = _codes()
    prior = LatentGaussian.fit(codes, shrinkage=0.1, rank=2)
    assert prior.basis.shape == (6, 2) and prior.variances.shape == (2,)
    assert prior.variances[0] >= prior.variances[1] > 1.0
    # a direction outside the leading two is scaled by the floor alone: sqrt(0.1)
    other = torch.linalg.svd(torch.cat([prior.basis.T, torch.eye(6)]), full_matrices=True)[2][-1]
    out = prior.to_latent(other[None].float()) - prior.mean
    assert out.norm() == pytest.approx(0.1 ** 0.5, rel=1e-3)


@pytest.mark.parametrize("bad", [dict(shrinkage=0.0), dict(rank=0), dict(rank=7)])
def test_fit_refuses_a_zero_floor_and_a_rank_out_of_range(bad):
    with pytest.raises(ValueError):
        LatentGaussian.fit(_codes(), **bad)


def test_fit_refuses_too_few_or_non_finite_codes():
    with pytest.raises(ValueError, match="N >= 2"):
        LatentGaussian.fit(torch.zeros(1, 4))
    codes = _codes()
    codes[3, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        LatentGaussian.fit(codes)


def test_soft_regulariser_of_the_whitened_linear_generator_is_the_mahalanobis_ridge():
    """R(x) = min_z ||Wz + b - x||^2 + mu (z - m)^T Sigma^-1 (z - m): a closed form."""
    G = LinearGenerator(latent_dim=4)
    W, b = G.weight.detach().double().numpy(), G.bias.detach().double().numpy()
    prior = LatentGaussian.fit(_codes(d=4), shrinkage=0.5)
    m = prior.mean.double().numpy()
    S = prior.to_latent(torch.eye(4)).double().numpy() - m  # rows: Sigma^1/2 e_i (symmetric)
    P = np.linalg.inv(S @ S)  # Sigma^-1
    mu = 0.1
    R = SoftGenerativeRegulariser(WhitenedGenerator(G, prior), mu=mu, tolerance=1e-12,
                                  max_iteration=300, adaptive_tolerance=False)
    x = ImageGeometry(8, 8).allocate("random", seed=1)
    xv = x.as_array().ravel().astype(float)
    z = np.linalg.solve(W.T @ W + mu * P, W.T @ (xv - b) + mu * P @ m)
    expected = np.sum((W @ z + b - xv) ** 2) + mu * (z - m) @ P @ (z - m)
    assert R(x) == pytest.approx(expected, rel=1e-3)
    np.testing.assert_allclose(R.gradient(x).as_array().ravel(), 2 * (xv - W @ z - b),
                               rtol=1e-2, atol=1e-3)


def test_whitened_encoder_maps_codes_to_w(tiny_vae):
    images = torch.rand(30, 1, 28, 28)
    prior = models.fit_latent_prior(tiny_vae, images[:, 0], shrinkage=0.1)
    G = models.whitened(tiny_vae, prior)
    with torch.no_grad():
        w = G.encode(images[:3])
        mu = tiny_vae.encode(images[:3])[0]
        np.testing.assert_allclose(G(w).numpy(), tiny_vae(mu).numpy(), atol=1e-5)
    assert G.latent_dim == 4 and G.image_shape == (28, 28)


def test_whitened_refuses_a_model_without_prior_and_a_prior_of_another_dimension(tiny_vae):
    with pytest.raises(ValueError, match="fit-prior"):
        models.whitened(tiny_vae)
    with pytest.raises(ValueError, match="dimension"):
        models.whitened(tiny_vae, LatentGaussian.fit(_codes(d=6)))


def test_checkpoint_keeps_the_prior_outside_the_model_state(tmp_path, tiny_vae):
    prior = models.fit_latent_prior(tiny_vae, torch.rand(20, 28, 28), shrinkage=0.3)
    models.attach_prior(tiny_vae, prior)
    assert not any(k.startswith("latent_prior") for k in tiny_vae.state_dict())
    path = models.save(tiny_vae, tmp_path / "p.safetensors", metadata={"dataset": "unit"})
    assert models.read_metadata(path)["latent_prior"] == {"rank": prior.rank, "shrinkage": 0.3}
    loaded = models.load(path)
    for name in ("mean", "basis", "variances"):
        assert torch.equal(getattr(loaded.latent_prior, name), getattr(prior, name))
    w = torch.randn(3, 4)
    with torch.no_grad():
        assert torch.equal(models.whitened(loaded)(w), models.whitened(tiny_vae)(w))
    # the whitened generator itself saves as its model plus prior; metadata edits keep it
    again = models.save(models.whitened(loaded), tmp_path / "w.safetensors")
    models.update_metadata(again, note="kept")
    assert models.load(again).latent_prior.rank == prior.rank
    assert models.load(tmp_path / "w.safetensors").metadata == {"note": "kept"}


def test_a_checkpoint_without_prior_loads_without_one(tiny_checkpoint):
    assert getattr(models.load(tiny_checkpoint), "latent_prior", None) is None
    assert "latent_prior" not in models.read_metadata(tiny_checkpoint)


@pytest.mark.parametrize("edit", ["rank", "missing", "negative"])
def test_load_refuses_an_edited_prior(tmp_path, tiny_vae, edit):
    models.attach_prior(tiny_vae, models.fit_latent_prior(tiny_vae, torch.rand(20, 28, 28)))
    path = models.save(tiny_vae, tmp_path / "p.safetensors")
    if edit == "rank":
        bad = _rewrite(path, tmp_path / "b.safetensors",
                       edit_meta=lambda m: m["latent_prior"].update(rank=99))
    elif edit == "missing":
        bad = _rewrite(path, tmp_path / "b.safetensors",
                       edit_tensors=lambda t: t.pop("latent_prior.basis"))
    else:
        bad = _rewrite(path, tmp_path / "b.safetensors",
                       edit_tensors=lambda t: t.update({"latent_prior.variances":
                                                        -t["latent_prior.variances"] - 1}))
    with pytest.raises(CheckpointError):
        models.load(bad)


def test_fit_prior_command_writes_a_new_checkpoint(tmp_path, tiny_checkpoint, capsys):
    data = tmp_path / "train.npy"
    np.save(data, np.random.default_rng(0).random((25, 28, 28), dtype=np.float32))
    out = tmp_path / "with_prior.safetensors"
    assert main(["fit-prior", str(tiny_checkpoint), "--data", str(data), "--shrinkage", "0.1",
                 "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["codes"] == 25 and report["rank"] == 4
    model = models.load(out)
    assert model.latent_prior.shrinkage == 0.1
    assert model.metadata["latent_prior"]["codes"] == 25
    assert model.metadata["dataset"] == "unit-test"  # the model's own metadata is kept
    assert set(load_file(str(out))) - set(load_file(str(tiny_checkpoint))) == \
        {"latent_prior.mean", "latent_prior.basis", "latent_prior.variances"}
    # the input is never the output, and an existing output needs --overwrite
    assert main(["fit-prior", str(tiny_checkpoint), "--data", str(data),
                 "--out", str(tiny_checkpoint), "--overwrite"]) == 1
    assert main(["fit-prior", str(tiny_checkpoint), "--data", str(data), "--out", str(out)]) == 1
    assert main(["fit-prior", str(tiny_checkpoint), "--data", str(data), "--out", str(out),
                 "--shrinkage", "0"]) == 2


def test_fit_keeps_what_the_codes_span_when_a_larger_rank_is_asked():
    prior = LatentGaussian.fit(_codes(n=4, d=6), rank=6)
    assert prior.rank == 4 and prior.variances[-1] < 1e-10  # 4 centred codes span 3 directions
    w = torch.randn(2, 6)
    np.testing.assert_allclose(prior.from_latent(prior.to_latent(w)).numpy(), w.numpy(),
                               rtol=1e-4, atol=1e-4)


def test_a_fitted_prior_of_one_size_is_dropped_with_a_warning_at_another():
    """generator_for runs a latent-grid model at another size through at_size; the prior
    belongs to the model's own latent, so the model runs there with N(0, I)."""
    from cil.framework import ImageGeometry
    from cil_genreg.experiments.methods import generator_for
    torch.manual_seed(0)
    model = models.build("vae", latent_dim=2 * 8 * 8, image_shape=32, width=4, latent_grid=8)
    model.eval()
    fitted = models.whitened(model, models.fit_latent_prior(model, torch.rand(10, 32, 32)))
    assert generator_for(fitted, ImageGeometry(32, 32)) is fitted
    with pytest.warns(UserWarning, match="standard prior"):
        bigger = generator_for(fitted, ImageGeometry(64, 64))
    assert not isinstance(bigger, WhitenedGenerator) and bigger.image_shape == (64, 64)
