"""Convolutional VAE, autoencoder and Wasserstein GAN for square single-channel images.

Every model's decoder (the *generator*) maps a latent batch ``z`` of shape (B, d), float32, to
images of shape (B, 1, H, W) with intensities in [0, 1] (a final sigmoid). The package's models
are generators themselves: ``model(z)`` decodes, and they carry ``latent_dim`` (d) and
``image_shape`` ((H, W)).

Layout of the decoder (``width`` = w channels at the finest scale, ``s`` stride-2 stages)::

    z -> Linear(d, c_0 b^2) -> (c_0, b, b)
      -> s x [ConvTranspose4x4/2 -> SiLU -> Conv3x3 -> SiLU]   (size doubles, channels halve)
      -> Conv3x3 -> sigmoid                                     (1, H, W)

with ``H = b 2^s``: ``s`` is the largest number (at most 4) of halvings that leave ``b >= 4``
an integer, and at least 2; so 28 -> b = 7, s = 2; 64 -> b = 4, s = 4; 128 -> b = 8, s = 4.
Smooth activations (SiLU) keep ``z -> G(z)`` smooth for the latent optimisations of the
regularisers. There is no batch normalisation: the output for one latent never depends on the
rest of the batch. The encoder / critic mirrors it with stride-2 convolutions.
"""
import torch
from torch import nn

from .residual import ResidualBlock

#: the ``arch`` keys of :func:`build` and of checkpoint configs: variational autoencoder,
#: deterministic autoencoder, WGAN-GP generator.
ARCHITECTURES = ("vae", "ae", "gan")
#: (min, max) of every model's output intensities: the decoder ends in a sigmoid.
INTENSITY_RANGE = (0.0, 1.0)
#: initial bias of the last convolution: sigmoid(-2) = 0.12, a dark background to start from.
OUTPUT_BIAS = -2.0
#: initial bias of the VAE's log-variance output: sigma = exp(-3) = 0.05 at the start, so the
#: decoder sees informative codes from the first step (with sigma = 1 it learns to ignore z).
LOGVAR_BIAS = -6.0


