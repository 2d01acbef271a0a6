r"""A VAE whose decoder gives a mean and a sparse precision: the structured-covariance VAE of
Duff, Simpson, Ehrhardt & Campbell (arXiv:2210.14586) on the package's convolutional VAE.

The decoder's last feature map :math:`h(z)` gives the mean :math:`m(z)` (the VAE's own output
convolution and sigmoid) and, through a small convolutional head, the factor of the precision
(:mod:`.precision`):

.. math:: \log d(z) = \ell_0 + (\ell_1 - \ell_0)\,\sigma(a_0(z)), \qquad
          u_k(z) = \tanh(a_k(z)), \qquad p(x \mid z) = N(m(z), (B_z^T B_z)^{-1}),

so :math:`d \in [e^{\ell_0}, e^{\ell_1}] =` :data:`D_RANGE` (image units, [0, 1]) and
:math:`|u| < 1`. ``model(z)`` returns the mean only: the model is a generator like the others
(range, soft, sparse). :meth:`StructuredVAE.factors` returns mean, log d and u;
:class:`FactorGenerator` (:func:`factor_generator`) stacks them as channels for
:class:`~cil_genreg.functions.StructuredSoftRegulariser`.

The cheapest honest training (``cil-genreg train --model structured-vae --init NAME``) starts
from a trained VAE (:meth:`StructuredVAE.from_vae`), keeps its encoder and mean decoder
frozen and trains the head alone on the negative ELBO with that likelihood,
:math:`\tfrac12\|B_z(x - m(z))\|^2 - \sum_i \log d_i(z)` with :math:`z \sim q(z \mid x)` (the
KL term is then a constant): the mean, the latent and its fitted prior stay those of the
diagonal model, and a comparison isolates the covariance.
"""
import math

import torch
from torch import nn

from .architectures import VAE
from .precision import gaussian_nll, offsets

#: the range of the precision factor's diagonal d (image units: intensities in [0, 1]), i.e.
#: a conditional standard deviation 1/d from 1 down to 10⁻³.
D_RANGE = (1.0, 1.0e3)
#: channels of the precision head's hidden layer.
HEAD_WIDTH = 16


class PrecisionHead(nn.Module):
    r"""Features (B, C, H, W) → (log d (B, 1, H, W), u (B, K, H, W)): Conv 3×3 → SiLU → Conv
    3×3 to 1 + K channels, :math:`\log d = \ell_0 + (\ell_1 - \ell_0)\sigma(a_0)`,
    :math:`u = \tanh(a_{1..K})`.

    Parameters
    ----------
    in_channels : int
    neighbourhood : int
        :math:`\rho`: K = 2ρ(ρ + 1) offsets.
    width : int
        hidden channels.
    """

    def __init__(self, in_channels, neighbourhood=1, width=HEAD_WIDTH):
        super().__init__()
        self.neighbourhood = int(neighbourhood)
        k = len(offsets(self.neighbourhood))
        self.hidden = nn.Conv2d(in_channels, int(width), 3, padding=1)
        self.out = nn.Conv2d(int(width), 1 + k, 3, padding=1)
        with torch.no_grad():  # start near a constant d and u = 0 (set_initial_precision)
            self.out.weight.mul_(0.1)
            self.out.bias.zero_()

    def set_initial_precision(self, d):
        """Bias the output so that the head starts at about ``d`` everywhere."""
        lo, hi = (math.log(v) for v in D_RANGE)
        f = min(max((math.log(float(d)) - lo) / (hi - lo), 1e-3), 1 - 1e-3)
        with torch.no_grad():
            self.out.bias[0] = math.log(f / (1 - f))

    def forward(self, features):
        a = self.out(nn.functional.silu(self.hidden(features)))
        lo, hi = (math.log(v) for v in D_RANGE)
        return lo + (hi - lo) * torch.sigmoid(a[:, :1]), torch.tanh(a[:, 1:])


