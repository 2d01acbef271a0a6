"""The value rules of every subcommand's numeric options, checked before a command runs.

argparse checks types (``--epochs abc``); these rules check meaning (``--epochs 0``,
``--lam nan``). A broken rule is a usage error: ``cil-genreg CMD: error: ...``, exit status 2.
"""
from ..utilities.validation import check_fraction, check_int, check_non_negative, check_positive


def _count(value, name):
    return check_int(value, name, low=1)


def _device_name(value, name):
    """A device name torch can parse (whether this machine has it is checked when used)."""
    import torch
    try:
        torch.device(value)
    except (RuntimeError, ValueError):
        raise ValueError(f"{name} {value!r} is not a device: use cpu, cuda or cuda:N.") from None


#: option (argparse ``dest``) -> check, per subcommand; lists (``nargs``) are checked per item.
RULES = {
    "train": {"epochs": _count, "batch_size": _count, "width": _count, "latent_dim": _count,
              "threads": _count, "n": _count, "size": _count, "lr": check_positive,
              "beta": check_non_negative, "kl_warmup": check_non_negative,
              "val_fraction": check_fraction, "device": _device_name, "angles": _count,
              "sigma_range": check_non_negative, "noise": check_non_negative,
              "limited_span": check_positive, "dose": check_positive},
    "evaluate-model": {"n": _count, "steps": _count, "threads": _count, "lr": check_positive,
                       "reg": check_non_negative, "device": _device_name},
    "fit-prior": {"n": _count, "rank": _count, "shrinkage": check_positive,
                  "augment": check_non_negative, "device": _device_name},
    "demo": {"n": _count, "angles": _count, "iterations": _count},
    "reconstruct": {"lam": check_positive, "sigma": check_positive, "mu": check_non_negative,
                    "iterations": _count, "image_size": _count, "angles_deg": _count,
                    "panel": _count, "start_lam": check_positive, "device": _device_name,
                    "samples": _count, "chains": _count, "inner_iterations": _count,
                    "tau": check_positive,
                    "burn_in": lambda value, name: check_int(value, name, low=0)},
}


def check_options(args):
    """Apply :data:`RULES` to the parsed options of ``args.command``.

    Parameters
    ----------
    args : argparse.Namespace

    Raises
    ------
    ValueError, TypeError
        naming the option (``--batch-size must be an integer >= 1, got 0.``).
    """
    for dest, rule in RULES.get(args.command, {}).items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        name = "--" + dest.replace("_", "-")
        for item in value if isinstance(value, list) else [value]:
            rule(item, name)
