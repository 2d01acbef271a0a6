"""The command line (issue 9): nothing a user saved is lost, and every bad input gets one
``error:`` line (no traceback) and a non-zero exit status: 2 for a value out of range, 1 for
input the command refuses."""
import hashlib
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cil_genreg import datasets, models
from cil_genreg.physics import forward
from cil_genreg.utilities import metrics
from cil_genreg.cli import main
from cil_genreg.utilities.output_safety import OutputLock

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--model", "ae", "--latent-dim", "2", "--width", "2", "--batch-size", "20",
        "--quiet", "--threads", "1"]


def digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def fails(capsys, argv, status=None):
    """Run the CLI; assert it failed with one ``error:`` line and no traceback; the line."""
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0 and (status is None or code == status), (code, err)
    assert "Traceback" not in err and len(lines) == 1 and ": error: " in lines[0], err
    return lines[0]


@pytest.fixture(scope="module")
def sino(tmp_path_factory):
    d = tmp_path_factory.mktemp("rel_sino")
    ig, ag = forward.make_geometry(28, 10)
    A = forward.make_projector(ig, ag)
    x = ig.allocate(None)
    x.fill(datasets.held_out_digits(1, seed=1)[0])
    np.save(d / "sino.npy", A.direct(x).as_array())
    np.save(d / "angles.npy", ag.angles)
    return d


def recon(sino, *extra, method="fbp", out=None):
    return (["reconstruct", "--method", method, "--data", sino / "sino.npy", "--quiet",
             "--out", out or sino / "never.npy"] + list(extra))


# -- reconstruct -------------------------------------------------------------------------------
def test_reconstruct_refuses_its_input_and_existing_files(sino, tmp_path, capsys):
    data = sino / "sino.npy"
    before = digest(data)
    for flags in ([], ["--overwrite"]):
        line = fails(capsys, recon(sino, "--angles-deg", "10", out=data) + flags, 1)
        assert "also an input" in line
    assert digest(data) == before
    out = tmp_path / "x.npy"
    np.save(out, np.arange(3))
    kept = digest(out)
    assert "exists" in fails(capsys, recon(sino, "--angles-deg", "10", out=out), 1)
    assert digest(out) == kept
    # positive control: a valid reconstruct, and --overwrite replaces what it is asked to
    assert main([str(a) for a in recon(sino, "--angles-deg", "10", "--image-size", "28",
                                       "--overwrite", out=out)]) == 0
    assert np.load(out).shape == (28, 28)


def test_reconstruct_out_checked_before_any_computation(sino, tmp_path, capsys):
    corrupt = tmp_path / "bad.nxs"
    corrupt.write_bytes(b"\x89HDF junk" * 50)
    folder = tmp_path / "folder"
    folder.mkdir()
    argv = ["reconstruct", "--method", "fbp", "--data", corrupt, "--quiet"]
    assert "is a folder" in fails(capsys, argv + ["--out", folder], 1)
    (tmp_path / "afile").write_text("x")
    assert "which is a file" in fails(capsys, argv + ["--out", tmp_path / "afile" / "x.npy"], 1)
    assert ".npy, .tif" in fails(capsys, argv + ["--out", tmp_path / "x.jpg"], 1)
    assert "not a readable CIL NeXus" in fails(capsys, argv + ["--out", tmp_path / "x.npy"], 1)
    assert not (tmp_path / "x.npy").exists()


@pytest.mark.parametrize("values, message", [
    ([0, 10, float("nan")], "NaN or infinite"),
    ([0, float("inf"), 30], "NaN or infinite"),
    (np.radians(np.linspace(0, 180, 10, endpoint=False)), "look like radians"),
])
def test_reconstruct_bad_angles(sino, tmp_path, capsys, values, message):
    path = tmp_path / "angles.npy"
    np.save(path, np.asarray(values, np.float32))
    assert message in fails(capsys, recon(sino, "--angles", path), 1)


def test_radian_angles_work_when_the_unit_is_given(sino, tmp_path):
    path = tmp_path / "rad.npy"
    np.save(path, np.radians(np.load(sino / "angles.npy")))
    out = tmp_path / "x.npy"
    assert main([str(a) for a in recon(sino, "--angles", path, "--angles-unit", "radian",
                                       "--image-size", "28", out=out)]) == 0
    assert np.isfinite(np.load(out)).all()


@pytest.mark.parametrize("method", ["fbp", "tv"])
def test_reconstruct_nan_in_the_sinogram(sino, tmp_path, capsys, method):
    bad = np.load(sino / "sino.npy")
    bad[2, 3] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    argv = ["reconstruct", "--method", method, "--data", tmp_path / "nan.npy",
            "--angles-deg", "10", "--out", tmp_path / "x.npy", "--quiet"]
    assert "1 NaN or infinite" in fails(capsys, argv, 1)


