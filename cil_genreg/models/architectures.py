"""Convolutional VAE, autoencoder and Wasserstein GAN for square single-channel images.

Every model's decoder (the *generator*) maps a latent batch ``z`` of shape (B, d), float32, to
images of shape (B, 1, H, W) with intensities in [0, 1] (a final sigmoid). The package's models
are generators themselves: ``model(z)`` decodes, and they carry ``latent_dim`` (d) and
``image_shape`` ((H, W)). The networks (:class:`Decoder`, :class:`Encoder`) and their layout,
with a dense latent or a latent grid, are in :mod:`.networks`.
"""
import torch
from torch import nn

from .networks import Decoder, Encoder, check_shape

#: the ``arch`` keys of :func:`build` and of checkpoint configs: variational autoencoder,
#: deterministic autoencoder, WGAN-GP generator, VAE with a structured precision
#: (:class:`~.structured.StructuredVAE`).
ARCHITECTURES = ("vae", "ae", "gan", "svae")
#: (min, max) of every model's output intensities: the decoder ends in a sigmoid.
INTENSITY_RANGE = (0.0, 1.0)
#: initial bias of the VAE's log-variance output: sigma = exp(-3) = 0.05 at the start, so the
#: decoder sees informative codes from the first step (with sigma = 1 it learns to ignore z).
LOGVAR_BIAS = -6.0


class _Generative(nn.Module):
    """Common part: the decoder is the generator; ``forward(z)`` decodes."""

    arch = None

    def __init__(self, latent_dim, image_shape, width=16, res_blocks=0, latent_grid=0):
        super().__init__()
        if int(latent_dim) < 1 or int(res_blocks) < 0 or int(latent_grid) < 0:
            raise ValueError(f"latent_dim must be >= 1, res_blocks and latent_grid >= 0, got "
                             f"{latent_dim}, {res_blocks}, {latent_grid}.")
        self.latent_dim = int(latent_dim)
        self.image_shape = check_shape(image_shape)
        self.width, self.res_blocks = int(width), int(res_blocks)
        self.latent_grid = int(latent_grid)
        self.intensity_range = INTENSITY_RANGE
        self.decoder = Decoder(self.latent_dim, self.image_shape, self.width, self.res_blocks,
                               self.latent_grid)

    @property
    def config(self):
        """What :func:`build` needs to rebuild this model: arch, latent_dim, image_shape, width
        (and res_blocks, latent_grid where not 0)."""
        config = {"arch": self.arch, "latent_dim": self.latent_dim,
                  "image_shape": list(self.image_shape), "width": self.width}
        extra = {"res_blocks": self.res_blocks, "latent_grid": self.latent_grid}
        return {**config, **{k: v for k, v in extra.items() if v}}

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
    latent_grid : int
        0 (default): a dense latent; ``g > 0``: the latent is ``d / g^2`` channels on a
        ``g x g`` grid and the model is fully convolutional (:mod:`.networks`).

    Raises
    ------
    ValueError
        when ``latent_dim < 1``, or ``image_shape`` is not square or not supported.
    """

    arch = "vae"

    def __init__(self, latent_dim=16, image_shape=(28, 28), width=16, res_blocks=0,
                 latent_grid=0):
        super().__init__(latent_dim, image_shape, width, res_blocks, latent_grid)
        self.encoder = Encoder(self.image_shape, 2 * self.latent_dim, self.width,
                               latent_grid=self.latent_grid)
        bias = self.encoder.output_layer.bias
        with torch.no_grad():  # the second half of the outputs (channels, with a grid)
            bias[len(bias) // 2:] = LOGVAR_BIAS

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
    latent_grid : int
        0 (default): a dense latent; ``g > 0``: the latent is ``d / g^2`` channels on a
        ``g x g`` grid and the model is fully convolutional (:mod:`.networks`).

    Raises
    ------
    ValueError
        when ``latent_dim < 1``, or ``image_shape`` is not square or not supported.
    """

    arch = "ae"

    def __init__(self, latent_dim=16, image_shape=(28, 28), width=16, res_blocks=0,
                 latent_grid=0):
        super().__init__(latent_dim, image_shape, width, res_blocks, latent_grid)
        self.encoder = Encoder(self.image_shape, self.latent_dim, self.width,
                               latent_grid=self.latent_grid)

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
    latent_grid : int
        0 (default): a dense latent; ``g > 0``: the latent is ``d / g^2`` channels on a
        ``g x g`` grid and the model is fully convolutional (:mod:`.networks`).

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
        self.image_shape = check_shape(image_shape)
        self.net = Encoder(self.image_shape, 1, width, activation="leaky")

    def forward(self, x):
        return self.net(x)[:, 0]


