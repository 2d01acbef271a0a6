"""The convolutional decoder (the generator) and encoder the package's models are built from.

Layout of the decoder (``width`` = w channels at the finest scale, ``s`` stride-2 stages)::

    z -> Linear(d, c_0 b^2) -> (c_0, b, b)                      dense latent (latent_grid = 0)
    z -> (c, g, g) -> Conv3x3(c, c_0)                           latent grid g (d = c g^2)
      -> SiLU
      -> s x [ConvTranspose4x4/2 -> SiLU -> Conv3x3 -> SiLU (-> res_blocks x ResidualBlock)]
      -> Conv3x3 -> sigmoid                                     (1, H, W)

Dense latent: ``H = b 2^s`` with ``s`` the largest number (at most 4) of halvings that leave
``b >= 4`` an integer, and at least 2; so 28 -> b = 7, s = 2; 64 -> b = 4, s = 4; 128 -> b = 8,
s = 4. Latent grid: the latent is an image of ``c`` channels on a ``g x g`` grid, ``H = g 2^s``
(e.g. 128 = 32 * 2^2): the decoder is fully convolutional, each latent pixel shapes its own
neighbourhood, which is what lets a model of real CT slices keep their detail (a dense latent
of the same size blurs them: ``models/weights/ct-vae-128.md``). Channels are
``min(w 2^(s-i), 4 w)`` at stage ``i`` (coarsest first). Smooth activations (SiLU) keep
``z -> G(z)`` smooth for the latent optimisations of the regularisers. There is no batch
normalisation: the output for one latent never depends on the rest of the batch. The encoder
mirrors the decoder with stride-2 convolutions.
"""
import torch
from torch import nn

from .residual import ResidualBlock

#: initial bias of the last convolution: sigmoid(-2) = 0.12, a dark background to start from.
OUTPUT_BIAS = -2.0
#: batches of at least this many latents run the decoder's convolutions channels-last: 1.3x
#: faster per image at 64 digits on the 2-core CPU (benchmarks/README.md), no gain for a
#: single image. Its rounding differs from the contiguous layout's, so a batch of 16 or more
#: and the same latents one by one agree to rounding, not bit for bit.
CHANNELS_LAST_MIN_BATCH = 16


def stages(size):
    """Number ``s`` of stride-2 stages and base size ``b`` with ``size = b 2^s`` (dense latent,
    see the module docstring).

    Raises
    ------
    ValueError
        when ``size`` is not divisible by 4 or is smaller than 16.
    """
    size = int(size)
    s, b = 0, size
    while s < 4 and b % 2 == 0 and b // 2 >= 4:
        s, b = s + 1, b // 2
    if s < 2:
        raise ValueError(
            f"image size {size} is not supported by the convolutional models: the side must be "
            "divisible by 4 and at least 16 (e.g. 28, 32, 64, 128). Resize or crop the images "
            "(cil_genreg.datasets resize to 28/64/128).")
    return s, b


def grid_stages(size, latent_dim, grid):
    """``(s, c)`` of a latent grid ``g``: ``size = g 2^s`` (1 <= s <= 5) and ``d = c g^2``.

    Raises
    ------
    ValueError
        when ``size / g`` is not a power of two from 2 to 32, or ``d`` is not a multiple of
        ``g^2``.
    """
    size, latent_dim, grid = int(size), int(latent_dim), int(grid)
    ratio = size // grid if grid > 0 else 0
    if grid < 1 or ratio * grid != size or ratio not in (2, 4, 8, 16, 32):
        raise ValueError(
            f"latent_grid {grid} does not fit images of side {size}: the side must be the grid "
            "times 2, 4, 8, 16 or 32 (e.g. latent_grid 32 for 128x128 images).")
    if latent_dim % (grid * grid):
        raise ValueError(
            f"latent_dim {latent_dim} is not a multiple of latent_grid^2 = {grid * grid}: the "
            f"latent is c channels on the grid, d = c * {grid * grid} (e.g. "
            f"{2 * grid * grid} for c = 2).")
    return ratio.bit_length() - 1, latent_dim // (grid * grid)


def check_shape(image_shape):
    """``image_shape`` as a square ``(H, H)`` of a side the dense models support."""
    if isinstance(image_shape, int):
        image_shape = (image_shape, image_shape)
    image_shape = tuple(int(v) for v in image_shape)
    if len(image_shape) != 2 or image_shape[0] != image_shape[1]:
        raise ValueError(f"image_shape must be a square (H, H), got {image_shape}: the models "
                         "are for square images; crop or pad them first.")
    return image_shape


def channels(width, s):
    """Channels per scale, coarsest first: width * 2^(s-i), capped at 4 * width."""
    return [min(width * 2 ** (s - i), 4 * width) for i in range(s + 1)]


