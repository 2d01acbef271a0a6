"""Smoke test of the benchmark suite: each benchmark's main runs on a tiny configuration with
an untrained package VAE, and its figures are finite. The benchmarks themselves are run
by hand (see benchmarks/README.md); nothing here is timed."""
import importlib
import math
import sys
from pathlib import Path

import pytest

import cil.plugins.astra  # noqa: E402,F401  (needs CIL: fails, never skips, without it)

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

COMMON = ["--model", "untrained", "--threads", "1"]


def bench(name):
    return importlib.import_module(name)


def finite(*values):
    return all(v is not None and math.isfinite(v) for v in values)


def test_bench_soft(tmp_path):
    out = tmp_path / "soft.json"
    r = bench("bench_soft").main(["--digits", "1", "--quick", "--out", str(out), *COMMON])
    assert out.exists()
    ref = r["digits"][0]["reference"]
    ours = r["digits"][0]["ours_auto"]
    assert finite(ref["final_psnr"], ref["time"], ours["final_psnr"], ours["time"],
                  ours["final_objective"])
    assert ref["final_objective"] < ref["first_objective"]  # the reference PALM descends
    assert all(math.isfinite(v) for v in ours["psnr_trace"])


def test_bench_range(tmp_path):
    out = tmp_path / "range.json"
    r = bench("bench_range").main(["--digits", "1", "--quick", "--out", str(out), *COMMON])
    assert out.exists()
    row = r["digits"][0]
    assert finite(row["csgm"]["final_psnr"], row["csgm"]["time"])
    assert row["csgm"]["final_objective"] < row["csgm"]["first_objective"]
    for m in ("latent", "range"):
        assert finite(row[m]["final_psnr"], row[m]["time"], row[m]["objective"])


def test_bench_profile(tmp_path):
    out = tmp_path / "profile.json"
    r = bench("bench_profile").main(["--quick", "--out", str(out), *COMMON])
    assert out.exists()
    assert finite(r["wall_seconds"], r["share_inside"], r["final_psnr"])
    assert 0.0 < r["share_inside"] <= 1.0
    assert r["final_objective"] < r["first_objective"]
    assert r["hot_spots"]


def test_bench_volume(tmp_path):
    out = tmp_path / "volume.json"
    r = bench("bench_volume").main(["--slices", "3", "--quick", "--skip-memory", "--out",
                                    str(out), *COMMON])
    assert out.exists()
    assert finite(r["speedup"], r["batched_ms_per_slice"], r["loop_ms_per_slice"],
                  r["max_abs_difference"])


def test_bench_threads(tmp_path):
    out = tmp_path / "threads.json"
    rows = bench("bench_threads").main(["--quick", "--models", "untrained", "--threads", "2",
                                        "--out", str(out)])
    assert out.exists() and [r["batch"] for r in rows] == [1, 8]
    assert all(finite(r["one_thread_s"], r["many_threads_s"], r["ratio"]) for r in rows)
    assert [r["auto"] for r in rows] == ["1", "1"]  # 8 digits are 6,272 pixels: one thread


def test_bench_profile_on_a_ct_slice(tmp_path):
    """--ct: a held-out 128² chest slice with the shipped ct-vae-128, started from FBP."""
    out = tmp_path / "profile_ct.json"
    r = bench("bench_profile").main(["--ct", "--quick", "--threads", "1", "--out", str(out)])
    assert r["config"]["model"] == "ct-vae-128" and r["config"]["angles"] == 30
    assert "ct_slices" in r["data"] and 0.0 < r["share_inside"] <= 1.0
    assert finite(r["wall_seconds"], r["final_psnr"]) and r["final_psnr"] > 15.0
