"""Checkpoints that cannot run code when loaded: safetensors weights plus JSON metadata.

A checkpoint is one ``.safetensors`` file (https://github.com/huggingface/safetensors): a
little-endian u64 header length ``N``, ``N`` bytes of JSON describing the tensors, then the raw
tensor bytes. Nothing in it is executed when it is read, unlike a pickle (``torch.save``).
The header's ``__metadata__`` (string -> string) holds one key, ``"cil_genreg"``, a JSON object::

    {"format": "cil_genreg.generator", "format_version": 1, "kind": "generator",
     "config": {"arch": "vae", "latent_dim": 16, "image_shape": [28, 28], "width": 16},
     "intensity_range": [0.0, 1.0],
     "metadata": {... dataset, split, epochs, held-out error, training command, ...}}

``"kind"`` says what the file is: ``"generator"`` (absent in older files), ``"denoiser"``
(:class:`~.denoiser.DRUNetDenoiser`) or ``"postprocess"``
(:class:`~.denoiser.PostProcessingUNet`); ``load(path, kind=...)`` refuses a file of another
kind with a message naming what it is. The tensors are the model's ``state_dict`` (encoder and decoder for a VAE/AE, the generator of
a GAN). :func:`load` checks everything before building the model (:mod:`.header` reads the
header without trusting it) and refuses, with an error that names the problem and what to do:
a pickle / ``torch.save`` file (never unpickled), a truncated or corrupt file, a folder, FIFO or
device, a file without cil_genreg metadata, an unknown architecture, a config out of bounds,
weights that do not match the metadata (missing, unexpected or mis-shaped tensors: compared on
the header before any model is built, so a small file cannot make :func:`load` allocate a large
model), and weights holding NaN or Inf.
"""
import json
import os
import tempfile

import torch

from .architectures import ARCHITECTURES, INTENSITY_RANGE, build
from ..utilities.validation import check_device
from .denoiser import (DESCRIPTIONS, KINDS, NETWORK_ARCHITECTURES, USES, build_network,
                       kind_of)
from .header import CheckpointError, check_config, checkpoint_path, read_header

#: value of ``"format"`` in the metadata of every checkpoint this module writes.
FORMAT = "cil_genreg.generator"
#: version of that format, written as ``"format_version"``.
FORMAT_VERSION = 1
#: the key of the safetensors ``__metadata__`` entry that holds the cil_genreg JSON.
META_KEY = "cil_genreg"
#: the prefix of the tensors of a fitted latent prior (:mod:`.latent_prior`) in a checkpoint.
PRIOR_PREFIX = "latent_prior."


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
    if not isinstance(config, dict) or config.get("arch") not in \
            ARCHITECTURES + NETWORK_ARCHITECTURES:
        raise TypeError(
            f"cannot save a {type(generator).__name__}: save() writes the package's models "
            "(cil_genreg.models.VAE, Autoencoder, WGANGenerator, made by models.build(); "
            "DRUNetDenoiser, PostProcessingUNet, made by models.build_network()). For "
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

    from .latent_prior import WhitenedGenerator
    prior = getattr(generator, "latent_prior", None)
    if isinstance(generator, WhitenedGenerator):  # the model and its prior
        generator, prior = generator.generator, generator.prior
    config = _config_of(generator)
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": config,
              "kind": kind_of(generator),
              "intensity_range": list(getattr(generator, "intensity_range", INTENSITY_RANGE)),
              "metadata": dict(metadata or {})}
    if prior is not None:
        header["latent_prior"] = {"rank": prior.rank, "shrinkage": prior.shrinkage}
    try:
        text = json.dumps(header, sort_keys=True)
    except TypeError as err:
        raise TypeError(f"metadata must be JSON-serialisable: {err}") from None
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in generator.state_dict().items()}
    if prior is not None:
        tensors.update({PRIOR_PREFIX + k: v.detach().to("cpu").contiguous()
                        for k, v in prior.state_dict().items()})
    broken = [k for k, v in tensors.items() if v.is_floating_point() and
              not bool(torch.isfinite(v).all())]
    if broken:
        raise ValueError(f"not saving {path!r}: the weights hold NaN or Inf ({broken[0]}); a "
                         "model like that reconstructs nothing (did its training diverge?).")
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={META_KEY: text}))


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
    kind = meta.setdefault("kind", "generator")
    if kind != KINDS.get(config["arch"], "generator"):
        raise CheckpointError(f"{path!r}: the metadata's kind {kind!r} does not match its "
                              f"architecture {config['arch']!r}; save the model again with "
                              "cil_genreg.models.save.")
    if not isinstance(meta.get("metadata", {}), dict):
        raise CheckpointError(f"{path!r}: the cil_genreg metadata's 'metadata' entry is not a "
                              "JSON object; save the model again with cil_genreg.models.save.")
    return meta


