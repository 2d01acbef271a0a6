"""The shapes, knee and slice-wise volume demos on tiny configurations."""
import os

from demo_helpers import best_psnr as psnr_of, load_demo


def test_shapes_demo_writes_outputs_and_soft_beats_fbp(tmp_path):
    result = load_demo("shapes_tomography").main(
        ["--quick", "--n", "1", "--angles", "10", "--methods", "fbp", "soft",
         "--out", str(tmp_path), "--no-progress"])
    assert psnr_of(result["summary"], "soft") > psnr_of(result["summary"], "fbp") + 3
    written = os.listdir(tmp_path)
    for ext in (".csv", ".json", ".png"):
        assert any(name.endswith(ext) for name in written), (ext, written)


def test_knee_demo_without_data_says_where_to_get_it(capsys):
    status = load_demo("knee_tomography").main([])
    assert status == 2
    printed = capsys.readouterr()
    assert "fastmri" in (printed.err + printed.out).lower()


def test_volume_demo_soft_beats_fbp_slice_by_slice(tmp_path):
    result = load_demo("volume_slicewise").main(
        ["--quick", "--n", "1", "--slices", "2", "--angles", "10", "--methods", "fbp", "soft",
         "--out", str(tmp_path), "--no-progress"])
    summary = result["summary"]
    assert psnr_of(summary, "soft") > psnr_of(summary, "fbp") + 3
    assert any(name.endswith(".png") for name in os.listdir(tmp_path))
