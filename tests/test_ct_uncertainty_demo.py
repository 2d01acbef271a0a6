"""demos/ct_uncertainty.py: its options, its missing-wedge measure, and its output check
(the full run needs ct-vae-128 and minutes: it is run by hand, docs/results.md)."""
import importlib.util
import pathlib

import numpy as np
import pytest

from cil_genreg.physics.forward import initial_reconstruction, make_geometry, make_projector

PATH = pathlib.Path(__file__).resolve().parents[1] / "demos" / "ct_uncertainty.py"


@pytest.fixture(scope="module")
def demo():
    spec = importlib.util.spec_from_file_location("ct_uncertainty", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_options_scale_up(demo):
    args = demo.parse_args(["--n", "20", "--samples", "2000", "--out", "x"])
    assert (args.n, args.samples, args.out, args.angles, args.limited_span) == \
        (20, 2000, "x", 30, 120.0)
    defaults = demo.parse_args([])
    assert defaults.sigma_from == "noise"
    assert defaults.methods == ["latent", "soft"] and defaults.soft_lam == 1000.0
    assert demo.parse_args(["--methods", "soft", "--soft-lam", "300"]).methods == ["soft"]
    ula = demo.parse_args(["--methods", "pnp-ula", "--ula-sigma", "0.05", "--ula-samples", "9"])
    assert ula.methods == ["pnp-ula"] and (ula.ula_sigma, ula.ula_samples) == (0.05, 9)
    assert (defaults.ula_alpha, defaults.ula_thin) == (1.0, 4)


def test_the_limited_angle_error_lies_in_the_missing_wedge(demo):
    n = 64
    yy, xx = np.mgrid[:n, :n] - n / 2
    truth = ((xx / 20) ** 2 + (yy / 12) ** 2 < 1).astype(np.float32) * 0.5
    truth[(xx ** 2 + yy ** 2) < 16] = 1.0
    ig, ag = make_geometry(n, 40, "limited", limited_span=120)
    A = make_projector(ig, ag)
    x = ig.allocate(None)
    x.fill(truth)
    fbp, _ = initial_reconstruction(A, A.direct(x))
    power, area = demo.wedge_fraction(fbp.as_array() - truth, 120)
    assert 0.3 < area < 0.4 and power > area + 0.1


def test_existing_outputs_are_refused_before_anything_runs(demo, tmp_path):
    (tmp_path / "ct_uncertainty.json").write_text("{}")
    with pytest.raises(Exception, match="ct_uncertainty.json"):
        demo.main(["--out", str(tmp_path)])
    assert (tmp_path / "ct_uncertainty.json").read_text() == "{}"


def test_region_coverage_tells_the_edges_from_the_air(demo):
    truth = np.zeros((10, 10))
    truth[2:8, 2:8] = 1.0
    mean = truth.copy()
    mean[2:8, 2] += 0.5  # an edge the mean misses
    std = np.full_like(truth, 0.1)
    regions = demo.region_coverage(truth, mean, std)
    assert regions["coverage_air"] == 1.0
    assert regions["coverage_body"] == pytest.approx(30 / 36)
    assert regions["coverage_worst_decile"] < 0.5