_CLASSES = {"vae": VAE, "ae": Autoencoder, "gan": WGANGenerator}


def build(arch, latent_dim=16, image_shape=(28, 28), **kw):
    """A new (untrained) model, with freshly initialised weights in training mode.

    Parameters
    ----------
    arch : {"vae", "ae", "gan", "svae"}
        case-insensitive; ``"autoencoder"``, ``"wgan"``, ``"wgan-gp"`` and
        ``"structured-vae"`` are aliases.
    latent_dim : int
        :math:`d` (default 16).
    image_shape : int or (int, int)
        square images; side divisible by 4 and >= 16 (28, 64, 128 tested).
    width : int, optional
        channels at the finest scale (default 16).
    res_blocks, latent_grid : int, optional
        residual blocks per decoder scale; the side of a latent grid (0: dense latent).
    neighbourhood, head_width : int, optional
        "svae" only: the precision factor's window radius and head channels.

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
    aliases = {"autoencoder": "ae", "wgan": "gan", "wgan-gp": "gan", "structured-vae": "svae"}
    key = aliases.get(key, key)
    if key == "svae":
        from .structured import StructuredVAE
        return StructuredVAE(latent_dim=latent_dim, image_shape=image_shape, **kw)
    if key not in _CLASSES:
        raise ValueError(f"unknown architecture {arch!r}: choose one of {list(ARCHITECTURES)}.")
    return _CLASSES[key](latent_dim=latent_dim, image_shape=image_shape, **kw)


def at_size(model, image_shape):
    r"""The same fully convolutional model for images of another size, sharing its weights.

    A model with a latent grid (``latent_grid = g > 0``) has no layer whose shape depends on
    the image size: the one trained on (H, H) images (or patches) is a generator of
    (H', H') images with the latent grid :math:`g' = g H' / H` and :math:`d' = c\,g'^2`, the
    same convolutions sliding over a larger (or smaller) grid. Use it to regularise a whole
    512² slice with a model trained on 64² patches, without tiles or seams. The two share
    their parameter tensors (training one trains the other); ``metadata`` is copied.

    Parameters
    ----------
    model : VAE, Autoencoder or WGANGenerator
        with ``latent_grid > 0``.
    image_shape : int or (int, int)
        the new square size; its side must be a multiple of ``H / g`` (the model's upsampling
        factor).

    Returns
    -------
    VAE, Autoencoder or WGANGenerator
        in the mode (train or eval) and on the device of ``model``.

    Raises
    ------
    ValueError
        for a model with a dense latent, or a side that is not a multiple of the factor.
    """
    grid = getattr(model, "latent_grid", 0)
    if not grid:
        raise ValueError(
            "at_size needs a fully convolutional model (latent_grid > 0); this one has a dense "
            "latent, tied to its image size: use it as a patch prior "
            "(cil_genreg.PatchGenerativeRegulariser) instead.")
    side = check_shape(image_shape)[0]
    factor = model.image_shape[0] // grid
    if side % factor:
        raise ValueError(f"image side {side} is not a multiple of the model's upsampling factor "
                         f"{factor} (image side {model.image_shape[0]} / latent grid {grid}).")
    channels = model.latent_dim // grid ** 2
    new_grid = side // factor
    config = dict(model.config)
    arch = config.pop("arch")
    config.update(latent_dim=channels * new_grid ** 2, image_shape=(side, side),
                  latent_grid=new_grid)
    with torch.device("meta"):
        resized = build(arch, **config)
    resized.load_state_dict(model.state_dict(), assign=True)
    resized.metadata = dict(getattr(model, "metadata", {}) or {})
    return resized.train(model.training)
