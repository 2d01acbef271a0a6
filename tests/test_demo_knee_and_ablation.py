"""The knee demo on fastMRI-like files and the starts ablation, on tiny configurations.

(The shapes, knee-without-data and slice-wise volume demos are tested in test_demo_comparisons.py.)"""
import csv
import json
import math

import h5py
import numpy as np
import pytest

from cil_genreg import datasets

from demo_helpers import best_psnr, load_demo, write_fastmri


def _knee_slices(n, seed=123):
    """Non-empty 32 x 32 shapes standing in for knee slices (written upsampled to 320 x 320)."""
    images = datasets.shapes(4 * n + 4, size=32, seed=seed)
    return images[images.reshape(len(images), -1).max(axis=1) > 0][:n]


def test_knee_demo_runs_on_fastmri_files_and_soft_beats_fbp(tmp_path, tiny_checkpoint, capsys):
    # tiny_checkpoint: an untrained 28 x 28 VAE saved by models.save (conftest); this checks the
    # pipeline (files -> slices -> projector -> methods -> tables, figure), not the prior: soft
    # beats FBP by ~7 dB here with or without training, latent does not (its PSNR is only finite)
    data, out = tmp_path / "knee_singlecoil_val", tmp_path / "out"
    data.mkdir()
    write_fastmri(data / "file1000001.h5", _knee_slices(2), edge=1)
    # 2 slices once the edge ones are dropped, 3 asked for: the demo uses the 2, with a note
    result = load_demo("knee_tomography").main(
        ["--data", str(data), "--model", str(tiny_checkpoint), "--size", "28", "--n", "3",
         "--skip-edge-slices", "1", "--angles", "10", "--iterations", "15",
         "--methods", "fbp", "latent", "soft", "--lambdas", '{"latent": [1], "soft": [3, 10]}',
         "--out", str(out), "--quiet"])
    assert "hold only 2 slice(s)" in capsys.readouterr().err
    for ext in ("csv", "json", "png"):
        assert (out / f"knee_parallel_10.{ext}").stat().st_size > 0
    with open(out / "knee_parallel_10.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["method"] for r in rows} == {"fbp", "latent", "soft"}
    assert all(math.isfinite(float(r["psnr"])) for r in rows)
    summary = result["summary"]
    assert best_psnr(summary, "soft") > best_psnr(summary, "fbp") + 3
    saved = json.loads((out / "summary.json").read_text())
    assert saved["n"] == 2 and saved["model"] == str(tiny_checkpoint)


def _kspace_only(path):
    with h5py.File(path, "w") as f:  # fastMRI's knee test set: no reconstructions
        f.create_dataset("kspace", data=np.zeros((3, 8, 8), np.complex64))


@pytest.mark.parametrize("case,says", [
    ("test set", "fastMRI's test (and challenge) set ships k-space only; use the single-coil "
                 "*val* or *train* files"),
    ("not hdf5", "is not a readable HDF5 file"),
    ("no slices left", "hold no slices in the selection slices[10:-10]"),
])
def test_knee_demo_bad_files_are_a_message_and_status_2(tmp_path, capsys, case, says):
    path = tmp_path / "file1000001.h5"
    if case == "test set":
        _kspace_only(path)
    elif case == "not hdf5":
        path.write_bytes(b"<html>Access denied</html>")
    else:  # 4 slices, 10 dropped at each end by default
        write_fastmri(path, _knee_slices(4))
    status = load_demo("knee_tomography").main(["--data", str(path), "--model", "unused",
                                                "--out", str(tmp_path / "out")])
    assert status == 2
    err = capsys.readouterr().err
    assert err.startswith("knee_tomography: error: ") and says in err
    assert "Traceback" not in err
    if case == "no slices left":
        assert "--skip-edge-slices 10" in err


def test_ablation_help_lists_backend_and_device(capsys):
    with pytest.raises(SystemExit) as exit_:
        load_demo("ablation_starts").main(["--help"])
    printed = capsys.readouterr().out
    assert exit_.value.code == 0
    assert "--backend {astra,tigre}" in printed and "--device {cpu,cuda}" in printed


@pytest.mark.parametrize("options,says", [
    (["--backend", "tigre", "--device", "cuda"], "needs TIGRE"),
    (["--device", "cuda"], "use --device cpu"),
])
def test_ablation_without_tigre_or_cuda_is_a_clear_error(tmp_path, capsys, options, says):
    import importlib.util

    import torch
    if options[0] == "--backend" and importlib.util.find_spec("tigre") is not None:
        pytest.skip("TIGRE is installed here")
    if options == ["--device", "cuda"] and torch.cuda.is_available():
        import astra
        if astra.use_cuda():
            pytest.skip("CUDA works here, in torch and ASTRA")
    status = load_demo("ablation_starts").main(options + ["--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert status == 1 and err.startswith("error: ") and says in err
    assert "Traceback" not in err and not (tmp_path / "ablation.csv").exists()


def test_ablation_runs_with_backend_and_device_passed_through(tmp_path, tiny_checkpoint,
                                                              monkeypatch):
    # a smoke run (untrained tiny VAE, 1 digit, 2 iterations) recording what reaches the
    # projector, the FBP and the generative methods
    from cil_genreg.physics import forward
    from cil_genreg.experiments import methods
    seen = []

    def spy(name):
        module = methods if name == "reconstruct" else forward
        real = getattr(module, name)

        def wrapped(*args, **kwargs):
            seen.append((name, args[2:4] if name != "reconstruct" else kwargs.get("device")))
            return real(*args, **kwargs)
        monkeypatch.setattr(module, name, wrapped)

    for name in ("make_projector", "initial_reconstruction", "reconstruct"):
        spy(name)
    result = load_demo("ablation_starts").main(
        ["--n", "1", "--geometry", "parallel", "--iterations", "2", "--restarts", "0",
         "--model", str(tiny_checkpoint), "--backend", "astra", "--device", "cpu",
         "--out", str(tmp_path), "--quiet"])
    assert ("make_projector", ("astra", "cpu")) in seen
    assert ("initial_reconstruction", ("astra", "cpu")) in seen
    assert [d for name, d in seen if name == "reconstruct"].count("cpu") == 4  # the soft runs
    variants = {s["variant"] for s in result["summary"]}
    assert len(variants) == 11 and "soft from TV, 4 restarts, 3x inner" in variants
    assert all(math.isfinite(s["psnr"]) for s in result["summary"])
    saved = json.loads((tmp_path / "ablation.json").read_text())
    assert saved["args"]["backend"] == "astra" and saved["args"]["device"] == "cpu"
    assert (tmp_path / "ablation.csv").stat().st_size > 0
