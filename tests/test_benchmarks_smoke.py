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


def test_bench_ct_speed(tmp_path):
    out = tmp_path / "ct_speed.json"
    r = bench("bench_ct_speed").main(["--quick", "--threads", "1", "--out", str(out)])
    assert out.exists() and [s["size"] for s in r["sizes"]] == [64, 128]
    for s in r["sizes"]:
        assert finite(s["tv"]["best"]["seconds"], s["tv"]["best"]["psnr"])
        assert set(s["soft"]) == {"demo", "inner2"} == set(s["verdicts"])
        for v in s["soft"].values():
            assert finite(v["best"]["seconds"], v["best"]["psnr"], v["ratio_to_tv"])
    assert r["misses"] == sum(not v["met"] for s in r["sizes"] for v in s["verdicts"].values())


def test_bench_ct_slab(tmp_path):
    out = tmp_path / "ct_slab.json"
    r = bench("bench_ct_slab").main(["--quick", "--threads", "1", "--out", str(out)])
    assert out.exists() and r["slab"]["shape"] == [2, 64, 64]
    for name in ("tv", "soft", "fbp"):
        m = r["methods"][name]
        assert finite(m["seconds_per_slice"], m["volume_300_seconds"], m["psnr_mean"])
        assert len(m["psnr_slices"]) == 2
    assert r["methods"]["soft"]["psnr_mean"] > r["methods"]["fbp"]["psnr_mean"]


def test_bench_ct_slab_cuda_wiring_with_cpu_stand_ins(tmp_path, monkeypatch):
    """--device cuda: ASTRA's projector and FBP and the generator are asked for CUDA (the
    stand-ins record it and run on the CPU)."""
    from cil_genreg.experiments import methods
    from cil_genreg.physics import forward
    asked = []
    real = forward.make_projector, forward.initial_reconstruction, methods.reconstruct
    monkeypatch.setattr(forward, "check_backend", lambda backend, device: None)
    monkeypatch.setattr(forward, "make_projector", lambda ig, ag, backend, device: (
        asked.append(("projector", backend, device)), real[0](ig, ag, backend, "cpu"))[1])
    monkeypatch.setattr(forward, "initial_reconstruction", lambda A, y, backend, device: (
        asked.append(("fbp", backend, device)), real[1](A, y, backend, "cpu"))[1])

    def reconstruct(method, *args, device=None, precision="float32", **options):
        asked.append((method, device, precision))
        return real[2](method, *args, **options)
    monkeypatch.setattr(methods, "reconstruct", reconstruct)
    bench("bench_ct_slab").main(["--quick", "--device", "cuda", "--threads", "1",
                                 "--out", str(tmp_path / "gpu.json")])
    assert asked == [("projector", "astra", "cuda"), ("fbp", "astra", "cuda"),
                     ("tv", None, "float32"), ("soft", "cuda", "float32")]


def test_bench_ct_slab_on_cuda_without_a_gpu_says_how_to_run_on_the_cpu(tmp_path):
    import torch
    from cil_genreg.utilities.validation import DeviceUnavailableError
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(DeviceUnavailableError, match="--device cpu"):
        bench("bench_ct_slab").main(["--quick", "--device", "cuda", "--out", ""])


@pytest.mark.parametrize("name", ["bench_soft", "bench_range"])
def test_digit_benchmarks_draw_new_digits_with_a_seed(tmp_path, name):
    r = bench(name).main(["--digits", "1", "--quick", "--digit-seed", "11", "--out",
                          str(tmp_path / "r.json"), *COMMON])
    assert "held_out_digits(1, seed=11)" in r["data"]
