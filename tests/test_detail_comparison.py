"""The comparison harness scores fine detail (HFEN, lung SSIM) in every row without changing
how λ is chosen, and its figure zooms into the lung (or the centre)."""
import numpy as np
import pytest

from cil_genreg.experiments.comparison import SCORES, compare, scores, summarise
from cil_genreg.experiments.reports import comparison_figure, format_table, zoom_region
from test_detail_metrics import _phantom


def test_every_row_and_the_summary_carry_the_detail_scores():
    images = np.stack([_phantom(32, 0), _phantom(32, 1)])
    out = compare(images, None, angles=12, methods=("fbp", "tv"), lambdas={"tv": (0.01, 0.3)},
                  iterations=10, progress=False, noise=0.02)
    for row in out["rows"]:
        assert set(SCORES) <= set(row)
        assert np.isfinite(row["hfen"]) and row["hfen"] >= 0
    best = [r for r in out["rows"] if r["choice"] == "best"]
    grid = out["grid"]
    for r in best:  # "best" stays the best PSNR of the grid, whatever HFEN says
        mine = [g for g in grid if g["image"] == r["image"] and g["method"] == r["method"]]
        assert r["psnr"] == max(g["psnr"] for g in mine)
    table = format_table(out["summary"])
    assert "HFEN" in table and "lung SSIM" in table


def test_lung_ssim_is_nan_without_lungs_and_the_summary_skips_nan():
    truth = np.zeros((32, 32), np.float32)
    truth[10:20, 12:16] = 1.0
    s = scores(truth, truth, None)
    assert s["psnr"] > 100 and s["hfen"] == 0 and np.isnan(s["lung_ssim"])
    rows = [dict(geometry="parallel", angles=10, method="tv", choice="best", lam=1.0,
                 psnr=20.0, ssim=0.5, hfen=0.3, lung_ssim=v) for v in (np.nan, 0.6)]
    summary = summarise(rows)
    assert summary[0]["lung_ssim"] == pytest.approx(0.6)
    assert np.isnan(summarise(rows[:1])[0]["lung_ssim"])


def test_zoom_region_is_in_the_lung_or_the_centre_and_the_figure_is_written(tmp_path):
    truth = _phantom(64)
    (r0, r1, c0, c1), where = zoom_region(truth)
    assert where == "lung" and r1 - r0 == c1 - c0 == 16
    from cil_genreg.utilities.metrics import lung_mask
    assert lung_mask(truth)[(r0 + r1) // 2, (c0 + c1) // 2]
    assert zoom_region(np.zeros((64, 64)))[1] == "centre"
    assert zoom_region(np.zeros((64, 64)))[0] == (24, 40, 24, 40)
    examples = {"truth": truth, "data": np.ones((8, 91)), "initial_label": "FBP",
                "recons": {"fbp": truth + 0.05, "tv*": truth}}
    path = comparison_figure(examples, str(tmp_path / "f.png"), "test")
    assert (tmp_path / "f.png").stat().st_size > 1000 and path.endswith("f.png")
