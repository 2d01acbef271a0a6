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
import io
import json
import math
import os
import stat
import struct
import tempfile
import warnings

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

    Raises
    ------
    TypeError
        for a model that is not one of the package's, or metadata that is not JSON.
    ValueError
        when the weights hold NaN or Inf (nothing is written).
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
    broken = [k for k, v in tensors.items() if v.is_floating_point() and
              not bool(torch.isfinite(v).all())]
    if broken:
        raise ValueError(f"not saving {path!r}: the weights hold NaN or Inf ({broken[0]}); a "
                         "model like that reconstructs nothing (did its training diverge?).")
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={META_KEY: text}))


def _is_text_protocol_pickle(path):
    """Protocol 0/1 pickles have no magic bytes: read the start as pickle opcodes
    (``pickletools.genops`` parses, never executes). Only asked of files that do not parse as
    safetensors (:func:`read_header`): a safetensors header length can read as opcodes."""
    import itertools
    import pickletools
    with open(path, "rb") as f:
        start = f.read(4096)
    try:
        with warnings.catch_warnings():  # odd bytes read as string opcodes warn on decoding
            warnings.simplefilter("ignore")
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


#: bytes per element of the safetensors dtypes a checkpoint may hold.
DTYPE_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
               "U8": 1, "BOOL": 1}
#: the largest header :func:`read_header` reads (the package's headers are a few kB).
MAX_HEADER_BYTES = 100_000_000


def checkpoint_path(path):
    """``path`` as a str naming an existing regular file, else a clear error.

    Raises
    ------
    TypeError
        for None, bytes or another non-path.
    FileNotFoundError
        when nothing is there.
    IsADirectoryError
        for a folder.
    CheckpointError
        for a device, FIFO or socket (never opened: reading one could block or never end).
    """
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"the checkpoint path must be a str (or pathlib.Path), got "
                        f"{type(path).__name__} {path!r}" + (
                            ": decode it first, os.fsdecode(path)." if isinstance(path, bytes)
                            else "."))
    path = os.fspath(path)
    if isinstance(path, bytes):
        raise TypeError(f"the checkpoint path must be a str, got bytes {path!r}: decode it "
                        "first, os.fsdecode(path).")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint {path!r} does not exist. Train one with "
                                "`cil-genreg train ... --out PATH`, or use "
                                "cil_genreg.models.pretrained(name).") from None
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(f"checkpoint {path!r} is a folder: pass the .safetensors file "
                                "inside it.")
    if not stat.S_ISREG(mode):
        raise CheckpointError(f"{path!r} is not a regular file (a device, FIFO or socket): "
                              "pass a .safetensors checkpoint file.")
    return path


def _parse_header(raw):
    """The JSON object of a safetensors header, or None when ``raw`` is not one."""
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return header if isinstance(header, dict) else None


def _check_tensor_table(path, header, size, n, corrupt):
    """Every tensor entry well formed (dtype, shape, offsets) and inside the file."""
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                             for k, v in meta.items()):
        raise CheckpointError(corrupt + " Its __metadata__ is not a map of strings to strings.")
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (start, stop) = info["dtype"], info["shape"], info["data_offsets"]
            if dtype not in DTYPE_SIZES or not isinstance(shape, list) or not all(
                    type(v) is int and v >= 0 for v in shape + [start, stop]) or start > stop:
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(corrupt + f" Tensor {name!r} has a malformed entry (dtype, "
                                  "shape or data offsets).") from None
        if stop - start != math.prod(shape) * DTYPE_SIZES[dtype]:
            raise CheckpointError(corrupt + f" Tensor {name!r} of shape {shape} does not fill "
                                  f"its {stop - start} bytes.")
        end = max(end, stop)
    if 8 + n + end != size:
        raise CheckpointError(corrupt + f" The tensors need {8 + n + end} bytes; the file has "
                              f"{size}.")


def read_header(path):
    """The safetensors header of ``path`` (tensor table and ``__metadata__``), fully validated:
    every tensor's dtype, shape and byte range, inside the file.

    A file whose header parses as safetensors is never taken for a pickle (its header length
    can read as pickle opcodes); only a file that does not parse is tested for a pickle.

    Raises
    ------
    CheckpointError
        for a pickle, a truncated or corrupt file, or a device / FIFO.
    FileNotFoundError, IsADirectoryError, TypeError
        see :func:`checkpoint_path`.
    """
    path = checkpoint_path(path)
    size = os.path.getsize(path)
    corrupt = (f"{path!r} is truncated or corrupt (not a complete safetensors file): "
               "write it again (e.g. rerun training with --resume, or download it again).")
    header = None
    with open(path, "rb") as f:
        head = f.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else None
        if n is not None and 2 <= n <= min(size - 8, MAX_HEADER_BYTES):
            header = _parse_header(f.read(n))
    if header is None:
        _refuse_pickle(path, head)
        if n is None:
            raise CheckpointError(corrupt + f" It has only {size} bytes.")
        if n > size - 8 or n > MAX_HEADER_BYTES:
            raise CheckpointError(corrupt + f" Its header claims {n} bytes; the file has {size}.")
        raise CheckpointError(corrupt + " Its header is not valid JSON (a JSON object).")
    _check_tensor_table(path, header, size, n, corrupt)
    return header


