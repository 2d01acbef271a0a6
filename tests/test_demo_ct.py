"""demos/ct_tomography.py on real CT slices of an unseen patient (scanner physics, the default)
and of the chest's held-out block (the inverse crime, on request): outputs written, TV beats
FBP, and a second run into the same folder is refused before any work unless --overwrite."""
import pytest

from demo_helpers import best_psnr, load_demo

ARGS = ["--n", "1", "--angles", "30", "--iterations", "3", "--methods", "fbp", "tv",
        "--lambdas", '{"tv": [10], "soft": [30]}', "--full-size", "--quiet",
        "--full-lambdas", '{"tv": [100]}']


def test_ct_demo_writes_both_sizes_and_refuses_to_overwrite(tmp_path):
    demo = load_demo("ct_tomography")
    result = demo.main(ARGS + ["--out", str(tmp_path)])
    for name in ("ct128_lung1_dose1e4_parallel_30", "ct512_patches_lung1_dose1e4_parallel_30"):
        for ext in ("csv", "json", "png"):
            assert (tmp_path / f"{name}.{ext}").stat().st_size > 0
    assert (tmp_path / "ct_timing.json").is_file()
    assert best_psnr(result["summary"], "tv") > best_psnr(result["summary"], "fbp")
    import csv
    with open(tmp_path / "ct512_patches_lung1_dose1e4_parallel_30.csv") as f:  # the 512² grid, not 128²'s
        assert {r["lam"] for r in csv.DictReader(f) if r["method"] == "tv"} == {"100.0"}
    before = (tmp_path / "ct_timing.json").read_bytes()
    with pytest.raises(FileExistsError, match="--overwrite"):
        demo.main(ARGS + ["--out", str(tmp_path)])
    assert (tmp_path / "ct_timing.json").read_bytes() == before


def test_ct_demo_keeps_the_inverse_crime_on_request_named_as_such(tmp_path):
    demo = load_demo("ct_tomography")
    result = demo.main(ARGS[:-4] + ["--quiet", "--data", "chest-block", "--physics", "gaussian",
                                    "--out", str(tmp_path)])
    import json
    with open(tmp_path / "summary.json") as f:
        summary = json.load(f)
    assert "inverse crime" in summary["physics"] and "held-out block" in summary["data"]
    assert (tmp_path / "ct128_chest-block_gauss2pct_parallel_30.csv").is_file()
    assert best_psnr(result["summary"], "tv") > best_psnr(result["summary"], "fbp")


def test_ct_demo_weighted_data_term_is_named_and_needs_counts(tmp_path):
    """--data-term weighted writes its own names (the ls tables keep theirs) and says so in
    summary.json; with the inverse crime (no counts) it is refused."""
    demo = load_demo("ct_tomography")
    demo.main(ARGS[:-4] + ["--quiet", "--data-term", "weighted", "--out", str(tmp_path)])
    import json
    with open(tmp_path / "summary.json") as f:
        assert json.load(f)["data_term"] == "weighted"
    assert (tmp_path / "ct128_lung1_dose1e4_weighted_parallel_30.csv").is_file()
    with pytest.raises(ValueError, match="needs photon counts"):
        demo.main(ARGS[:-4] + ["--quiet", "--physics", "gaussian", "--data-term", "weighted",
                               "--out", str(tmp_path / "g")])


def test_regulariser_options_reach_the_generative_regularisers_only():
    """comparison.compare(regulariser_options=...) configures soft / sparse / range / hybrid
    (a bad value is refused by the regulariser itself) and is not given to the latent method
    or TV (which would refuse an unknown keyword)."""
    import numpy as np
    from cil_genreg import models
    from cil_genreg.experiments import comparison
    G = models.build("vae", latent_dim=4, image_shape=16, width=4).eval()
    images = np.random.default_rng(0).random((1, 16, 16)).astype(np.float32)
    bad = {"inexact_max_iteration": 0}
    with pytest.raises(ValueError, match="inexact_max_iteration must be a positive integer"):
        comparison.compare(images, G, angles=8, methods=["tv", "soft"], iterations=2,
                           lambdas={"tv": [1.0], "soft": [1.0]}, progress=False,
                           regulariser_options=bad)
    out = comparison.compare(images, G, angles=8, methods=["tv", "latent"], iterations=2,
                             lambdas={"tv": [1.0], "latent": [1.0]}, progress=False,
                             regulariser_options=bad)
    assert {r["method"] for r in out["rows"]} == {"tv", "latent"}