class StructuredVAE(VAE):
    r"""A :class:`~.architectures.VAE` with a structured precision :math:`B_z^T B_z` (module
    docstring): ``model(z)`` = the mean :math:`m(z)`, ``factors(z)`` = (m, log d, u),
    ``nll(x, z)`` the negative log-likelihood per image.

    Parameters
    ----------
    latent_dim, image_shape, width, res_blocks, latent_grid
        as :class:`~.architectures.VAE`.
    neighbourhood : int
        :math:`\rho` of the factor's window (1: 4 offsets, 2: 12).
    head_width : int
        hidden channels of the :class:`PrecisionHead`.

    Attributes
    ----------
    reference_precision : torch.Tensor
        scalar buffer :math:`s^2`: the best constant precision of the mean decoder,
        :math:`1/\overline{(x - m(\mu(x)))^2}` over the training images
        (:meth:`from_vae`), which puts the structured regulariser on the soft one's scale.
    """

    arch = "svae"

    def __init__(self, latent_dim=16, image_shape=(28, 28), width=16, res_blocks=0,
                 latent_grid=0, neighbourhood=1, head_width=HEAD_WIDTH):
        super().__init__(latent_dim, image_shape, width, res_blocks, latent_grid)
        self.neighbourhood, self.head_width = int(neighbourhood), int(head_width)
        self.head = PrecisionHead(self.decoder.out.in_channels, self.neighbourhood,
                                  self.head_width)
        self.register_buffer("reference_precision", torch.tensor(1.0))

    @property
    def config(self):
        """:class:`~.architectures.VAE`'s config with ``neighbourhood`` and ``head_width``."""
        return dict(super().config, neighbourhood=self.neighbourhood,
                    head_width=self.head_width)

    @property
    def factor_channels(self):
        """Channels of :meth:`factors` stacked: mean, log d and the K u's."""
        return 2 + len(offsets(self.neighbourhood))

    def factors(self, z):
        """``(mean (B, 1, H, W), log_d (B, 1, H, W), u (B, K, H, W))`` for latents (B, d)."""
        h = self.decoder.features(z)
        log_d, u = self.head(h)
        return torch.sigmoid(self.decoder.out(h)), log_d, u

    def nll(self, x, z):
        r""":math:`-\log p(x \mid z)` per image (B,), in nats
        (:func:`~.precision.gaussian_nll`)."""
        mean, log_d, u = self.factors(z)
        return gaussian_nll(x, mean, log_d, u, self.neighbourhood)

    def freeze_mean(self):
        """Stop the gradients of the encoder and the mean decoder: only the head trains."""
        for p in list(self.encoder.parameters()) + list(self.decoder.parameters()):
            p.requires_grad_(False)
        return self

    @classmethod
    @torch.no_grad()
    def from_vae(cls, vae, neighbourhood=1, images=None, head_width=HEAD_WIDTH,
                 batch_size=64):
        r"""A structured VAE holding ``vae``'s encoder and decoder (copied) and its fitted
        latent prior, with a new head; :attr:`reference_precision` and the head's start from
        the mean squared residual :math:`\overline{(x - G(\mu(x)))^2}` of ``images`` (the
        training images), else 1.

        Parameters
        ----------
        vae : VAE
        neighbourhood : int
        images : array (N, H, W) or (N, 1, H, W), optional
        head_width : int
        batch_size : int

        Returns
        -------
        StructuredVAE
            in training mode, mean frozen (:meth:`freeze_mean`).
        """
        if not isinstance(vae, VAE) or isinstance(vae, StructuredVAE):
            raise TypeError(f"from_vae needs a trained VAE (cil_genreg.models.VAE, e.g. "
                            f"pretrained('ct-chest3-vae-128')), got {type(vae).__name__}.")
        config = dict(vae.config)
        config.pop("arch")
        model = cls(**config, neighbourhood=neighbourhood, head_width=head_width)
        model.load_state_dict(vae.state_dict(), strict=False)
        model.metadata = {"init": dict(getattr(vae, "metadata", {}) or {})}
        from .latent_prior import attach_prior
        attach_prior(model, getattr(vae, "latent_prior", None))
        if images is not None:
            model.reference_precision.fill_(1.0 / mean_squared_residual(vae, images,
                                                                        batch_size))
        model.head.set_initial_precision(float(model.reference_precision) ** 0.5)
        return model.freeze_mean().train()

    def extra_repr(self):
        return super().extra_repr() + f", neighbourhood={self.neighbourhood}"


@torch.no_grad()
def mean_squared_residual(model, images, batch_size=64):
    r""":math:`\overline{(x - G(\mu(x)))^2}` over the pixels of ``images`` (the ML variance
    of a constant-σ Gaussian decoder)."""
    images = torch.as_tensor(images, dtype=torch.float32)
    images = images[:, None] if images.ndim == 3 else images
    device = next(model.parameters()).device
    total = 0.0
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size].to(device)
        total += float((model(model.encode(x)[0]) - x).square().sum())
    return total / images.numel()


class FactorGenerator(nn.Module):
    """A :class:`StructuredVAE` as a generator of its factors: ``forward(z)`` = (B, 2 + K, H, W),
    channel 0 the mean, 1 log d, 2… the u's (``output_channels`` = 2 + K), for the latent solver
    of :class:`~cil_genreg.functions.StructuredSoftRegulariser`; ``encode`` is the model's.

    Parameters
    ----------
    model : StructuredVAE
    """

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.latent_dim, self.image_shape = model.latent_dim, tuple(model.image_shape)
        self.neighbourhood, self.output_channels = model.neighbourhood, model.factor_channels
        self.reference_precision = float(model.reference_precision)
        self.encode = model.encode
        self.train(model.training)

    def forward(self, z):
        return torch.cat(self.model.factors(z), dim=1)


def factor_generator(model):
    """The :class:`FactorGenerator` of a structured model, or of its fitted-prior form (a
    :class:`~.latent_prior.WhitenedGenerator` of a :class:`StructuredVAE`, what
    ``methods.load_generator`` gives), whitened the same way.

    Parameters
    ----------
    model : StructuredVAE, WhitenedGenerator of one, or FactorGenerator

    Returns
    -------
    torch.nn.Module
        with ``latent_dim``, ``image_shape``, ``output_channels``, ``neighbourhood`` and
        ``reference_precision``.

    Raises
    ------
    TypeError
        for a model without a precision (a plain VAE, AE or GAN).
    """
    from .latent_prior import WhitenedGenerator
    if isinstance(model, FactorGenerator):
        return model
    if isinstance(model, StructuredVAE):
        return FactorGenerator(model)
    if isinstance(model, WhitenedGenerator) and isinstance(model.generator, StructuredVAE):
        view = FactorGenerator(model.generator)
        whitened = WhitenedGenerator(view, model.prior)
        for name in ("output_channels", "neighbourhood", "reference_precision"):
            setattr(whitened, name, getattr(view, name))
        return whitened.train(model.training)
    raise TypeError(
        f"{type(model).__name__} has no structured precision: the structured soft regulariser "
        "needs a StructuredVAE (train one with `cil-genreg train --model structured-vae --init "
        "NAME`, or cil_genreg.models.StructuredVAE.from_vae).")