#: bounds of a checkpoint's config, checked before any model is built from it.
CONFIG_BOUNDS = {"latent_dim": (1, 65536), "width": (1, 1024), "image_side": (16, 8192)}


def check_config(config, where="the metadata"):
    """Refuse a model config that is malformed or out of bounds (:data:`CONFIG_BOUNDS`),
    before anything is built from it.

    Parameters
    ----------
    config : dict
        ``arch``, ``latent_dim``, ``image_shape`` and optionally ``width``.
    where : str
        names the source in messages.

    Returns
    -------
    dict
        the config.

    Raises
    ------
    CheckpointError
        naming the bad entry.
    """
    def bad(why):
        return CheckpointError(f"{where}: config {config!r} is invalid ({why}); save the model "
                               "again with cil_genreg.models.save.")

    if not isinstance(config, dict):
        raise bad("not a JSON object")
    extra = set(config) - {"arch", "latent_dim", "image_shape", "width"}
    if extra:
        raise bad(f"unknown entries {sorted(extra)}")
    if config.get("arch") not in ARCHITECTURES:
        raise CheckpointError(
            f"{where}: unknown architecture {config.get('arch')!r} in the metadata (this "
            f"version knows {list(ARCHITECTURES)}). Upgrade cil_genreg, or check the file's "
            "origin.")
    shape = config.get("image_shape")
    sides = [shape, shape] if type(shape) is int else shape
    lo, hi = CONFIG_BOUNDS["image_side"]
    if not isinstance(sides, list) or len(sides) != 2 or not all(
            type(v) is int and lo <= v <= hi for v in sides):
        raise bad(f"image_shape must be [H, H] with {lo} <= H <= {hi}")
    for key in ("latent_dim", "width"):
        if key not in config and key == "width":
            continue
        lo, hi = CONFIG_BOUNDS[key]
        if type(config.get(key)) is not int or not lo <= config[key] <= hi:
            raise bad(f"{key} must be an integer in [{lo}, {hi}]")
    return config


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
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path!r}: the cil_genreg metadata is malformed ({err!r}); "
                              "save the model again with cil_genreg.models.save.") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path!r}: metadata format {meta.get('format')!r} is not "
                              f"{FORMAT!r}.")
    check_config(config, repr(path))
    if not isinstance(meta.get("metadata", {}), dict):
        raise CheckpointError(f"{path!r}: the cil_genreg metadata's 'metadata' entry is not a "
                              "JSON object; save the model again with cil_genreg.models.save.")
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
        for a pickle file (never unpickled), a truncated/corrupt file, a device or FIFO, missing
        or malformed metadata, an unknown architecture, a config out of bounds, weights that do
        not match the metadata (checked on the header, before any model is built) and weights
        holding NaN or Inf.
    FileNotFoundError, IsADirectoryError
        when nothing, or a folder, is at ``path``.
    TypeError
        when ``path`` is None, bytes or not a path.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = checkpoint_path(path)
    header = read_header(path)
    meta = read_metadata(path)
    config = dict(meta["config"])
    arch = config.pop("arch")
    try:
        with torch.device("meta"):  # shapes only: nothing is allocated
            expected = {k: tuple(v.shape) for k, v in build(arch, **config).state_dict().items()}
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path!r}: the metadata's config {meta['config']} does not "
                              f"describe a valid model ({err}).") from None
    stored = {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}
    _check_tensors_match(path, meta, expected, stored,
                         [k for k, v in header.items() if k != "__metadata__" and
                          v["dtype"] != "F32"])
    model = build(arch, **config)
    try:
        tensors = load_file(path, device=str(map_location))
    except (SafetensorError, OSError, RuntimeError) as err:
        raise CheckpointError(f"{path!r} is corrupt ({err}); write it again.") from None
    broken = [k for k, t in tensors.items() if not bool(torch.isfinite(t).all())]
    if broken:
        raise CheckpointError(
            f"{path!r}: the weights hold NaN or Inf ({broken[:3]}{' ...' if len(broken) > 3 else ''})"
            ": the training that wrote it diverged. Train again with a lower --lr.")
    model.load_state_dict(tensors)
    model.metadata = meta.get("metadata", {})
    return model.to(map_location).eval()


def _check_tensors_match(path, meta, expected, stored, not_f32):
    """The header's tensor names, shapes and dtypes against the model the config describes."""
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    wrong = [f"{k}: file {stored[k]}, model {expected[k]}"
             for k in expected if k in stored and stored[k] != expected[k]]
    if missing or unexpected or wrong or not_f32:
        parts = []
        if missing:
            parts.append(f"missing tensors {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected tensors {unexpected[:5]}"
                         f"{' ...' if len(unexpected) > 5 else ''}")
        if wrong:
            parts.append("shape mismatches " + "; ".join(wrong[:5]))
        if not_f32:
            parts.append(f"tensors not float32 {not_f32[:5]}")
        raise CheckpointError(
            f"{path!r}: the weights do not match the metadata ({meta['config']}): "
            + ", ".join(parts) + ". The file was edited or its metadata belongs to another "
            "model; save the model again with cil_genreg.models.save.")


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
