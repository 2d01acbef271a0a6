"""Reading a safetensors header without trusting it: the path, the pickle test, the tensor
table and the model config, each checked before :mod:`.checkpoints` builds anything.

A safetensors file is a little-endian u64 header length ``N``, ``N`` bytes of JSON (tensor
name -> ``dtype``, ``shape``, ``data_offsets``; and ``__metadata__``, string -> string), then
the raw tensor bytes.
"""
import io
import json
import math
import os
import stat
import struct
import warnings

from .architectures import ARCHITECTURES
from .denoiser import NETWORK_ARCHITECTURES


class CheckpointError(ValueError):
    """A file that :func:`load` refuses to load; the message says why and what to do."""


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
    corrupt = (f"{path!r} is truncated or corrupt (not a complete safetensors checkpoint, or "
               "another format): write it again (e.g. rerun training with --resume, or "
               "download it again).")
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
CONFIG_BOUNDS = {"latent_dim": (1, 65536), "width": (1, 1024), "image_side": (16, 8192),
                 "res_blocks": (0, 16), "latent_grid": (0, 4096), "channels": (1, 1024),
                 "scales": (1, 8), "blocks": (0, 16), "neighbourhood": (1, 4),
                 "head_width": (1, 256)}


#: the config entries a structured-covariance VAE ("svae") adds to a VAE's.
STRUCTURED_KEYS = {"neighbourhood", "head_width"}


def check_config(config, where="the metadata"):
    """Refuse a model config that is malformed or out of bounds (:data:`CONFIG_BOUNDS`),
    before anything is built from it.

    Parameters
    ----------
    config : dict
        ``arch``, ``latent_dim``, ``image_shape`` and optionally ``width``, ``res_blocks`` and
        ``latent_grid``.
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
    if config.get("arch") in NETWORK_ARCHITECTURES:
        return _check_network_config(config, bad)
    extra = set(config) - {"arch", "latent_dim", "image_shape", "width", "res_blocks",
                           "latent_grid"} - (STRUCTURED_KEYS if config.get("arch") == "svae"
                                             else set())
    if extra:
        raise bad(f"unknown entries {sorted(extra)}")
    if config.get("arch") not in ARCHITECTURES:
        raise CheckpointError(
            f"{where}: unknown architecture {config.get('arch')!r} in the metadata (this "
            f"version knows {list(ARCHITECTURES + NETWORK_ARCHITECTURES)}). Upgrade "
            "cil_genreg, or check the file's origin.")
    _check_side(config, bad)
    for key in ("latent_dim", "width", "res_blocks", "latent_grid", *sorted(STRUCTURED_KEYS)):
        if key not in config and key != "latent_dim":
            continue
        lo, hi = CONFIG_BOUNDS[key]
        if type(config.get(key)) is not int or not lo <= config[key] <= hi:
            raise bad(f"{key} must be an integer in [{lo}, {hi}]")
    return config


def _check_side(config, bad):
    shape = config.get("image_shape")
    sides = [shape, shape] if type(shape) is int else shape
    lo, hi = CONFIG_BOUNDS["image_side"]
    if not isinstance(sides, list) or len(sides) != 2 or not all(
            type(v) is int and lo <= v <= hi for v in sides):
        raise bad(f"image_shape must be [H, H] with {lo} <= H <= {hi}")


def _check_network_config(config, bad):
    """A denoiser's or post-processing network's config: arch, image_shape, channels (one per
    scale), blocks."""
    extra = set(config) - {"arch", "image_shape", "channels", "blocks"}
    if extra:
        raise bad(f"unknown entries {sorted(extra)}")
    _check_side(config, bad)
    channels, (lo, hi), (s_lo, s_hi) = (config.get("channels"), CONFIG_BOUNDS["channels"],
                                         CONFIG_BOUNDS["scales"])
    if not isinstance(channels, list) or not s_lo <= len(channels) <= s_hi or not all(
            type(c) is int and lo <= c <= hi for c in channels):
        raise bad(f"channels must be {s_lo} to {s_hi} integers in [{lo}, {hi}]")
    lo, hi = CONFIG_BOUNDS["blocks"]
    if type(config.get("blocks")) is not int or not lo <= config["blocks"] <= hi:
        raise bad(f"blocks must be an integer in [{lo}, {hi}]")
    return config
