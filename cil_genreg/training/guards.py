"""What keeps a training from losing or corrupting a model: meaningless settings and constant
data are refused before anything runs, one run at a time writes a checkpoint (a lock), a run
without its saved state resumes from the checkpoint's weights, and a loss or weights that turn
NaN or Inf stop the run before anything non-finite is written."""
import functools
import inspect
import math
import os
import sys

import torch

from ..utilities.output_safety import OutputLock, check_output_file
from ..utilities.validation import UserError, check_int, check_non_negative, check_positive


class TrainingDivergedError(UserError, RuntimeError):
    """The loss or the weights became NaN or Inf: training stops, and nothing non-finite is
    written (the checkpoint of the last good epoch, if any, is kept)."""


def locked_checkpoint(function):
    """Run ``function`` holding :class:`~cil_genreg.utilities.output_safety.OutputLock` on its
    ``checkpoint`` argument (a folder or a path under a file refused first), so that two
    trainings writing one checkpoint cannot both run.

    Parameters
    ----------
    function : callable
        takes a ``checkpoint`` argument (None: no lock).

    Returns
    -------
    callable
    """
    signature = inspect.signature(function)

    @functools.wraps(function)
    def locked(*args, **kwargs):
        checkpoint = signature.bind(*args, **kwargs).arguments.get("checkpoint")
        # under torchrun only rank 0 writes, so only rank 0 takes the lock
        if not checkpoint or int(os.environ.get("RANK", "0")) != 0:
            return function(*args, **kwargs)
        check_output_file(checkpoint, overwrite=True, what="checkpoint")
        with OutputLock(checkpoint, what="checkpoint"):
            return function(*args, **kwargs)
    return locked


def check_settings(epochs, batch_size, lr, latent_dim, width, beta, kl_warmup_epochs, threads):
    """Refuse meaningless training settings before any data is touched.

    Raises
    ------
    ValueError, TypeError
        naming the setting.
    """
    for name, value in (("epochs", epochs), ("batch_size", batch_size),
                        ("latent_dim", latent_dim), ("width", width)):
        check_int(value, name)
    if lr is not None:
        check_positive(lr, "lr")
    check_non_negative(beta, "beta")
    check_non_negative(kl_warmup_epochs, "kl_warmup_epochs")
    if threads is not None:
        check_int(threads, "threads")


def check_sigma_range(sigma_range):
    """Refuse a denoiser's noise-level range that is not ``0 <= lo <= hi``, ``hi > 0``.

    Raises
    ------
    ValueError
    """
    try:
        lo, hi = (float(s) for s in sigma_range)
    except (TypeError, ValueError):
        raise ValueError(f"sigma_range must be two numbers (lo, hi), got {sigma_range!r}.") \
            from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo <= hi and hi > 0):
        raise ValueError(f"sigma_range must have 0 <= lo <= hi and hi > 0 (noise standard "
                         f"deviations, images in [0, 1]), got ({lo:g}, {hi:g}).")


def check_not_constant(x, name="data"):
    """Refuse images that are one constant value throughout (nothing to learn).

    Raises
    ------
    ValueError
    """
    lo, hi = float(x.min()), float(x.max())
    if lo == hi:
        raise ValueError(f"{name}: every pixel of every image is {lo:g}, so there is nothing to "
                         "learn; check the files (an empty or wrongly scaled folder?).")


def resume_from_weights(trainer):
    """Where ``trainer.checkpoint`` exists without its training state: load its weights into
    the trainer's model (said on stderr) and return the epochs they were trained for; 0 when
    there is no checkpoint either.

    Raises
    ------
    ValueError
        when the checkpoint holds another model, or does not say how long it was trained.
    """
    from ..models.checkpoints import load as load_checkpoint

    path, net = os.fspath(trainer.checkpoint), trainer.net
    if not os.path.isfile(path):
        print(f"no checkpoint or training state at {path!r}: starting from epoch 0.",
              file=sys.stderr)
        return 0
    saved = load_checkpoint(path)
    done = saved.metadata.get("epochs")
    if saved.config != net.config:
        raise ValueError(f"cannot resume: {path!r} holds a {saved.config} model but this run "
                         f"builds {net.config}; use the same --model, --latent-dim, --width and "
                         "data, or another --out.")
    if type(done) is not int or done < 1:
        raise ValueError(f"cannot resume: {path!r} does not say how many epochs it was trained "
                         "for (and has no training state): choose another --out, or pass "
                         "--overwrite to start afresh and replace it.")
    net.load_state_dict(saved.state_dict())
    print(f"note: no training state beside {path!r}: continuing from its weights (epoch "
          f"{done}); the optimiser and random stream start afresh, so the result will differ "
          "from an uninterrupted run.", file=sys.stderr)
    return done


def stop_if_diverged(trainer, record):
    """A :class:`~cil_genreg.training.Trainer` callback: raise
    :class:`TrainingDivergedError` when the epoch's loss or the weights are not finite (the
    checkpoint is written after the callbacks, so nothing non-finite reaches it).

    Parameters
    ----------
    trainer : Trainer
    record : dict
        the epoch's record (``epoch``, ``loss``, ...).
    """
    what = None
    if not math.isfinite(record["loss"]):
        what = f"the loss is {record['loss']} in epoch {record['epoch']}"
    else:
        broken = [k for k, v in trainer.net.state_dict().items()
                  if v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if broken:
            what = f"the weights hold NaN or Inf after epoch {record['epoch']} ({broken[0]})"
    if what is None:
        return
    checkpoint = trainer.checkpoint
    kept = (f"; {os.fspath(checkpoint)!r} still holds the last good epoch"
            if checkpoint and os.path.exists(checkpoint) else "; nothing was written")
    raise TrainingDivergedError(f"training diverged: {what}{kept}. Lower the learning rate "
                                f"(--lr, now {trainer.lr:g}) and train again.")
