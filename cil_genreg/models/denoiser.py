r"""The networks the generative regularisers are compared with, trained on the same images:

* :class:`DRUNetDenoiser`, a DRUNet-style denoiser (Zhang et al., *Plug-and-Play Image
  Restoration with Deep Denoiser Prior*, TPAMI 2021) for Plug-and-Play: the noisy image and a
  constant noise-level map :math:`\sigma` in, the clean image out, :math:`D_\sigma(v)`;
* :class:`PostProcessingUNet`, FBPConvNet (Jin et al., *Deep Convolutional Neural Network for
  Inverse Problems in Imaging*, IEEE TIP 2017): a residual U-Net on the FBP image of one
  scanning geometry, :math:`P(x_0) = x_0 + U(x_0)`.

Both are the same residual U-Net (:class:`ResidualUNet`), fully convolutional (any side
divisible by :math:`2^{S-1}`, S the number of scales), with bias-free convolutions as in
DRUNet (a network without biases commutes with scaling its input and noise level together).
They are not generators: their ``kind`` (``"denoiser"``, ``"postprocess"``) is written in
their checkpoints, and :func:`cil_genreg.models.load` with ``kind="generator"`` refuses them
by name (and the reverse).
"""
import torch
from torch import nn

#: what each network is, as written in the ``kind`` entry of its checkpoint
KINDS = {"drunet": "denoiser", "fbpconvnet": "postprocess"}
#: the ``arch`` keys of :func:`build_network` (the checkpoints' ``config["arch"]``)
NETWORK_ARCHITECTURES = tuple(KINDS)
#: ``cil-genreg train --model`` names of the networks
NETWORK_ALIASES = {"denoiser": "drunet", "postprocess": "fbpconvnet"}
#: a sentence per kind, for error messages that say what a file is
DESCRIPTIONS = {"generator": "a generator (VAE, autoencoder or GAN decoder: z -> G(z))",
                "denoiser": "a Plug-and-Play denoiser D_sigma(v) (DRUNet-style)",
                "postprocess": "a post-processing network on FBP images (FBPConvNet)"}


def _conv(c_in, c_out):
    return nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)


class _ResBlock(nn.Module):
    """DRUNet's block: ``h + conv(ReLU(conv(h)))``, bias-free."""

    def __init__(self, channels):
        super().__init__()
        self.body = nn.Sequential(_conv(channels, channels), nn.ReLU(inplace=True),
                                  _conv(channels, channels))

    def forward(self, h):
        return h + self.body(h)


class ResidualUNet(nn.Module):
    r"""DRUNet's body: a U-Net of residual blocks with additive skips, bias-free,

    .. math:: U(x) = C_{out}\big(\mathrm{Up}_1(\dots \mathrm{Up}_{S-1}(B(h_{S-1})) + h_{S-2}
              \dots) + h_0\big), \qquad h_0 = C_{in}(x),\;
              h_{s} = \mathrm{Down}(R_s(h_{s-1})),

    :math:`R_s` ``blocks`` residual blocks at scale :math:`s`, Down a stride-2 2×2
    convolution, Up a stride-2 2×2 transposed convolution (each followed by ``blocks``
    residual blocks), :math:`C` 3×3 convolutions.

    Parameters
    ----------
    in_channels : int
    channels : sequence of int
        channels per scale, finest first (default (16, 32, 64): three scales).
    blocks : int
        residual blocks per scale and direction (default 1).
    """

    def __init__(self, in_channels=1, channels=(16, 32, 64), blocks=1):
        super().__init__()
        ch = [int(c) for c in channels]
        if len(ch) < 1 or min(ch) < 1 or int(blocks) < 0:
            raise ValueError(f"channels must be positive (one per scale) and blocks >= 0, got "
                             f"{channels}, {blocks}.")
        self.factor = 2 ** (len(ch) - 1)
        self.head = _conv(in_channels, ch[0])
        self.down = nn.ModuleList(
            nn.Sequential(*[_ResBlock(ch[s]) for _ in range(blocks)],
                          nn.Conv2d(ch[s], ch[s + 1], 2, stride=2, bias=False))
            for s in range(len(ch) - 1))
        self.body = nn.Sequential(*[_ResBlock(ch[-1]) for _ in range(blocks)])
        self.up = nn.ModuleList(
            nn.Sequential(nn.ConvTranspose2d(ch[s + 1], ch[s], 2, stride=2, bias=False),
                          *[_ResBlock(ch[s]) for _ in range(blocks)])
            for s in reversed(range(len(ch) - 1)))
        self.tail = _conv(ch[0], 1)

    def forward(self, x):
        if x.shape[-1] % self.factor or x.shape[-2] % self.factor:
            raise ValueError(f"image of shape {tuple(x.shape[-2:])}: both sides must be "
                             f"multiples of {self.factor} (2^(scales - 1)); crop or pad it.")
        skips, h = [], self.head(x)
        for down in self.down:
            skips.append(h)
            h = down(h)
        h = self.body(h)
        for up in self.up:
            h = up(h) + skips.pop()
        return self.tail(h)


