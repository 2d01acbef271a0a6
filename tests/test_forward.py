"""Pieces of the forward problem and the demo command that the demo runs do not reach on a CPU-only machine."""
import numpy as np

from cil_genreg.physics import forward


class _RecordingFBP:
    devices = []

    def __init__(self, ig, ag, device="gpu"):
        self.devices.append(device)
        self.ig = ig

    def __call__(self, y):
        return self.ig.allocate(0)


class _FakeAstra:
    FBP = _RecordingFBP


def test_cuda_reaches_cil_astra_fbp_as_gpu(monkeypatch):
    # CIL's ASTRA FBP knows only 'gpu'; anything else silently takes its CPU branch, which
    # refuses fan beam and 3D ("Cannot process ... without a GPU")
    monkeypatch.setattr(forward, "_plugin", lambda backend: _FakeAstra)
    _RecordingFBP.devices.clear()
    for geometry in ("parallel", "fan"):
        ig, ag = forward.make_geometry(16, 6, geometry)

        class A:
            def domain_geometry(self):
                return ig

            def range_geometry(self):
                return ag
        x, label = forward.initial_reconstruction(A(), ag.allocate(0), device="cuda")
        assert label == "FBP" and x.shape == ig.shape
    assert _RecordingFBP.devices == ["gpu", "gpu"]
    assert forward._astra_device("cuda:1") == "gpu"
    assert forward._astra_device("cpu") == "cpu"


def test_cli_demo_refuses_tigre_and_cuda_here_with_what_to_do(tmp_path, capsys):
    import torch
    from cil_genreg.cli import main
    try:
        import tigre  # noqa: F401
        has_tigre = True
    except ImportError:
        has_tigre = False
    if not has_tigre:
        assert main(["demo", "--backend", "tigre", "--out", str(tmp_path)]) == 1
        assert "conda install -c ccpi tigre" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["demo", "--device", "cuda", "--out", str(tmp_path)]) == 1
        assert "--device cpu" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # refused before any work


def test_demo_shows_a_progress_bar_unless_asked_not_to(tmp_path, capsys):
    from cil_genreg.cli import main
    args = ["demo", "--n", "1", "--angles", "10", "--iterations", "5", "--methods", "fbp",
            "tv", "soft", "--out", str(tmp_path)]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "parallel 10 angles" in err and "100%" in err  # tqdm over the runs, to the end
    assert main(args + ["--quiet", "--overwrite"]) == 0  # the same --out: asked to replace
    assert "100%" not in capsys.readouterr().err
