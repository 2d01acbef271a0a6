"""Saving and resuming a training run: the generator as a safetensors checkpoint, and beside it
(``PATH + ".state.pt"``) the training state, a plain dict of tensors and numbers read back with
``torch.load(weights_only=True)``. Both are written atomically after each epoch."""
import os
import pickle
import platform
import warnings
from datetime import datetime, timezone

import numpy as np
import torch
from tqdm.auto import tqdm

from ..models.checkpoints import atomic_write, save as save_checkpoint
from ..utilities.validation import InputError
from .guards import resume_from_weights

#: what is appended to a checkpoint path for its training state
STATE_SUFFIX = ".state.pt"
#: the metadata key of the held-out PSNR, per architecture (default: reconstruction)
VALIDATION_KEYS = {"gan": "held_out_latent_fit_psnr_db", "drunet": "held_out_denoising_psnr_db",
                   "fbpconvnet": "held_out_postprocessing_psnr_db"}


def state_path(checkpoint):
    """Where the training state of ``checkpoint`` lives (None without a checkpoint).

    Parameters
    ----------
    checkpoint : str or os.PathLike or None

    Returns
    -------
    str or None
    """
    return (os.fspath(checkpoint) + STATE_SUFFIX) if checkpoint else None


def refuse_overwrite(checkpoint):
    """Raise FileExistsError when ``checkpoint`` or its training state exists (a new run must
    not replace a trained model without being asked).

    Parameters
    ----------
    checkpoint : str or os.PathLike

    Raises
    ------
    FileExistsError
    """
    taken = [f for f in (os.fspath(checkpoint), state_path(checkpoint)) if os.path.exists(f)]
    if taken:
        raise FileExistsError(
            f"{taken[0]!r} exists: continue that run with resume=True (--resume), choose "
            "another checkpoint path (--out), or pass overwrite=True (--overwrite) to "
            "start afresh and replace it.")


def load_state(trainer, path, n, progress=True):
    """Restore a trainer's weights, optimiser states and random stream from ``path``.

    Parameters
    ----------
    trainer : Trainer
    path : str
        the training state written by :func:`save_state`.
    n : int
        the number of training images of this run (a mismatch is warned about).
    progress : bool
        unused (kept for callers); the messages about a missing state always go to stderr.

    Returns
    -------
    tuple
        ``(epoch, history)``: the epochs done and their records; without a state, the epochs
        of the checkpoint's weights (:func:`.guards.resume_from_weights`) and ``[]``.
    """
    if not os.path.isfile(path):
        return resume_from_weights(trainer), []
    net, device = trainer.net, trainer.device
    state = read_state(path, device)
    if state["config"] != net.config:
        raise ValueError(f"cannot resume: {path!r} holds a {state['config']} model "
                         f"but this run builds {net.config}; use the same --model, "
                         "--latent-dim and data, or another --out.")
    if state.get("n_images") != n:
        tqdm.write(f"warning: resuming on {n} images; the saved run used "
                   f"{state.get('n_images')}.")
    net.load_state_dict(state["model"])
    trainer.opt.load_state_dict(state["optimizer"])
    if trainer.critic is not None:
        trainer.critic.load_state_dict(state["critic"])
        trainer.opt_critic.load_state_dict(state["optimizer_critic"])
    torch.set_rng_state(state["rng"].cpu())
    if device.type == "cuda" and "cuda_rng" in state:
        torch.cuda.set_rng_state(state["cuda_rng"].cpu())
    return int(state["epoch"]), list(state["history"])


#: what every training state holds
STATE_KEYS = ("epoch", "config", "model", "optimizer", "rng", "history")


def read_state(path, device="cpu"):
    """The training state dict at ``path``, read without running code (``weights_only``).

    Raises
    ------
    InputError
        when the file is damaged (truncated, altered), holds pickled objects, or lacks what a
        training state holds; the message names the file and what to do. Nothing is changed.
    """
    checkpoint = path[:-len(STATE_SUFFIX)] if path.endswith(STATE_SUFFIX) else path
    fix = (f"nothing was changed. Move {path!r} aside and run again with --resume to continue "
           f"from the weights in {checkpoint!r} alone (the optimiser starts afresh), or pass "
           "--overwrite to start over.")
    try:
        with warnings.catch_warnings():  # torch warns at length about what it refuses
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        untrusted = "weights only load failed" in str(err).lower()
        raise InputError(f"cannot resume: the training state {path!r} "
                         + ("holds Python objects that are not tensors or numbers, never "
                            "loaded (they could run code)" if untrusted else "is damaged (not a readable state)")
                         + f"; {fix}") from None
    except Exception as err:  # noqa: BLE001 - torch raises many kinds for a damaged file
        raise InputError(f"cannot resume: the training state {path!r} is damaged (truncated or "
                         f"altered: torch's reader stopped with {type(err).__name__}); "
                         f"{fix}") from None
    if not isinstance(state, dict) or any(k not in state for k in STATE_KEYS):
        raise InputError(f"cannot resume: {path!r} is not a training state written by "
                         f"cil-genreg train (it lacks {', '.join(STATE_KEYS)}); {fix}")
    return state


def save_state(trainer, epoch, history, info):
    """Write the generator checkpoint and the training state after ``epoch`` epochs.

    Parameters
    ----------
    trainer : Trainer
        with ``checkpoint`` set.
    epoch : int
        epochs completed.
    history : list of dict
        the per-epoch records so far.
    info : dict
        facts for the checkpoint's metadata (architecture, seed, command, ...).

    Returns
    -------
    None
    """
    net, device, n = trainer.net, trainer.device, trainer.n
    state = {"epoch": epoch, "config": net.config, "model": net.state_dict(),
             "optimizer": trainer.opt.state_dict(), "rng": torch.get_rng_state(),
             "history": history, "n_images": n}
    if trainer.critic is not None:
        state["critic"] = trainer.critic.state_dict()
        state["optimizer_critic"] = trainer.opt_critic.state_dict()
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state()
    atomic_write(state_path(trainer.checkpoint), lambda tmp: torch.save(state, tmp))
    last = history[-1]
    meta = {k: v for k, v in info.items() if v is not None}
    meta.update({
        "epochs": epoch, "epochs_planned": trainer.epochs, "n_train_images": n,
        "final_loss": last["loss"],
        "images_per_second": float(np.mean([h["images_per_second"] for h in history])),
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__, "machine": platform.machine(), "device": str(device)})
    meta["training_seconds"] = float(sum(h["seconds"] for h in history))
    if "val_psnr_db" in last:
        key = VALIDATION_KEYS.get(info.get("arch"), "held_out_reconstruction_psnr_db")
        meta[key] = last["val_psnr_db"]
    if "val_nll_per_pixel" in last:
        meta["held_out_nll_nats_per_pixel"] = last["val_nll_per_pixel"]
    save_checkpoint(net, trainer.checkpoint, meta)
