"""Checkpoints that cannot run code when loaded: safetensors weights plus JSON metadata.

A checkpoint is one ``.safetensors`` file (https://github.com/huggingface/safetensors): a
little-endian u64 header length ``N``, ``N`` bytes of JSON describing the tensors, then the raw
tensor bytes. Nothing in it is executed when it is read, unlike a pickle (``torch.save``).
The header's ``__metadata__`` (string -> string) holds one key, ``"cil_genreg"``, a JSON object::

    {"format": "cil_genreg.generator", "format_version": 1,
     "config": {"arch": "vae", "latent_dim": 16, "image_shape": [28, 28], "width": 16},
     "intensity_range": [0.0, 1.0],
     "metadata": {... dataset, split, epochs, held-out error, training command, ...}}

The tensors are the model's ``state_dict`` (encoder and decoder for a VAE/AE, the generator of
a GAN). :func:`load` checks everything before building the model and refuses, with an error
that names the problem and what to do: a pickle / ``torch.save`` file (never unpickled), a
truncated or corrupt file, a file without cil_genreg metadata, an unknown architecture, and
weights that do not match the metadata (missing, unexpected or mis-shaped tensors).
"""
import json
import io
import os
import struct
import tempfile

import torch

from .architectures import ARCHITECTURES, INTENSITY_RANGE, build

#: value of ``"format"`` in the metadata of every checkpoint this module writes.
FORMAT = "cil_genreg.generator"
#: version of that format, written as ``"format_version"``.
FORMAT_VERSION = 1
#: the key of the safetensors ``__metadata__`` entry that holds the cil_genreg JSON.
META_KEY = "cil_genreg"


class CheckpointError(ValueError):
    """A file that :func:`load` refuses to load; the message says why and what to do."""


def atomic_write(path, write):
    """Call ``write(tmp_path)`` then ``os.replace(tmp_path, path)``: readers never see half a file."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                               dir=directory)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; use the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def _config_of(generator):
    config = getattr(generator, "config", None)
    if not isinstance(config, dict) or config.get("arch") not in ARCHITECTURES:
        raise TypeError(
            f"cannot save a {type(generator).__name__}: save() writes the package's models "
            "(cil_genreg.models.VAE, Autoencoder, WGANGenerator, made by models.build()). For "
            "another torch module save its state_dict with safetensors.torch.save_file yourself.")
    return config


def save(generator, path, metadata=None):
    """Write ``generator`` (a package model) to a safetensors checkpoint, atomically.

    Parameters
    ----------
    generator : VAE, Autoencoder or WGANGenerator
    path : str
        conventionally ending in ``.safetensors``.
    metadata : dict, optional
        JSON-serialisable facts to keep with the weights: dataset, split, epochs, held-out error,
        training command, ... (read back by :func:`read_metadata`).

    Returns
    -------
    str
        the path written.
    """
    from safetensors.torch import save_file

    config = _config_of(generator)
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": config,
              "intensity_range": list(getattr(generator, "intensity_range", INTENSITY_RANGE)),
              "metadata": dict(metadata or {})}
    try:
        text = json.dumps(header, sort_keys=True)
    except TypeError as err:
        raise TypeError(f"metadata must be JSON-serialisable: {err}") from None
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in generator.state_dict().items()}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={META_KEY: text}))


def _is_text_protocol_pickle(path):
    """Protocol 0/1 pickles have no magic bytes: read the start as pickle opcodes
    (``pickletools.genops`` parses, never executes). A safetensors file fails at once: its
    8-byte header length holds zero bytes, which are no opcode."""
    import itertools
    import pickletools
    with open(path, "rb") as f:
        start = f.read(4096)
    try:
        ops = list(itertools.islice(pickletools.genops(io.BytesIO(start)), 8))
    except Exception:  # noqa: BLE001 - any parse failure: not a pickle
        return False
    return len(ops) == 8 or (ops and ops[-1][0].name == "STOP")


def _refuse_pickle(path, head):
    is_zip = head[:4] == b"PK\x03\x04"
    is_pickle = (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5) or \
        _is_text_protocol_pickle(path)
    if is_zip or is_pickle:
        raise CheckpointError(
            f"{path!r} is a {'torch.save (zip/pickle)' if is_zip else 'pickle'} file, not a "
            "safetensors checkpoint. Loading a pickle can run arbitrary code, so cil_genreg does "
            "not unpickle it. If you trust where it came from, convert it once: build the model "
            "with cil_genreg.models.build(...), load its weights with torch.load(path, "
            "weights_only=True) and write a safe checkpoint with cil_genreg.models.save(model, "
            "'model.safetensors').")


def read_header(path):
    """The safetensors header of ``path`` (tensor table and ``__metadata__``), fully validated.

    Raises
    ------
    CheckpointError
        for a pickle, a truncated or corrupt file.
    FileNotFoundError
        when ``path`` does not exist.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist. Train one with "
                                "`cil-genreg train ... --out PATH`, or use "
                                "cil_genreg.models.pretrained(name).")
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        _refuse_pickle(path, head)
        corrupt = (f"{path!r} is truncated or corrupt (not a complete safetensors file): "
                   "write it again (e.g. rerun training with --resume, or download it again).")
        if len(head) < 8:
            raise CheckpointError(corrupt + f" It has only {size} bytes.")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8 or n > 100_000_000:
            raise CheckpointError(corrupt + f" Its header claims {n} bytes; the file has {size}.")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
    except (UnicodeDecodeError, ValueError) as err:
        raise CheckpointError(corrupt + f" Its header is not valid JSON ({err}).") from None
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            start, stop = info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(corrupt + f" Tensor {name!r} has no data offsets.") from None
        end = max(end, int(stop))
    if 8 + n + end != size:
        raise CheckpointError(corrupt + f" The tensors need {8 + n + end} bytes; the file has "
                              f"{size}.")
    return header


