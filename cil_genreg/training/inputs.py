"""What a training run trains and on what: the model (a generative model, a Plug-and-Play
denoiser or a post-processing network, fresh or given) and its training batch: images
(N, 1, H, W) in [0, 1], or for a post-processing network pairs (N, 2, H, W) of FBP images and
truths, kept as they are (an FBP image is not in [0, 1] and must not be rescaled)."""
import numpy as np
import torch

from ..datasets._common import image_batch
from ..models import architectures as _arch
from ..models.denoiser import NETWORK_ALIASES, NETWORK_ARCHITECTURES, build_network

#: ``train(model=...)`` aliases of the architectures
ALIASES = dict({"autoencoder": "ae", "wgan": "gan"}, **NETWORK_ALIASES)


def arch_of(model):
    """The architecture name of ``model`` (a package model or a name, aliases allowed).

    Parameters
    ----------
    model : str or torch.nn.Module

    Returns
    -------
    str

    Raises
    ------
    ValueError
        for an unknown name.
    """
    if isinstance(model, torch.nn.Module):
        return model.config["arch"]
    arch = ALIASES.get(str(model).lower(), str(model).lower())
    known = _arch.ARCHITECTURES + NETWORK_ARCHITECTURES
    if arch not in known:
        raise ValueError(f"model must be one of {list(known)} (or {list(NETWORK_ALIASES)}), "
                         f"got {model!r}.")
    return arch


def training_batch(data, arch, name="data"):
    """The training tensor of ``arch``: images (N, 1, H, W) in [0, 1]
    (:func:`~cil_genreg.datasets._common.image_batch`), or, for ``"fbpconvnet"``, pairs
    (N, 2, H, W) as given (FBP image, truth), float32.

    Parameters
    ----------
    data : array_like
    arch : str
    name : str
        what messages call it.

    Returns
    -------
    torch.Tensor

    Raises
    ------
    ValueError
        for pairs of another shape, or NaN / Inf in them.
    """
    if arch != "fbpconvnet":
        return image_batch(data, name)
    pairs = np.ascontiguousarray(np.asarray(data, dtype=np.float32))
    if pairs.ndim != 4 or pairs.shape[1] != 2:
        raise ValueError(f"{name}: a post-processing network trains on pairs (N, 2, H, W) "
                         "(FBP image, truth), e.g. from "
                         f"cil_genreg.experiments.postprocess_data.fbp_pairs; got {pairs.shape}.")
    if not np.isfinite(pairs).all():
        raise ValueError(f"{name}: the pairs hold NaN or Inf values.")
    return torch.from_numpy(pairs)


def model_and_arch(model, image_shape, latent_dim, width):
    """The network to train and its architecture name: ``model`` itself, or a new one of that
    name (a network's channels are (width, 2 width, 4 width)).

    Parameters
    ----------
    model : str or torch.nn.Module
    image_shape : (int, int)
        the data's.
    latent_dim, width : int

    Returns
    -------
    (torch.nn.Module, str)

    Raises
    ------
    ValueError
        for an unknown name, or a generator of other images than the data.
    """
    arch = arch_of(model)
    if isinstance(model, torch.nn.Module):
        if arch not in NETWORK_ARCHITECTURES and tuple(model.image_shape) != image_shape:
            raise ValueError(f"the model makes {model.image_shape} images but data are "
                             f"{image_shape}.")
        return model, arch
    if arch in NETWORK_ARCHITECTURES:
        return build_network(arch, image_shape, channels=(width, 2 * width, 4 * width)), arch
    return _arch.build(arch, latent_dim=latent_dim, image_shape=image_shape, width=width), arch
