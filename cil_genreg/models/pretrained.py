"""Models shipped inside the package: ``cil_genreg/models/weights/<name>.safetensors``.

Each has a model card ``<name>.md`` beside it (data, split, command, held-out latent-fit PSNR).
"""
from importlib import resources

from .checkpoints import load

WEIGHTS = "weights"


def _weights_dir():
    return resources.files("cil_genreg.models").joinpath(WEIGHTS)


def available_pretrained():
    """Names of the shipped models.

    Returns
    -------
    list of str
        sorted, e.g. ``["mnist-vae", "shapes-vae"]``; empty when none ships.
    """
    d = _weights_dir()
    if not d.is_dir():
        return []
    return sorted(p.name[:-len(".safetensors")] for p in d.iterdir()
                  if p.name.endswith(".safetensors"))


def pretrained_path(name):
    """Path of a shipped model's safetensors file.

    Parameters
    ----------
    name : str
        one of :func:`available_pretrained`.

    Returns
    -------
    str

    Raises
    ------
    KeyError
        for an unknown name (the message lists the available ones).
    """
    names = available_pretrained()
    if name not in names:
        raise KeyError(f"no pretrained model {name!r}; available: {names}. Train your own with "
                       "`cil-genreg train` and load it with cil_genreg.models.load(path).")
    return str(_weights_dir().joinpath(name + ".safetensors"))


def pretrained(name, map_location="cpu"):
    """A shipped generator in eval mode, e.g. ``pretrained("mnist-vae")``.

    Parameters
    ----------
    name : str
        one of :func:`available_pretrained`.
    map_location : str or torch.device
        where to load the weights.

    Returns
    -------
    torch.nn.Module
        the model (a generator: ``model(z)`` decodes), with ``latent_dim``, ``image_shape``
        and ``metadata`` (the training facts, see the model card ``<name>.md``).

    Raises
    ------
    KeyError
        for an unknown name.
    """
    return load(pretrained_path(name), map_location=map_location)