def stages(size):
    """Number ``s`` of stride-2 stages and base size ``b`` with ``size = b 2^s`` (see module doc).

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


def _check_shape(image_shape):
    if isinstance(image_shape, int):
        image_shape = (image_shape, image_shape)
    image_shape = tuple(int(v) for v in image_shape)
    if len(image_shape) != 2 or image_shape[0] != image_shape[1]:
        raise ValueError(f"image_shape must be a square (H, H), got {image_shape}: the models "
                         "are for square images; crop or pad them first.")
    stages(image_shape[0])
    return image_shape


def _channels(width, s):
    """Channels per scale, coarsest first: width * 2^(s-i), capped at 4 * width."""
    return [min(width * 2 ** (s - i), 4 * width) for i in range(s + 1)]


class Decoder(nn.Module):
    r"""The generator network :math:`G`: latents ``z`` (B, d) to images (B, 1, H, W) in [0, 1],

    .. math:: G(z) = \sigma\big(\mathrm{conv}_{3\times 3}(U_s \circ \dots \circ U_1(
              \mathrm{SiLU}(W z + c)))\big), \qquad
              U_i = \mathrm{SiLU} \circ \mathrm{conv}_{3\times 3} \circ \mathrm{SiLU}
              \circ \mathrm{convT}_{4\times 4, /2}

    with :math:`\sigma` the sigmoid, ``W z + c`` reshaped to (c_0, b, b) and ``H = b 2^s`` (see
    the module docstring for the layout and the channel counts). The last convolution's bias
    starts at ``OUTPUT_BIAS``.

    Parameters
    ----------
    latent_dim : int
        :math:`d`.
    image_shape : int or (int, int)
        (H, H), square; H divisible by 4 and at least 16.
    width : int
        channels at the finest scale (default 16); coarser scales have up to ``4 * width``.
    res_blocks : int
        :class:`ResidualBlock` s after each :math:`U_i` (default 0: none).

    Raises
    ------
    ValueError
        when ``image_shape`` is not square or its side is not supported (see :func:`stages`).
    """

    def __init__(self, latent_dim, image_shape, width=16, res_blocks=0):
        super().__init__()
        self.latent_dim = int(latent_dim)
        self.image_shape = _check_shape(image_shape)
        s, b = stages(self.image_shape[0])
        ch = _channels(width, s)
        self.base, self.c0 = b, ch[0]
        self.fc = nn.Linear(self.latent_dim, ch[0] * b * b)
        blocks = []
        for i in range(s):
            blocks += [nn.ConvTranspose2d(ch[i], ch[i + 1], 4, stride=2, padding=1), nn.SiLU(),
                       nn.Conv2d(ch[i + 1], ch[i + 1], 3, padding=1), nn.SiLU()]
            blocks += [ResidualBlock(ch[i + 1]) for _ in range(int(res_blocks))]
        self.blocks = nn.Sequential(*blocks)
        self.out = nn.Conv2d(ch[-1], 1, 3, padding=1)
        nn.init.constant_(self.out.bias, OUTPUT_BIAS)

    def forward(self, z):
        h = nn.functional.silu(self.fc(z)).reshape(-1, self.c0, self.base, self.base)
        return torch.sigmoid(self.out(self.blocks(h)))


class Encoder(nn.Module):
    r"""Convolutional encoder :math:`E: x \in \mathbb{R}^{B \times 1 \times H \times W} \mapsto
    \mathbb{R}^{B \times \text{out\_features}}`,

    .. math:: E(x) = W\, \mathrm{flatten}(D_s \circ \dots \circ D_1(x)) + c, \qquad
              D_i = \phi \circ \mathrm{conv}_{4\times 4, /2}

    the decoder's layout mirrored: ``s`` stride-2 convolutions (size halves, channels double
    up to ``4 * width``) down to (c, b, b), then one linear layer (no output activation).

    Parameters
    ----------
    image_shape : int or (int, int)
        (H, H), square; H divisible by 4 and at least 16.
    out_features : int
        size of the output: ``2 d`` for a VAE (mean and log-variance), ``d`` for an autoencoder,
        1 for a critic.
    width : int
        channels at the finest scale (default 16).
    activation : {"silu", "leaky"}
        :math:`\phi`: ``"leaky"`` is LeakyReLU with slope 0.2 (the critic); any other value
        gives SiLU.

    Raises
    ------
    ValueError
        when ``image_shape`` is not square or its side is not supported (see :func:`stages`).
    """

    def __init__(self, image_shape, out_features, width=16, activation="silu"):
        super().__init__()
        self.image_shape = _check_shape(image_shape)
        s, b = stages(self.image_shape[0])
        ch = _channels(width, s)[::-1]  # finest first
        act = (lambda: nn.LeakyReLU(0.2)) if activation == "leaky" else nn.SiLU
        layers, c_in = [], 1
        for i in range(s):
            layers += [nn.Conv2d(c_in, ch[i + 1], 4, stride=2, padding=1), act()]
            c_in = ch[i + 1]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(ch[-1] * b * b, out_features)

    def forward(self, x):
        return self.fc(self.features(x).flatten(1))


class _Generative(nn.Module):
    """Common part: the decoder is the generator; ``forward(z)`` decodes."""

    arch = None

    def __init__(self, latent_dim, image_shape, width=16, res_blocks=0):
        super().__init__()
        if int(latent_dim) < 1 or int(res_blocks) < 0:
            raise ValueError(f"latent_dim must be >= 1 and res_blocks >= 0, got {latent_dim}, "
                             f"{res_blocks}.")
        self.latent_dim = int(latent_dim)
        self.image_shape = _check_shape(image_shape)
        self.width, self.res_blocks = int(width), int(res_blocks)
        self.intensity_range = INTENSITY_RANGE
        self.decoder = Decoder(self.latent_dim, self.image_shape, self.width, self.res_blocks)

    @property
    def config(self):
        """What :func:`build` needs to rebuild this model: arch, latent_dim, image_shape, width."""
        config = {"arch": self.arch, "latent_dim": self.latent_dim,
                  "image_shape": list(self.image_shape), "width": self.width}
        return {**config, "res_blocks": self.res_blocks} if self.res_blocks else config

    def forward(self, z):
        """Decode: ``G(z)``, (B, d) -> (B, 1, H, W) in [0, 1]."""
        return self.decoder(z)

    def sample(self, n, generator=None):
        """``n`` images ``G(z)`` with ``z ~ N(0, I)``, as a tensor (n, 1, H, W)."""
        p = next(self.parameters())
        z = torch.randn(n, self.latent_dim, generator=generator).to(p.device)
        with torch.no_grad():
            return self(z)

    def extra_repr(self):
        return f"latent_dim={self.latent_dim}, image_shape={self.image_shape}"


class VAE(_Generative):
    r"""Variational autoencoder (Kingma & Welling 2014) with a convolutional encoder and decoder.

    ``encode(x) -> (mu, logvar)``, each (B, d), of :math:`q(z|x) = N(\mu, \mathrm{diag}\,
    \sigma^2)` with :math:`\sigma^2 = e^{\text{logvar}}` (logvar clamped to [-12, 8]); the
    decoder :math:`G` (:class:`Decoder`) is the generator. Trained
    (:func:`cil_genreg.training.train`) on the loss of the talk, averaged over a minibatch,

    .. math:: L(x) = \|x - G(\mu + \sigma \odot \varepsilon)\|_2^2
              + \beta_t\, \mathrm{KL}(q(z|x) \,\|\, N(0, I)), \qquad
              \varepsilon \sim N(0, I),

    .. math:: \mathrm{KL} = \frac{1}{2} \sum_{j=1}^d (\mu_j^2 + \sigma_j^2 - 1
              - \log \sigma_j^2),

    the squared error summed over pixels, :math:`\beta_t` ramping linearly to ``beta``.
    The log-variance outputs' bias starts at ``LOGVAR_BIAS``.

    Parameters
    ----------
    latent_dim : int
        :math:`d` (default 16).
    image_shape : int or (int, int)
        (H, H), square; H divisible by 4 and at least 16 (default (28, 28)).
    width : int
        channels at the finest scale (default 16).
    res_blocks : int
        residual blocks per decoder scale (default 0).

    Raises
    ------
    ValueError
        when ``latent_dim < 1``, or ``image_shape`` is not square or not supported.
    """

    arch = "vae"

    def __init__(self, latent_dim=16, image_shape=(28, 28), width=16, res_blocks=0):
        super().__init__(latent_dim, image_shape, width, res_blocks)
        self.encoder = Encoder(self.image_shape, 2 * self.latent_dim, self.width)
        with torch.no_grad():
            self.encoder.fc.bias[self.latent_dim:] = LOGVAR_BIAS

    def encode(self, x):
        """``(mu, logvar)``, each (B, d), for images x (B, 1, H, W)."""
        h = self.encoder(x)
        mu, logvar = h.chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 8.0)

    def reconstruct(self, x):
        """``G(mu(x))``: decode the posterior mean."""
        return self(self.encode(x)[0])


class Autoencoder(_Generative):
    r"""Deterministic autoencoder: ``encode(x) -> z = E(x)`` (:class:`Encoder`), (B, d); the
    decoder :math:`G` (:class:`Decoder`) is the generator. Trained
    (:func:`cil_genreg.training.train`) on

    .. math:: L(x) = \|x - G(E(x))\|_2^2,

    summed over pixels, averaged over a minibatch.

    Parameters
    ----------
    latent_dim : int
        :math:`d` (default 16).
    image_shape : int or (int, int)
        (H, H), square; H divisible by 4 and at least 16 (default (28, 28)).
    width : int
        channels at the finest scale (default 16).
    res_blocks : int
        residual blocks per decoder scale (default 0).

    Raises
    ------
    ValueError
        when ``latent_dim < 1``, or ``image_shape`` is not square or not supported.
    """

    arch = "ae"

    def __init__(self, latent_dim=16, image_shape=(28, 28), width=16, res_blocks=0):
        super().__init__(latent_dim, image_shape, width, res_blocks)
        self.encoder = Encoder(self.image_shape, self.latent_dim, self.width)

    def encode(self, x):
        """``z = E(x)``, (B, d), for images x (B, 1, H, W)."""
        return self.encoder(x)

    def reconstruct(self, x):
        return self(self.encode(x))


class WGANGenerator(_Generative):
    r"""Generator :math:`G` (:class:`Decoder`) of a Wasserstein GAN with gradient penalty
    (Gulrajani et al. 2017), :math:`z \sim N(0, I)`. Trained
    (:func:`cil_genreg.training.train`) against a critic :math:`D` (:class:`WGANCritic`) on

    .. math:: \min_D\; E_z[D(G(z))] - E_x[D(x)]
              + \lambda_{gp}\, E_{\hat x}\big[(\|\nabla_{\hat x} D(\hat x)\|_2 - 1)^2\big],
              \qquad \min_G\; -E_z[D(G(z))],

    with :math:`\hat x = a x + (1 - a) G(z)`, :math:`a \sim U(0, 1)` per image, and one
    generator step every ``n_critic`` critic steps. Only the generator is a package model; the
    critic lives in training checkpoints only.

    Parameters
    ----------
    latent_dim : int
        :math:`d` (default 16).
    image_shape : int or (int, int)
        (H, H), square; H divisible by 4 and at least 16 (default (28, 28)).
    width : int
        channels at the finest scale (default 16).
    res_blocks : int
        residual blocks per decoder scale (default 0).

    Raises
    ------
    ValueError
        when ``latent_dim < 1``, or ``image_shape`` is not square or not supported.
    """

    arch = "gan"


class WGANCritic(nn.Module):
    r"""Critic :math:`D: (B, 1, H, W) \to (B,)` of a WGAN-GP: an :class:`Encoder` with LeakyReLU
    (slope 0.2) and one output, no normalisation (the gradient penalty is per image). Trained
    to minimise

    .. math:: E_z[D(G(z))] - E_x[D(x)]
              + \lambda_{gp}\, E_{\hat x}\big[(\|\nabla_{\hat x} D(\hat x)\|_2 - 1)^2\big]

    (see :class:`WGANGenerator`).

    Parameters
    ----------
    image_shape : int or (int, int)
        (H, H), square; H divisible by 4 and at least 16 (default (28, 28)).
    width : int
        channels at the finest scale (default 16).

    Raises
    ------
    ValueError
        when ``image_shape`` is not square or not supported.
    """

    def __init__(self, image_shape=(28, 28), width=16):
        super().__init__()
        self.image_shape = _check_shape(image_shape)
        self.net = Encoder(self.image_shape, 1, width, activation="leaky")

    def forward(self, x):
        return self.net(x)[:, 0]


_CLASSES = {"vae": VAE, "ae": Autoencoder, "gan": WGANGenerator}


def build(arch, latent_dim=16, image_shape=(28, 28), **kw):
    """A new (untrained) model, with freshly initialised weights in training mode.

    Parameters
    ----------
    arch : {"vae", "ae", "gan"}
        case-insensitive; ``"autoencoder"``, ``"wgan"`` and ``"wgan-gp"`` are aliases.
    latent_dim : int
        :math:`d` (default 16).
    image_shape : int or (int, int)
        square images; side divisible by 4 and >= 16 (28, 64, 128 tested).
    width : int, optional
        channels at the finest scale (default 16).

    Returns
    -------
    VAE, Autoencoder or WGANGenerator
        on the CPU, float32; ``model(z)`` maps (B, d) to (B, 1, H, W) in [0, 1].

    Raises
    ------
    ValueError
        for an unknown ``arch``, ``latent_dim < 1``, or an unsupported ``image_shape``.
    """
    key = str(arch).lower()
    aliases = {"autoencoder": "ae", "wgan": "gan", "wgan-gp": "gan"}
    key = aliases.get(key, key)
    if key not in _CLASSES:
        raise ValueError(f"unknown architecture {arch!r}: choose one of {list(_CLASSES)}.")
    return _CLASSES[key](latent_dim=latent_dim, image_shape=image_shape, **kw)
