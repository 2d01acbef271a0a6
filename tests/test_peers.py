"""The learned peers of the generative methods, end to end on tiny models: `cil-genreg train
--model denoiser | postprocess`, the methods 'pnp', 'dpir' and 'postprocess' in the comparison
harness,
and the post-processing network's warning on a geometry it was not trained for."""
import warnings

import numpy as np
import pytest

from cil_genreg import models
from cil_genreg.cli import main as cli_main
from cil_genreg.experiments import methods
from cil_genreg.experiments.comparison import compare
from cil_genreg.physics.forward import add_noise, make_geometry, make_projector

TINY = ["--data", "shapes", "--size", "32", "--n", "24", "--epochs", "1", "--batch-size", "8",
        "--width", "4", "--quiet"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny denoiser and a tiny post-processing network (8 angles, parallel), via the CLI."""
    out = tmp_path_factory.mktemp("peers")
    denoiser, post = str(out / "denoiser.safetensors"), str(out / "post.safetensors")
    assert cli_main(["train", "--model", "denoiser", "--sigma-range", "0.01", "0.1",
                     "--out", denoiser] + TINY) == 0
    assert cli_main(["train", "--model", "postprocess", "--geometry", "parallel", "--angles",
                     "8", "--noise", "0.02", "--out", post] + TINY) == 0
    return denoiser, post


def test_cli_trains_both_and_their_checkpoints_say_what_they_are(trained):
    denoiser, post = trained
    d = methods.load_model(denoiser, "denoiser")
    assert isinstance(d, models.DRUNetDenoiser) and d.metadata["sigma_range"] == [0.01, 0.1]
    assert d.metadata["training_seconds"] > 0 and "held_out_denoising_psnr_db" in d.metadata
    p = methods.load_model(post, "postprocess")
    assert p.metadata["geometry"] == {"type": "parallel", "angles": 8, "span": 180.0,
                                      "size": 32, "panel": 47, "physics": "gaussian",
                                      "noise": 0.02}
    with pytest.raises(models.CheckpointError, match="post-processing network .* not a "
                                                     "Plug-and-Play denoiser"):
        methods.load_model(post, "denoiser")
    with pytest.raises(models.CheckpointError, match="not a generator"):
        methods.load_generator(post)


def _data(angles, geometry="parallel"):
    from cil_genreg import datasets
    truth_image = datasets.shapes(1, size=32, seed=7)[0]
    ig, ag = make_geometry(32, angles, geometry)
    A = make_projector(ig, ag)
    truth = ig.allocate(None)
    truth.fill(truth_image)
    y, _ = add_noise(A.direct(truth), 0.02, 0)
    return A, y


def test_postprocess_warns_on_another_geometry_and_still_returns(trained):
    net = methods.load_model(trained[1], "postprocess")
    A, y = _data(8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same = methods.reconstruct("postprocess", A, y, None, postprocessor=net)
    assert same.shape == (32, 32) and np.isfinite(same.as_array()).all()
    A, y = _data(4, "limited")
    with pytest.warns(UserWarning, match=r"trained for parallel beam, 8 angles over 180°, "
                                         r"32² images, Gaussian noise 2% \(inverse crime\) and "
                                         r"is applied to parallel beam, 4 angles over 90°"):
        other = methods.reconstruct("postprocess", A, y, None, postprocessor=net)
    assert other.shape == (32, 32)


def test_comparison_runs_pnp_and_dpir_over_their_grids_and_postprocess_once(trained):
    denoiser = methods.load_model(trained[0], "denoiser")
    post = methods.load_model(trained[1], "postprocess")
    from cil_genreg import datasets
    result = compare(datasets.shapes(1, size=32, seed=3), None, angles=8,
                     methods=("fbp", "tv", "pnp", "dpir", "postprocess"), iterations=5,
                     lambdas={"tv": (1.0,), "pnp": (0.3, 3.0), "dpir": (0.01, 0.1)},
                     progress=False,
                     denoiser=denoiser, postprocessor=post, noise=0.02)
    rows = {(r["method"], r["choice"]) for r in result["summary"]}
    assert ("postprocess", "initial") in rows and ("pnp", "best") in rows
    assert ("dpir", "discrepancy") in rows and ("dpir", "best") in rows
    assert {g["lam"] for g in result["grid"] if g["method"] == "pnp"} == {0.3, 3.0}
    assert {g["lam"] for g in result["grid"] if g["method"] == "dpir"} == {0.01, 0.1}
    for method in ("pnp", "dpir"):
        with pytest.raises(ValueError, match=f"method '{method}' needs a denoiser"):
            compare(datasets.shapes(1, size=32, seed=3), None, angles=8, methods=(method,),
                    iterations=2, progress=False)


def test_bad_training_options_are_refused(tmp_path, capsys):
    out = str(tmp_path / "d.safetensors")
    assert cli_main(["train", "--model", "denoiser", "--sigma-range", "0.1", "0.0",
                     "--out", out] + TINY) != 0
    assert "sigma_range" in capsys.readouterr().err
    assert cli_main(["train", "--model", "postprocess", "--angles", "0", "--out", out]
                    + TINY) == 2


def test_ct_demo_adds_the_peers_and_times_them(trained, tmp_path):
    import json

    from demo_helpers import load_demo
    demo = load_demo("ct_tomography")
    with pytest.warns(UserWarning, match="trained for parallel beam, 8 angles over 180°"):
        result = demo.main(["--n", "1", "--size", "32", "--angles", "8", "--iterations", "3",
                            "--geometry", "parallel", "limited", "--methods", "fbp", "tv",
                            "--lambdas", '{"tv": [10], "soft": [30], "pnp": [1], "dpir": [0.1]}',
                            "--denoiser", trained[0], "--postprocess", trained[1],
                            "--quiet", "--out", str(tmp_path)])
    methods_run = {(s["geometry"], s["method"]) for s in result["summary"]}
    for geometry in ("parallel", "limited"):
        assert {(geometry, "pnp"), (geometry, "dpir"), (geometry, "postprocess")} <= methods_run
    timing = json.loads((tmp_path / "ct_timing.json").read_text())
    assert {"soft_seconds", "pnp_seconds", "dpir_seconds", "postprocess_seconds"} <= set(timing)
    assert set(timing["training_seconds"]) >= {"pnp", "dpir", "postprocess"}