class Decoder(nn.Module):
    r"""The generator network :math:`G`: latents ``z`` (B, d) to images (B, 1, H, W) in [0, 1],

    .. math:: G(z) = \sigma\big(\mathrm{conv}_{3\times 3}(U_s \circ \dots \circ U_1(
              \mathrm{SiLU}(L z)))\big), \qquad
              U_i = R_i \circ \mathrm{SiLU} \circ \mathrm{conv}_{3\times 3} \circ \mathrm{SiLU}
              \circ \mathrm{convT}_{4\times 4, /2}

    with :math:`\sigma` the sigmoid, :math:`R_i` ``res_blocks`` residual blocks (or none), and
    :math:`L` an affine map ``W z + c`` reshaped to (c_0, b, b) (dense latent) or a 3×3
    convolution of ``z`` seen as ``c`` channels on a ``g x g`` grid (``latent_grid = g``); see
    the module docstring for the layout and the channel counts. The last convolution's bias
    starts at ``OUTPUT_BIAS``.

    Parameters
    ----------
    latent_dim : int
        :math:`d`.
    image_shape : int or (int, int)
        (H, H), square; dense latent: H divisible by 4 and at least 16; latent grid: H = g 2^s.
    width : int
        channels at the finest scale (default 16); coarser scales have up to ``4 * width``.
    res_blocks : int
        :class:`ResidualBlock` s after each :math:`U_i` (default 0: none).
    latent_grid : int
        ``g``: 0 (default) for a dense latent, else the side of the latent grid.

    Raises
    ------
    ValueError
        when ``image_shape`` is not square or its side is not supported (see :func:`stages`,
        :func:`grid_stages`).
    """

    def __init__(self, latent_dim, image_shape, width=16, res_blocks=0, latent_grid=0):
        super().__init__()
        self.latent_dim = int(latent_dim)
        self.image_shape = check_shape(image_shape)
        side = self.image_shape[0]
        if latent_grid:
            s, c = grid_stages(side, self.latent_dim, latent_grid)
            self.base, self.latent_channels = int(latent_grid), c
        else:
            s, self.base = stages(side)
        ch = channels(width, s)
        self.c0 = ch[0]
        if latent_grid:
            self.conv_in = nn.Conv2d(self.latent_channels, ch[0], 3, padding=1)
        else:
            self.fc = nn.Linear(self.latent_dim, ch[0] * self.base * self.base)
        blocks = []
        for i in range(s):
            blocks += [nn.ConvTranspose2d(ch[i], ch[i + 1], 4, stride=2, padding=1), nn.SiLU(),
                       nn.Conv2d(ch[i + 1], ch[i + 1], 3, padding=1), nn.SiLU()]
            blocks += [ResidualBlock(ch[i + 1]) for _ in range(int(res_blocks))]
        self.blocks = nn.Sequential(*blocks)
        self.out = nn.Conv2d(ch[-1], 1, 3, padding=1)
        nn.init.constant_(self.out.bias, OUTPUT_BIAS)

    def features(self, z):
        """The last feature map, (B, width, H, W): what the output convolution (and a
        structured model's precision head, :mod:`.structured`) reads."""
        if hasattr(self, "conv_in"):
            h = self.conv_in(z.reshape(-1, self.latent_channels, self.base, self.base))
        else:
            h = self.fc(z).reshape(-1, self.c0, self.base, self.base)
        if h.shape[0] >= CHANNELS_LAST_MIN_BATCH and h.device.type == "cpu":
            h = h.contiguous(memory_format=torch.channels_last)
        return self.blocks(nn.functional.silu(h))

    def forward(self, z):
        return torch.sigmoid(self.out(self.features(z)))


class Encoder(nn.Module):
    r"""Convolutional encoder :math:`E: x \in \mathbb{R}^{B \times 1 \times H \times W} \mapsto
    \mathbb{R}^{B \times \text{out\_features}}`,

    .. math:: E(x) = L\,(D_s \circ \dots \circ D_1(x)), \qquad
              D_i = \phi \circ \mathrm{conv}_{4\times 4, /2}

    the decoder's layout mirrored: ``s`` stride-2 convolutions (size halves, channels double
    up to ``4 * width``), then :math:`L`: one linear layer of the flattened (c, b, b) features
    (dense), or, with a latent grid, a 3×3 convolution to ``out_features / g^2`` channels on
    the ``g x g`` grid, flattened channel by channel (each :math:`D_i` then has a 3×3
    convolution and :math:`\phi` more, there being no dense layer to mix positions). No output
    activation.

    Parameters
    ----------
    image_shape : int or (int, int)
        (H, H), square (see :class:`Decoder`).
    out_features : int
        size of the output: ``2 d`` for a VAE (mean and log-variance), ``d`` for an autoencoder,
        1 for a critic.
    width : int
        channels at the finest scale (default 16).
    activation : {"silu", "leaky"}
        :math:`\phi`: ``"leaky"`` is LeakyReLU with slope 0.2 (the critic); any other value
        gives SiLU.
    latent_grid : int
        ``g`` (0: dense).

    Raises
    ------
    ValueError
        when ``image_shape`` is not square or its side is not supported.
    """

    def __init__(self, image_shape, out_features, width=16, activation="silu", latent_grid=0):
        super().__init__()
        self.image_shape = check_shape(image_shape)
        side = self.image_shape[0]
        if latent_grid:
            s, c_out = grid_stages(side, out_features, latent_grid)
            b = int(latent_grid)
        else:
            s, b = stages(side)
        ch = channels(width, s)[::-1]  # finest first
        act = (lambda: nn.LeakyReLU(0.2)) if activation == "leaky" else nn.SiLU
        layers, c_in = [], 1
        for i in range(s):
            layers += [nn.Conv2d(c_in, ch[i + 1], 4, stride=2, padding=1), act()]
            if latent_grid:
                layers += [nn.Conv2d(ch[i + 1], ch[i + 1], 3, padding=1), act()]
            c_in = ch[i + 1]
        self.features = nn.Sequential(*layers)
        if latent_grid:
            self.head = nn.Conv2d(ch[-1], c_out, 3, padding=1)
        else:
            self.fc = nn.Linear(ch[-1] * b * b, out_features)

    @property
    def output_layer(self):
        """The last layer (its bias is per output, or per output channel with a grid)."""
        return self.head if hasattr(self, "head") else self.fc

    def forward(self, x):
        h = self.features(x)
        return self.head(h).flatten(1) if hasattr(self, "head") else self.fc(h.flatten(1))
