"""Slab-parallel reconstruction of a volume: 2 processes under torchrun (gloo) give the
1-process volume; the geometries that do not split are refused."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cil_genreg.utilities import distributed
from cil_genreg.physics import forward
from cil_genreg.utilities import metrics
from cil_genreg.experiments import slabs
from cil_genreg.commands import reconstruct as reconstruct_command
from cil_genreg.cli import main as cli_main
from slab_problem import OPTIONS, problem

TESTS = Path(__file__).parent
ROOT = TESTS.parent


def torchrun(script, *args, nproc=2, timeout=240):
    """Run ``script`` under ``torchrun --standalone --nproc_per_node nproc`` on the CPU."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(TESTS)]),
               OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", str(script), *map(str, args)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_two_process_slabs_give_the_one_process_volume(tmp_path):
    out = tmp_path / "two.npz"
    torchrun(TESTS / "torchrun_slabs.py", out)
    two = np.load(out)
    assert int(two["world_size"]) == 2
    data, ig, generator = problem()
    truth = forward.make_geometry(28, 8, "parallel", slices=5)[0].allocate(None)
    from cil_genreg.datasets import mnist
    truth.fill(mnist(split="test")[:5])
    for coupling in (0.0, 0.5):
        one, _ = slabs.reconstruct_slab("soft", data, ig, 60.0, generator,
                                        latent_coupling=coupling, **OPTIONS)
        other = two[f"coupling_{coupling:g}"]
        assert other.shape == one.shape == (5, 28, 28)
        # independent slices: the same problems, solved in batches of 3 and 2 instead of 5
        # (rounding differs with the batch size); the chain: edge latents lag one iteration
        tol = 1e-2 if coupling == 0 else 0.1
        assert np.abs(one - other).max() < tol, (coupling, np.abs(one - other).max())
        assert abs(metrics.psnr(one, truth) - metrics.psnr(other, truth)) < \
            (0.02 if coupling == 0 else 0.1)


def test_split_is_contiguous_and_balanced():
    assert distributed.split(7, 3) == [(0, 3), (3, 5), (5, 7)]
    with pytest.raises(ValueError, match="cannot be split over 4"):
        distributed.split(3, 4)
    ctx = distributed.Context()
    assert distributed.exchange_boundaries(ctx, np.zeros(2), np.ones(2)) == (None, None)
    assert distributed.gather_slabs(ctx, np.ones((2, 3))).shape == (2, 3)


def test_slab_keeps_its_rows_and_cone_beam_is_refused():
    data, ig, _ = problem()
    y, ig_s = slabs.slab(data, ig, 1, 3)
    assert ig_s.shape == (2, 28, 28) and y.shape == (2, 8, 41)
    assert np.array_equal(y.as_array(), data.as_array()[1:3])
    from cil.framework import AcquisitionGeometry
    cone = AcquisitionGeometry.create_Cone3D(source_position=[0, -100, 0],
                                             detector_position=[0, 100, 0])
    cone.set_angles(np.linspace(0, 360, 8, endpoint=False)).set_panel([41, 5])
    with pytest.raises(ValueError, match="cone-beam acquisition does not split into slabs"):
        slabs.check_splittable(cone)


def test_cli_reconstructs_a_3d_sinogram_slice_batched_in_one_process(tmp_path):
    data, ig, _ = problem()
    sino = tmp_path / "sino.npy"
    np.save(sino, data.as_array())
    out = tmp_path / "vol.npy"
    assert cli_main(["reconstruct", "--method", "fbp", "--data", str(sino), "--angles-deg", "8",
                     "--out", str(out), "--quiet"]) == 0
    A = forward.make_projector(ig, data.geometry)
    fbp, _ = forward.initial_reconstruction(A, data)
    assert np.allclose(np.load(out), fbp.as_array())


def test_2d_data_under_torchrun_and_coupling_of_2d_data_are_refused(tmp_path, monkeypatch,
                                                                     capsys):
    ig2, ag2 = forward.make_geometry(28, 8)
    sino = tmp_path / "sino2d.npy"
    np.save(sino, np.zeros(ag2.shape, np.float32))
    args = ["reconstruct", "--method", "fbp", "--data", str(sino), "--angles-deg", "8",
            "--out", str(tmp_path / "x.npy"), "--quiet"]
    assert cli_main(args + ["--latent-coupling", "1"]) == 1
    assert "needs 3D data" in capsys.readouterr().err
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert cli_main(args) == 1
    assert "no slices to split" in capsys.readouterr().err
    assert reconstruct_command.NAME == "reconstruct"


def test_cli_reads_a_3d_nexus_volume_and_refuses_a_cone_beam_one(tmp_path, capsys):
    from cil.framework import AcquisitionGeometry
    from cil.io import NEXUSDataWriter
    data, ig, _ = problem()
    path = tmp_path / "vol.nxs"
    NEXUSDataWriter(data=data, file_name=str(path)).write()
    out = tmp_path / "vol.npy"
    assert cli_main(["reconstruct", "--method", "fbp", "--data", str(path), "--image-size", "28",
                     "--out", str(out), "--quiet"]) == 0
    A = forward.make_projector(ig, data.geometry)
    assert np.allclose(np.load(out), forward.initial_reconstruction(A, data)[0].as_array(),
                       atol=1e-5)
    cone = AcquisitionGeometry.create_Cone3D(source_position=[0, -100, 0],
                                             detector_position=[0, 100, 0])
    cone.set_angles(np.linspace(0, 360, 8, endpoint=False)).set_panel([41, 5])
    cone_path = tmp_path / "cone.nxs"
    NEXUSDataWriter(data=cone.allocate(1.0), file_name=str(cone_path)).write()
    assert cli_main(["reconstruct", "--method", "fbp", "--data", str(cone_path), "--image-size",
                     "28", "--out", str(tmp_path / "c.npy"), "--quiet"]) == 1
    assert "cone-beam acquisition" in capsys.readouterr().err