class _Network(nn.Module):
    """The common part: config (what :func:`build_network` takes), kind, image shape."""

    arch = None
    in_channels = 1

    def __init__(self, image_shape=(128, 128), channels=(16, 32, 64), blocks=1):
        super().__init__()
        side = image_shape if isinstance(image_shape, int) else image_shape[0]
        self.image_shape = (int(side), int(side))
        self.channels, self.blocks = tuple(int(c) for c in channels), int(blocks)
        self.kind = KINDS[self.arch]
        self.unet = ResidualUNet(self.in_channels, self.channels, self.blocks)

    @property
    def config(self):
        """arch, image_shape (the training images'), channels, blocks."""
        return {"arch": self.arch, "image_shape": list(self.image_shape),
                "channels": list(self.channels), "blocks": self.blocks}


class DRUNetDenoiser(_Network):
    r"""A DRUNet-style Gaussian denoiser with a noise-level map (Zhang et al. 2021),

    .. math:: D_\sigma(v) = U([v, \sigma \mathbf 1]),

    :math:`U` a :class:`ResidualUNet` of two input channels, the image and the constant map
    :math:`\sigma`. Trained (``cil-genreg train --model denoiser``) on
    :math:`\|D_\sigma(x + \sigma n) - x\|_2^2`, :math:`n \sim N(0, I)`,
    :math:`\sigma \sim U(\sigma_{min}, \sigma_{max})` per image, on images in [0, 1].
    ``model(v, sigma)`` takes v (B, 1, H, W) and sigma a number or (B,).

    Parameters
    ----------
    image_shape : int or (int, int)
        the training images' (the network runs at any size its scales divide).
    channels : sequence of int
        per scale, finest first (default (16, 32, 64)).
    blocks : int
        residual blocks per scale (default 1).
    """

    arch = "drunet"
    in_channels = 2

    def forward(self, v, sigma):
        sigma = torch.as_tensor(sigma, dtype=v.dtype, device=v.device).reshape(-1, 1, 1, 1)
        level = sigma.expand(v.shape[0], 1, *v.shape[-2:])
        return self.unet(torch.cat([v, level], dim=1))


class PostProcessingUNet(_Network):
    r"""FBPConvNet (Jin et al. 2017): a residual U-Net on the FBP image of one geometry,

    .. math:: P(x_0) = x_0 + U(x_0),

    trained (``cil-genreg train --model postprocess``) on pairs (FBP of the simulated data,
    truth) of that geometry, on :math:`\|P(x_0) - x\|_2^2`. The geometry and measurement
    (physics, dose or noise) it was trained for are in its checkpoint's metadata
    (``"geometry"``); applied to another one it warns
    (:func:`cil_genreg.experiments.methods.reconstruct`).

    Parameters
    ----------
    image_shape : int or (int, int)
    channels : sequence of int
        per scale, finest first (default (16, 32, 64)).
    blocks : int
        residual blocks per scale (default 1).
    """

    arch = "fbpconvnet"

    def forward(self, x0):
        return x0 + self.unet(x0)


_NETWORKS = {"drunet": DRUNetDenoiser, "fbpconvnet": PostProcessingUNet}


def build_network(arch, image_shape=(128, 128), channels=(16, 32, 64), blocks=1):
    """A new (untrained) denoiser or post-processing network.

    Parameters
    ----------
    arch : {"drunet", "fbpconvnet", "denoiser", "postprocess"}
    image_shape : int or (int, int)
        the training images' side.
    channels : sequence of int
        per scale, finest first.
    blocks : int
        residual blocks per scale.

    Returns
    -------
    DRUNetDenoiser or PostProcessingUNet
        on the CPU, float32, in training mode.

    Raises
    ------
    ValueError
        for an unknown ``arch`` or bad channels.
    """
    key = NETWORK_ALIASES.get(str(arch).lower(), str(arch).lower())
    if key not in _NETWORKS:
        raise ValueError(f"unknown network {arch!r}: choose one of {list(_NETWORKS)}.")
    return _NETWORKS[key](image_shape=image_shape, channels=channels, blocks=blocks)


def kind_of(module):
    """What a module is: its ``kind`` attribute, ``"generator"`` when it has none.

    Parameters
    ----------
    module : torch.nn.Module

    Returns
    -------
    str
    """
    return getattr(module, "kind", "generator")


def require_kind(module, kind, where):
    """Refuse a module of another kind than ``kind``, saying what it is and where it goes.

    Parameters
    ----------
    module : torch.nn.Module
    kind : {"generator", "denoiser", "postprocess"}
    where : str
        what wanted it, for the message.

    Returns
    -------
    torch.nn.Module
        ``module``.

    Raises
    ------
    TypeError
    """
    found = kind_of(module)
    if found != kind:
        raise TypeError(f"{where} needs {DESCRIPTIONS[kind]}, but got {DESCRIPTIONS[found]} "
                        f"({type(module).__name__}). " + USES[found])
    return module


#: where each kind of model is used, for the messages of a model used in the wrong place
USES = {"generator": "Use it with the generative regularisers (SoftGenerativeRegulariser, ...).",
        "denoiser": "Use it with cil_genreg.functions.DenoiserPrior or "
        "cil_genreg.algorithms.PlugAndPlayHQS (methods 'pnp', 'dpir', --denoiser).",
        "postprocess": "Use it with method 'postprocess' (--postprocess)."}