@pytest.mark.parametrize("option", [
    ["--lam", "0"], ["--lam", "-1"], ["--lam", "nan"], ["--lam", "1", "inf"],
    ["--iterations", "0"], ["--image-size", "0"], ["--angles-deg", "0"], ["--angles-deg", "-3"],
    ["--sigma", "-1"], ["--panel", "0"]])
@pytest.mark.parametrize("method", ["fbp", "soft"])
def test_reconstruct_values_out_of_range(sino, capsys, option, method):
    argv = recon(sino, method=method) + (["--angles-deg", "10"] if "--angles-deg" not in option
                                         else []) + option
    line = fails(capsys, argv, 2)
    assert option[0] in line and "must be" in line


def test_reconstruct_model_that_does_not_fit_the_panel(tmp_path, capsys):
    np.save(tmp_path / "narrow.npy", np.zeros((10, 21), np.float32))
    argv = ["reconstruct", "--method", "soft", "--model", "mnist-vae", "--data",
            tmp_path / "narrow.npy", "--angles-deg", "10", "--out", tmp_path / "x.npy"]
    assert "28x28 image does not fit the 21-pixel panel" in fails(capsys, argv, 1)


def test_reconstruct_checks_its_geometry_and_model_before_computing(sino, tmp_path, capsys):
    np.save(tmp_path / "one.npy", np.array([5.0, 50.0]))
    line = fails(capsys, recon(sino, "--angles", tmp_path / "one.npy"), 1)
    assert "holds 2 angle(s) but the sinogram has 10 rows" in line
    line = fails(capsys, recon(sino, "--angles-deg", "10", "--image-size", "20",
                               method="soft"), 1)
    assert "--image-size 20 but the model 'mnist-vae' makes 28x28 images" in line
    assert "is not a device" in fails(capsys, recon(sino, "--angles-deg", "10", "--device",
                                                    "gpu"), 2)


def test_reconstruct_fan_beam_with_an_angles_file(tmp_path):
    ig, ag = forward.make_geometry(28, 12, "fan")
    A = forward.make_projector(ig, ag)
    x = ig.allocate(None)
    x.fill(datasets.held_out_digits(1, seed=2)[0])
    np.save(tmp_path / "fan.npy", A.direct(x).as_array())
    np.save(tmp_path / "angles.npy", ag.angles)
    argv = ["reconstruct", "--method", "fbp", "--geometry", "fan", "--data",
            tmp_path / "fan.npy", "--angles", tmp_path / "angles.npy", "--image-size", "28",
            "--out", tmp_path / "fan_fbp.npy", "--quiet"]
    assert main([str(a) for a in argv]) == 0
    image = np.load(tmp_path / "fan_fbp.npy")
    assert metrics.psnr(image, x.as_array()) > 12


# -- train ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def images(tmp_path_factory):
    path = tmp_path_factory.mktemp("rel_train") / "imgs.npy"
    np.save(path, datasets.shapes(40, size=16, seed=0))
    return path


@pytest.mark.parametrize("option", [
    ["--batch-size", "0"], ["--epochs", "0"], ["--epochs", "-2"], ["--width", "0"],
    ["--val-fraction", "0"], ["--val-fraction", "1"], ["--val-fraction", "1.5"],
    ["--val-fraction", "nan"], ["--beta", "-0.1"], ["--threads", "0"], ["--lr", "nan"],
    ["--lr", "0"], ["--latent-dim", "0"]])
def test_train_values_out_of_range(images, tmp_path, capsys, option):
    argv = ["train", "--data", images, "--out", tmp_path / "m.safetensors"] + TINY + option
    line = fails(capsys, argv, 2)
    assert option[0] in line and "must be" in line
    assert os.listdir(tmp_path) == []


def test_train_resume_without_state_never_loses_the_trained_model(images, tmp_path, capsys):
    out = tmp_path / "m.safetensors"
    base = ["train", "--data", str(images), "--out", str(out)] + TINY
    assert main(base + ["--epochs", "2"]) == 0
    os.remove(str(out) + ".state.pt")
    trained = digest(out)
    capsys.readouterr()
    assert main(base + ["--epochs", "2", "--resume"]) == 0
    err = capsys.readouterr().err
    assert "continuing from its weights (epoch 2)" in err
    assert digest(out) == trained  # already trained for 2 epochs: left as it was
    assert main(base + ["--epochs", "3", "--resume"]) == 0
    assert models.load(out).metadata["epochs"] == 3  # continued, not restarted from epoch 0


