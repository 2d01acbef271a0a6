"""Generative models (VAE, autoencoder, WGAN), the networks they are compared with (a DRUNet-style
Plug-and-Play denoiser, FBPConvNet post-processing), their safe checkpoints and shipped
pretrained models.

A *generator* maps a float32 latent batch (B, d) to images (B, 1, H, W) in [0, 1]; the package's
models are generators themselves (``model(z)`` decodes) and carry ``latent_dim`` and
``image_shape``. See :mod:`.architectures`, :mod:`.checkpoints` and :mod:`.pretrained`.
"""
from .architectures import (ARCHITECTURES, INTENSITY_RANGE, VAE, Autoencoder, Decoder, Encoder,
                            WGANCritic, WGANGenerator, at_size, build)
from .checkpoints import CheckpointError, load, read_metadata, save, update_metadata
from .denoiser import (KINDS, NETWORK_ARCHITECTURES, DRUNetDenoiser, PostProcessingUNet,
                       ResidualUNet, build_network, kind_of, require_kind)
from .latent_prior import (LatentGaussian, WhitenedGenerator, attach_prior, fit_latent_prior,
                           whitened)
from .pretrained import available_pretrained, pretrained, pretrained_path
from .structured import (D_RANGE, FactorGenerator, PrecisionHead, StructuredVAE,
                         factor_generator)

__all__ = ["VAE", "Autoencoder", "WGANGenerator", "WGANCritic", "Encoder", "Decoder", "build", "at_size",
           "save", "load", "read_metadata", "update_metadata", "CheckpointError", "pretrained",
           "available_pretrained", "pretrained_path", "ARCHITECTURES", "INTENSITY_RANGE",
           "LatentGaussian", "WhitenedGenerator", "fit_latent_prior", "attach_prior", "whitened",
           "DRUNetDenoiser", "PostProcessingUNet", "ResidualUNet", "build_network", "kind_of",
           "require_kind", "KINDS", "NETWORK_ARCHITECTURES", "StructuredVAE", "PrecisionHead",
           "FactorGenerator", "factor_generator", "D_RANGE"]
