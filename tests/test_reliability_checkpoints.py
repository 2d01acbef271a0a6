"""Checkpoints (issue 9): every file models.save writes loads again, whatever its metadata
size; untrusted files are checked on their header before any model is built; odd paths and
malformed headers get clear errors."""
import json
import os
import struct
import time

import pytest
import torch
from safetensors.torch import load_file, save as st_save, save_file

from cil_genreg import models
from cil_genreg.models import CheckpointError, checkpoints
from cil_genreg.models import header as header_module


def tiny_gan():
    torch.manual_seed(0)
    return models.build("gan", latent_dim=2, image_shape=(16, 16), width=2).eval()


def write_raw(path, header, body=b""):
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + body)
    return path


def valid_header(tmp_path):
    path = tmp_path / "ok.safetensors"
    models.save(tiny_gan(), path, {"note": "x"})
    return path, checkpoints.read_header(path)


def test_save_load_round_trips_over_many_metadata_sizes(tmp_path):
    """The header length of a safetensors file can read as pickle opcodes (for this model,
    notes of 909-916 characters): such files are safetensors, never refused as pickles."""
    g = tiny_gan()
    tensors = {k: v.contiguous() for k, v in g.state_dict().items()}
    header = {"format": checkpoints.FORMAT, "format_version": 1, "config": g.config,
              "intensity_range": [0.0, 1.0]}
    sniffed, path = [], tmp_path / "g.safetensors"
    for k in sorted(set(range(0, 1200, 13)) | set(range(880, 940))):
        text = json.dumps(dict(header, metadata={"note": "x" * k}), sort_keys=True)
        path.write_bytes(st_save(tensors, metadata={checkpoints.META_KEY: text}))
        if header_module._is_text_protocol_pickle(str(path)):
            sniffed.append(k)
        assert checkpoints.read_metadata(path)["metadata"]["note"] == "x" * k
    assert sniffed, "the sweep must cover header lengths that read as pickle opcodes"
    for k in sniffed[:3] + [0, 94, 20_000, 150_000]:
        models.save(g, path, {"note": "y" * k})
        loaded = models.load(path)
        assert loaded.metadata["note"] == "y" * k
        for name, value in g.state_dict().items():
            assert torch.equal(loaded.state_dict()[name], value)


def test_a_small_untrusted_file_cannot_make_load_build_a_big_model(tmp_path, monkeypatch):
    """A 26 kB-style file whose metadata describes a huge model: refused from the header,
    with every model built before the refusal on the meta device (no memory)."""
    path, header = valid_header(tmp_path)
    meta = json.loads(header["__metadata__"][checkpoints.META_KEY])
    meta["config"] = {"arch": "vae", "latent_dim": 65536, "image_shape": [4096, 4096],
                      "width": 1024}
    header["__metadata__"][checkpoints.META_KEY] = json.dumps(meta)
    body = path.read_bytes()[8 + struct.unpack("<Q", path.read_bytes()[:8])[0]:]
    bad = write_raw(tmp_path / "huge.safetensors", header, body)
    assert bad.stat().st_size < 30_000
    devices = []
    real_build = checkpoints.build

    def build(*args, **kwargs):
        devices.append(torch.empty(0).device.type)
        return real_build(*args, **kwargs)

    monkeypatch.setattr(checkpoints, "build", build)
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match="do not match the metadata"):
        models.load(bad)
    assert time.perf_counter() - t0 < 5.0
    assert devices == ["meta"]


@pytest.mark.parametrize("config, why", [
    ({"arch": "vae", "latent_dim": 10 ** 9, "image_shape": [28, 28], "width": 4}, "latent_dim"),
    ({"arch": "vae", "latent_dim": 4, "image_shape": [10 ** 6, 10 ** 6]}, "image_shape"),
    ({"arch": "vae", "latent_dim": 4, "image_shape": [28, 28], "width": -3}, "width"),
    ({"arch": "vae", "latent_dim": "4", "image_shape": [28, 28]}, "latent_dim"),
    ({"arch": "vae", "latent_dim": 4, "image_shape": [28, 28], "evil": 1}, "unknown entries"),
])
def test_config_out_of_bounds_is_refused_before_building(tmp_path, config, why):
    path, header = valid_header(tmp_path)
    meta = json.loads(header["__metadata__"][checkpoints.META_KEY])
    meta["config"] = config
    header["__metadata__"][checkpoints.META_KEY] = json.dumps(meta)
    body = path.read_bytes()[8 + struct.unpack("<Q", path.read_bytes()[:8])[0]:]
    with pytest.raises(CheckpointError, match=why):
        models.load(write_raw(tmp_path / "bad.safetensors", header, body))


def test_load_refuses_odd_paths_clearly(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a folder"):
        models.load(tmp_path)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(CheckpointError, match="not a regular file"):
        models.load(fifo)  # must not open it (that would block)
    with pytest.raises(CheckpointError, match="not a regular file"):
        models.load("/dev/zero")
    with pytest.raises(TypeError, match="str.*NoneType"):
        models.load(None)
    with pytest.raises(TypeError, match="bytes.*os.fsdecode"):
        models.load(b"model.safetensors")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        models.load(tmp_path / "missing.safetensors")


def test_map_location_is_checked_not_blamed_on_the_file(tmp_path):
    path, _ = valid_header(tmp_path)
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        models.load(path, map_location="gpu")
    assert next(models.load(path, map_location="meta").parameters()).is_meta


def test_metadata_must_be_a_string_map(tmp_path):
    path, header = valid_header(tmp_path)
    body = path.read_bytes()[8 + struct.unpack("<Q", path.read_bytes()[:8])[0]:]
    for bad_meta in ({"cil_genreg": {"config": 1}}, ["cil_genreg"], {"k": 3}):
        header["__metadata__"] = bad_meta
        with pytest.raises(CheckpointError, match="not a map of strings to strings"):
            models.load(write_raw(tmp_path / "m.safetensors", header, body))


@pytest.mark.parametrize("offsets", [["0", "8"], [0.5, 8], None, [8, 0], [0, -1]])
def test_malformed_tensor_offsets_are_refused(tmp_path, offsets):
    path, header = valid_header(tmp_path)
    body = path.read_bytes()[8 + struct.unpack("<Q", path.read_bytes()[:8])[0]:]
    name = next(k for k in header if k != "__metadata__")
    header[name]["data_offsets"] = offsets
    with pytest.raises(CheckpointError, match=f"{name}.*malformed"):
        models.load(write_raw(tmp_path / "o.safetensors", header, body))


def test_nan_weights_are_refused_on_load_and_never_saved(tmp_path):
    path, _ = valid_header(tmp_path)
    tensors = load_file(path)
    name = next(iter(tensors))
    tensors[name][...] = float("nan")
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
    save_file(tensors, tmp_path / "nan.safetensors", metadata=metadata)
    with pytest.raises(CheckpointError, match="NaN or Inf.*diverged"):
        models.load(tmp_path / "nan.safetensors")
    g = tiny_gan()
    with torch.no_grad():
        next(g.parameters()).fill_(float("inf"))
    with pytest.raises(ValueError, match="NaN or Inf"):
        models.save(g, tmp_path / "never.safetensors")
    assert not (tmp_path / "never.safetensors").exists()


def test_positive_control_round_trip(tmp_path):
    g = tiny_gan()
    path = models.save(g, tmp_path / "g.safetensors", {"dataset": "none"})
    loaded = models.load(path)
    z = torch.randn(3, 2)
    assert torch.equal(loaded(z), g(z)) and loaded.metadata["dataset"] == "none"