def test_train_lock_refuses_a_second_run_and_takes_over_a_stale_one(images, tmp_path, capsys):
    out = tmp_path / "m.safetensors"
    argv = ["train", "--data", images, "--out", out, "--epochs", "1"] + TINY
    with OutputLock(out):  # a live run (this process) holds the lock
        line = fails(capsys, argv, 1)
    assert "being written by another run" in line and str(os.getpid()) in line
    assert not out.exists()
    done = subprocess.run(["true"])
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / "m.safetensors.lock").write_text(f"{dead.pid} {socket.gethostname()}\n")
    assert done.returncode == 0 and main([str(a) for a in argv]) == 0
    assert out.exists() and not (tmp_path / "m.safetensors.lock").exists()


def test_lock_files_of_other_hosts_are_kept_and_empty_old_ones_taken_over(tmp_path):
    from cil_genreg.utilities.output_safety import EMPTY_LOCK_GRACE_S, OutputLockedError
    out = tmp_path / "m.safetensors"
    lock = tmp_path / "m.safetensors.lock"
    lock.write_text("1 another-host\n")  # cannot tell whether it runs: refused
    with pytest.raises(OutputLockedError, match="pid 1 on another-host"):
        OutputLock(out).acquire()
    lock.write_text("")  # a crash between creating and writing it, long ago
    old = os.path.getmtime(lock) - 2 * EMPTY_LOCK_GRACE_S
    os.utime(lock, (old, old))
    with OutputLock(out) as held:
        assert lock.read_text().split()[0] == str(os.getpid()) and held.took_over is None
    assert not lock.exists()


def test_train_refuses_an_existing_checkpoint_before_loading_data(tmp_path, capsys):
    out = tmp_path / "m.safetensors"
    out.write_bytes(b"precious")
    argv = ["train", "--data", tmp_path / "missing.npy", "--out", out] + TINY
    assert "--resume" in fails(capsys, argv, 1)
    assert out.read_bytes() == b"precious"
    folder = tmp_path / "dir"
    folder.mkdir()
    argv = ["train", "--data", tmp_path / "missing.npy", "--out", folder] + TINY
    assert "is a folder" in fails(capsys, argv, 1)


def test_train_stops_when_the_weights_become_nan(images, tmp_path, capsys):
    out = tmp_path / "m.safetensors"
    argv = ["train", "--data", images, "--out", out, "--epochs", "2", "--lr", "1e6"] + TINY
    line = fails(capsys, argv, 1)
    assert "diverged" in line and "--lr" in line
    assert not out.exists()


def _png(path, array, mode=None):
    Image.fromarray(array, mode).save(path)


