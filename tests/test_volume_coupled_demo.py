"""demos/volume_coupled.py on a tiny configuration, and the 3D phantoms it reconstructs."""
import json
import math

import numpy as np
import pytest

from cil_genreg.datasets import shape_volumes
from demo_helpers import load_demo


def test_shape_volumes_change_smoothly_along_z_and_are_seeded():
    v = shape_volumes(3, slices=10, size=32, seed=1)
    assert v.shape == (3, 10, 32, 32) and v.dtype == np.float32
    assert v.min() >= 0 and v.max() <= 1 and (v.reshape(3, 10, -1).max(axis=2) > 0.5).all()
    step = np.abs(np.diff(v, axis=1)).mean()
    assert step < 0.5 * np.abs(v[:, :, None] - v[:, None]).mean()  # neighbours are alike
    assert np.array_equal(v, shape_volumes(3, slices=10, size=32, seed=1))
    with pytest.raises(ValueError, match="slices must be at least 2"):
        shape_volumes(1, slices=1)


def test_volume_coupled_demo_writes_table_and_figure(tmp_path):
    out = tmp_path / "out"
    argv = ["--n", "1", "--slices", "3", "--angles", "6", "--iterations", "3", "--couplings", "1",
            "--alphas", "1", "--method", "range", "--lam", "1", "--out", str(out)]
    demo = load_demo("volume_coupled")
    result = demo.main(argv)
    for ext in ("csv", "json", "png"):
        assert (out / f"volume_coupled_range_6.{ext}").stat().st_size > 0
    keys = [t["key"] for t in result["table"]]
    assert keys == ["fbp", "tv", "independent", "coupled 1", "z-TV 1"]
    assert all(math.isfinite(t["psnr"]) for t in result["table"])
    saved = json.loads((out / "volume_coupled_range_6.json").read_text())
    assert len(saved["rows"]) == 5 and saved["args"]["method"] == "range"
    with pytest.raises(FileExistsError, match="overwrite"):  # refused before any work
        demo.main(argv)
