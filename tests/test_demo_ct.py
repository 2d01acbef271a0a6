"""demos/ct_tomography.py on held-out real CT slices: outputs written, TV beats FBP, and a
second run into the same folder is refused before any work unless --overwrite."""
import pytest

from demo_helpers import best_psnr, load_demo

ARGS = ["--n", "1", "--angles", "30", "--iterations", "3", "--methods", "fbp", "tv",
        "--lambdas", '{"tv": [10], "soft": [30]}', "--full-size", "--quiet"]


def test_ct_demo_writes_both_sizes_and_refuses_to_overwrite(tmp_path):
    demo = load_demo("ct_tomography")
    result = demo.main(ARGS + ["--out", str(tmp_path)])
    for name in ("ct128_parallel_30", "ct512_patches_parallel_30"):
        for ext in ("csv", "json", "png"):
            assert (tmp_path / f"{name}.{ext}").stat().st_size > 0
    assert (tmp_path / "ct_timing.json").is_file()
    assert best_psnr(result["summary"], "tv") > best_psnr(result["summary"], "fbp")
    before = (tmp_path / "ct_timing.json").read_bytes()
    with pytest.raises(FileExistsError, match="--overwrite"):
        demo.main(ARGS + ["--out", str(tmp_path)])
    assert (tmp_path / "ct_timing.json").read_bytes() == before