def test_train_image_folders(tmp_path, capsys):
    good = (np.random.default_rng(0).random((16, 16)) * 255).astype(np.uint8)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    _png(corrupt / "a.png", good)
    _png(corrupt / "b.png", good)
    data = (corrupt / "b.png").read_bytes()
    (corrupt / "b.png").write_bytes(data[:len(data) // 2])
    base = ["train", "--epochs", "1", "--out"]
    line = fails(capsys, base + [tmp_path / "c.safetensors", "--data", corrupt] + TINY, 1)
    assert "b.png" in line and "truncated or corrupt" in line
    tiff = tmp_path / "tiff"
    tiff.mkdir()
    (tiff / "x.tif").write_bytes(b"II*\x00" + b"\x00" * 20)
    line = fails(capsys, base + [tmp_path / "t.safetensors", "--data", tiff] + TINY, 1)
    assert "x.tif" in line
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    _png(mixed / "a.png", good)
    _png(mixed / "b.png", good.astype(np.uint16) * 200)
    line = fails(capsys, base + [tmp_path / "m.safetensors", "--data", mixed] + TINY, 1)
    assert "mix bit depths" in line
    constant = tmp_path / "constant"
    constant.mkdir()
    for name in "abc":
        _png(constant / f"{name}.png", np.full((16, 16), 77, np.uint8))
    line = fails(capsys, base + [tmp_path / "k.safetensors", "--data", constant] + TINY, 1)
    assert "nothing to learn" in line
    assert not any(tmp_path.glob("*.safetensors"))


# -- evaluate-model / demo -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    import torch
    d = tmp_path_factory.mktemp("rel_ckpt")
    torch.manual_seed(0)
    g = models.build("vae", latent_dim=2, image_shape=16, width=2).eval()
    good = models.save(g, d / "g.safetensors", {"note": "tiny"})
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file
    tensors = load_file(good)
    tensors["decoder.fc.bias"][0] = float("nan")
    with safe_open(good, "pt") as f:
        save_file(tensors, d / "nan.safetensors", metadata=f.metadata())
    return d


@pytest.mark.parametrize("option", [["--n", "0"], ["--steps", "0"], ["--reg", "-1"],
                                    ["--lr", "0"]])
def test_evaluate_model_values_out_of_range(checkpoint, tmp_path, capsys, option):
    argv = ["evaluate-model", checkpoint / "g.safetensors", "--data", "shapes", "--out",
            tmp_path / "ev", "--quiet"] + option
    assert option[0] in fails(capsys, argv, 2)


def test_evaluate_model_nan_model_and_existing_report(checkpoint, tmp_path, capsys):
    argv = ["evaluate-model", checkpoint / "nan.safetensors", "--data", "shapes", "--n", "4",
            "--steps", "2", "--out", tmp_path / "ev", "--quiet"]
    assert "NaN or Inf" in fails(capsys, argv, 1)
    report = tmp_path / "ev" / "report.json"
    report.parent.mkdir()
    report.write_text('{"mine": 1}')
    argv[1] = checkpoint / "g.safetensors"
    line = fails(capsys, argv, 1)
    assert "report.json" in line and "--overwrite" in line
    assert report.read_text() == '{"mine": 1}'
    assert "also an input" in fails(capsys, ["evaluate-model", report, "--data", "shapes",
                                             "--out", tmp_path / "ev", "--overwrite"], 1)
    assert report.read_text() == '{"mine": 1}'


@pytest.mark.parametrize("option", [["--n", "0"], ["--angles", "0"], ["--angles", "10", "-1"],
                                    ["--iterations", "0"]])
def test_demo_values_out_of_range(tmp_path, capsys, option):
    assert option[0] in fails(capsys, ["demo", "--out", tmp_path, "--quiet"] + option, 2)


def test_demo_refuses_earlier_outputs_and_nan_models(checkpoint, tmp_path, capsys):
    table = tmp_path / "mnist_parallel_10.csv"
    table.write_text("precious")
    argv = ["demo", "--out", tmp_path, "--angles", "10", "--n", "1", "--iterations", "2",
            "--methods", "fbp", "--quiet"]
    assert "mnist_parallel_10.csv" in fails(capsys, argv, 1)
    assert table.read_text() == "precious"
    (tmp_path / "file").write_text("x")
    assert "is a file" in fails(capsys, ["demo", "--out", tmp_path / "file", "--quiet"], 1)
    argv = ["demo", "--out", tmp_path / "new", "--angles", "10", "--n", "1", "--iterations",
            "2", "--methods", "fbp", "soft", "--model", checkpoint / "nan.safetensors",
            "--quiet"]
    assert "NaN or Inf" in fails(capsys, argv, 1)


def test_demo_scripts_refuse_earlier_outputs(tmp_path, capsys):
    sys.path.insert(0, os.path.join(ROOT, "demos"))
    try:
        import mnist_tomography
    finally:
        sys.path.pop(0)
    (tmp_path / "summary.json").write_text("precious")
    from cil_genreg.cli import script_status
    status = script_status(mnist_tomography.main, ["--out", str(tmp_path), "--angles", "10",
                                                   "--quick", "--quiet"])
    err = capsys.readouterr().err
    assert status == 1 and "summary.json" in err and "Traceback" not in err
    assert (tmp_path / "summary.json").read_text() == "precious"


# -- the entry point itself ------------------------------------------------------------------------
def test_entry_point_exit_status_and_one_line(tmp_path):
    """``python -m cil_genreg.cli``: an expected refusal is one line, status 1, no traceback
    (usage errors, status 2, are checked in-process above)."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    run = subprocess.run([sys.executable, "-m", "cil_genreg.cli", "evaluate-model",
                          str(tmp_path / "none.safetensors"), "--data", "shapes", "--out",
                          str(tmp_path / "ev")], capture_output=True, text=True, env=env)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 1 and len(lines) == 1, run.stderr
    assert lines[0].startswith("cil-genreg evaluate-model: error: ")
    assert "neither a checkpoint file nor one of the pretrained" in lines[0]


def test_usage_errors_are_one_line_with_status_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--epochs", "abc"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "--epochs" in err and "see cil-genreg train --help" in err


def test_bugs_keep_their_traceback(monkeypatch, tmp_path):
    from cil_genreg.commands import evaluate_model

    def broken(args):
        raise KeyError("a bug")

    monkeypatch.setattr(evaluate_model, "run", broken)
    with pytest.raises(KeyError, match="a bug"):
        main(["evaluate-model", "x", "--data", "shapes", "--out", str(tmp_path)])