def load(path, map_location="cpu", kind=None):
    """The model stored in a safetensors checkpoint (a generator, a denoiser or a
    post-processing network), in eval mode.

    Parameters
    ----------
    path : str
        a file written by :func:`save` (or by ``cil-genreg train``).
    map_location : str or torch.device
        where to put the weights (default CPU).
    kind : {None, "generator", "denoiser", "postprocess"}
        what the caller needs: a file of another kind is refused, naming what it is (None:
        any).

    Returns
    -------
    VAE, Autoencoder, WGANGenerator, DRUNetDenoiser or PostProcessingUNet
        ``model.metadata`` holds the checkpoint's metadata.

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
    ValueError, RuntimeError
        for an unknown ``map_location``, or a GPU this machine does not have
        (:func:`cil_genreg.utilities.validation.check_device`).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = checkpoint_path(path)
    map_location = check_device(map_location)
    header = read_header(path)
    meta = read_metadata(path)
    check_kind(path, meta["kind"], kind)
    config = dict(meta["config"])
    arch = config.pop("arch")
    make = build_network if arch in NETWORK_ARCHITECTURES else build
    try:
        with torch.device("meta"):  # shapes only: nothing is allocated
            expected = {k: tuple(v.shape) for k, v in make(arch, **config).state_dict().items()}
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path!r}: the metadata's config {meta['config']} does not "
                              f"describe a valid model ({err}).") from None
    prior_meta = _prior_meta(path, meta, config.get("latent_dim", 0))
    if prior_meta is not None:
        d, k = config["latent_dim"], prior_meta["rank"]
        expected.update({PRIOR_PREFIX + "mean": (d,), PRIOR_PREFIX + "basis": (d, k),
                         PRIOR_PREFIX + "variances": (k,)})
    stored = {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}
    _check_tensors_match(path, meta, expected, stored,
                         [k for k, v in header.items() if k != "__metadata__" and
                          v["dtype"] != "F32"])
    model = make(arch, **config)
    try:
        tensors = load_file(path, device="cpu")  # checked on the CPU, then moved
    except (SafetensorError, OSError, RuntimeError) as err:
        raise CheckpointError(f"{path!r} is corrupt ({err}); write it again.") from None
    broken = [k for k, t in tensors.items() if not bool(torch.isfinite(t).all())]
    if broken:
        raise CheckpointError(
            f"{path!r}: the weights hold NaN or Inf ({broken[:3]}{' ...' if len(broken) > 3 else ''})"
            ": the training that wrote it diverged. Train again with a lower --lr.")
    prior = {k[len(PRIOR_PREFIX):]: tensors.pop(k) for k in list(tensors)
             if k.startswith(PRIOR_PREFIX)}
    model.load_state_dict(tensors)
    if prior_meta is not None:
        from .latent_prior import LatentGaussian, attach_prior
        try:
            attach_prior(model, LatentGaussian(**prior, shrinkage=prior_meta["shrinkage"]))
        except ValueError as err:
            raise CheckpointError(f"{path!r}: its latent prior is invalid ({err}); fit it again "
                                  "with `cil-genreg fit-prior`.") from None
    model.metadata = meta.get("metadata", {})
    return model.to(map_location).eval()


def check_kind(path, found, wanted):
    """Refuse a checkpoint of kind ``found`` where ``wanted`` is needed (None: any).

    Parameters
    ----------
    path : str
    found, wanted : str or None
        "generator", "denoiser" or "postprocess".

    Raises
    ------
    CheckpointError
        naming what the file is and where it is used.
    """
    if wanted is not None and found != wanted:
        raise CheckpointError(f"{path!r} is {DESCRIPTIONS[found]} checkpoint, not "
                              f"{DESCRIPTIONS[wanted]}. {USES[found]}")


def _prior_meta(path, meta, latent_dim):
    """The checkpoint's latent-prior entry ({"rank", "shrinkage"}), checked; None if none."""
    entry = meta.get("latent_prior")
    if entry is None:
        return None
    try:
        rank, shrinkage = entry["rank"], float(entry["shrinkage"])
        ok = isinstance(rank, int) and 1 <= rank <= latent_dim and shrinkage > 0
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise CheckpointError(f"{path!r}: the metadata's latent_prior entry {entry!r} is "
                              f"malformed (needs an integer rank in [1, {latent_dim}] and a "
                              "shrinkage > 0); fit the prior again with `cil-genreg fit-prior`.")
    return {"rank": rank, "shrinkage": shrinkage}


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