def read_metadata(path):
    """The cil_genreg metadata of a checkpoint, read from its header without loading the weights.

    Parameters
    ----------
    path : str or os.PathLike
        a safetensors checkpoint written by :func:`save`.

    Returns
    -------
    dict
        the decoded JSON object: ``"format"``, ``"format_version"``, ``"config"`` (``arch``,
        ``latent_dim``, ``image_shape``, ``width``, what :func:`build` takes),
        ``"intensity_range"`` and ``"metadata"`` (the dict given to :func:`save`).

    Raises
    ------
    FileNotFoundError
        when ``path`` does not exist.
    CheckpointError
        for a pickle, a truncated or corrupt file, a safetensors file without cil_genreg
        metadata, malformed metadata, another format, or an unknown architecture.
    """
    header = read_header(path)
    meta = (header.get("__metadata__") or {}).get(META_KEY)
    if meta is None:
        raise CheckpointError(
            f"{path!r} is a safetensors file without cil_genreg metadata (no "
            f"'{META_KEY}' entry), so its architecture is unknown. Build the model with "
            "cil_genreg.models.build(arch, latent_dim, image_shape), load the tensors with "
            "safetensors.torch.load_file and model.load_state_dict, then "
            "cil_genreg.models.save(model, path) to add the metadata.")
    try:
        meta = json.loads(meta)
        config = meta["config"]
        arch = config["arch"]
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path!r}: the cil_genreg metadata is malformed ({err!r}); "
                              "save the model again with cil_genreg.models.save.") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path!r}: metadata format {meta.get('format')!r} is not "
                              f"{FORMAT!r}.")
    if arch not in ARCHITECTURES:
        raise CheckpointError(
            f"{path!r}: unknown architecture {arch!r} in the metadata (this version knows "
            f"{list(ARCHITECTURES)}). Upgrade cil_genreg, or check the file's origin.")
    return meta


def load(path, map_location="cpu"):
    """The generator stored in a safetensors checkpoint, in eval mode.

    Parameters
    ----------
    path : str
        a file written by :func:`save` (or by ``cil-genreg train``).
    map_location : str or torch.device
        where to put the weights (default CPU).

    Returns
    -------
    VAE, Autoencoder or WGANGenerator
        ``model(z)`` decodes; ``model.metadata`` holds the checkpoint's metadata.

    Raises
    ------
    CheckpointError
        for a pickle file (never unpickled), a truncated/corrupt file, missing metadata, an unknown
        architecture, or weights that do not match the metadata.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = os.fspath(path)
    meta = read_metadata(path)
    config = dict(meta["config"])
    arch = config.pop("arch")
    try:
        model = build(arch, **config)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path!r}: the metadata's config {meta['config']} does not "
                              f"describe a valid model ({err}).") from None
    try:
        tensors = load_file(path, device=str(map_location))
    except (SafetensorError, OSError, RuntimeError) as err:
        raise CheckpointError(f"{path!r} is corrupt ({err}); write it again.") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [f"{k}: file {tuple(tensors[k].shape)}, model {tuple(expected[k].shape)}"
             for k in expected if k in tensors and tensors[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing tensors {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected tensors {unexpected[:5]}"
                         f"{' ...' if len(unexpected) > 5 else ''}")
        if wrong:
            parts.append("shape mismatches " + "; ".join(wrong[:5]))
        raise CheckpointError(
            f"{path!r}: the weights do not match the metadata ({meta['config']}): "
            + ", ".join(parts) + ". The file was edited or its metadata belongs to another "
            "model; save the model again with cil_genreg.models.save.")
    model.load_state_dict(tensors)
    model.metadata = meta.get("metadata", {})
    return model.to(map_location).eval()


def update_metadata(path, **entries):
    """Add or replace entries of a checkpoint's ``metadata``: ``metadata.update(entries)``.

    The checkpoint is loaded (and so fully validated, as by :func:`load`) and written again
    atomically with :func:`save`; the weights and config are unchanged.

    Parameters
    ----------
    path : str or os.PathLike
        a checkpoint written by :func:`save`.
    **entries
        JSON-serialisable values, stored under their keyword names.

    Returns
    -------
    str
        the path written.

    Raises
    ------
    FileNotFoundError
        when ``path`` does not exist.
    CheckpointError
        when :func:`load` refuses the file.
    TypeError
        when an entry is not JSON-serialisable (the file is left as it was).
    """
    model = load(path)
    meta = dict(model.metadata)
    meta.update(entries)
    return save(model, path, meta)
