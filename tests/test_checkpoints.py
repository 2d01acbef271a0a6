"""Safe checkpoints: round trip, and every refusal named in the docs."""
import json
import os
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

from cil_genreg import models
from cil_genreg.models.checkpoints import META_KEY, CheckpointError


def _rewrite(src, dst, edit_meta=None, edit_tensors=None):
    """Copy a checkpoint with its metadata and/or tensors edited."""
    from safetensors import safe_open

    with safe_open(str(src), "pt") as f:
        meta = json.loads(f.metadata()[META_KEY])
    tensors = load_file(str(src))
    if edit_meta:
        edit_meta(meta)
    if edit_tensors:
        edit_tensors(tensors)
    save_file(tensors, str(dst), metadata={META_KEY: json.dumps(meta)})
    return dst


def test_round_trip(tiny_vae, tiny_checkpoint):
    g = models.load(tiny_checkpoint)
    assert isinstance(g, models.VAE) and not g.training
    assert g.latent_dim == 4 and g.image_shape == (28, 28)
    assert g.metadata == {"dataset": "unit-test", "epochs": 0}
    z = torch.randn(3, 4)
    with torch.no_grad():
        assert torch.equal(g(z), tiny_vae(z))
    meta = models.read_metadata(tiny_checkpoint)
    assert meta["config"]["arch"] == "vae" and meta["intensity_range"] == [0.0, 1.0]


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path, tiny_vae, tiny_checkpoint):
    before = open(tiny_checkpoint, "rb").read()
    with pytest.raises(TypeError, match="JSON"):
        models.save(tiny_vae, tiny_checkpoint, metadata={"bad": object()})
    assert open(tiny_checkpoint, "rb").read() == before
    assert sorted(os.listdir(tmp_path)) == ["tiny.safetensors"]


def test_update_metadata(tiny_checkpoint):
    models.update_metadata(tiny_checkpoint, held_out_psnr_db=25.0)
    assert models.load(tiny_checkpoint).metadata == {"dataset": "unit-test", "epochs": 0,
                                                     "held_out_psnr_db": 25.0}


class _Boom:
    """Unpickling this writes a marker file: proves whether a loader unpickled."""

    marker = None

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("how", ["torch.save", "pickle", "protocol 0", "protocol 1"])
def test_refuses_pickles_without_unpickling(tmp_path, tiny_vae, how):
    marker = tmp_path / "was-unpickled"
    boom = _Boom()
    boom.marker = str(marker)
    path = tmp_path / "model.pt"
    if how == "torch.save":
        torch.save({"model": tiny_vae, "boom": boom}, path)
    else:
        protocol = {"pickle": None, "protocol 0": 0, "protocol 1": 1}[how]
        with open(path, "wb") as f:
            pickle.dump({"weights": [1.0, 2.0], "boom": boom}, f, protocol=protocol)
    with pytest.raises(CheckpointError, match="pickle") as err:
        models.load(path)
    assert "models.save" in str(err.value)
    assert not marker.exists()


def test_refuses_truncated_file(tmp_path, tiny_checkpoint):
    raw = open(tiny_checkpoint, "rb").read()
    for cut in (4, 100, len(raw) - 10):
        bad = tmp_path / f"cut{cut}.safetensors"
        bad.write_bytes(raw[:cut])
        with pytest.raises(CheckpointError, match="truncated or corrupt"):
            models.load(bad)


def test_refuses_garbage(tmp_path):
    bad = tmp_path / "garbage.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!" + b"\x00" * 32)
    with pytest.raises(CheckpointError, match="not valid JSON"):
        models.load(bad)


def test_refuses_shape_mismatch(tmp_path, tiny_checkpoint):
    bad = _rewrite(tiny_checkpoint, tmp_path / "bad.safetensors",
                   edit_meta=lambda m: m["config"].update(latent_dim=8))
    with pytest.raises(CheckpointError, match="do not match.*shape mismatch"):
        models.load(bad)


def test_refuses_missing_and_unexpected_tensors(tmp_path, tiny_checkpoint):
    def drop(t):
        t.pop("decoder.fc.weight")
        t["extra"] = torch.zeros(2)

    bad = _rewrite(tiny_checkpoint, tmp_path / "bad.safetensors", edit_tensors=drop)
    with pytest.raises(CheckpointError, match="missing tensors.*decoder.fc.weight") as err:
        models.load(bad)
    assert "unexpected tensors ['extra']" in str(err.value)


def test_refuses_unknown_architecture(tmp_path, tiny_checkpoint):
    bad = _rewrite(tiny_checkpoint, tmp_path / "bad.safetensors",
                   edit_meta=lambda m: m["config"].update(arch="diffusion"))
    with pytest.raises(CheckpointError, match="unknown architecture 'diffusion'"):
        models.load(bad)


def test_refuses_safetensors_without_metadata(tmp_path, tiny_vae):
    bad = tmp_path / "plain.safetensors"
    save_file(tiny_vae.state_dict(), str(bad))
    with pytest.raises(CheckpointError, match="without cil_genreg metadata"):
        models.load(bad)


def test_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="cil-genreg train"):
        models.load(tmp_path / "nope.safetensors")


def test_save_refuses_foreign_modules(tmp_path):
    with pytest.raises(TypeError, match="package's models"):
        models.save(torch.nn.Linear(2, 2), tmp_path / "x.safetensors")
