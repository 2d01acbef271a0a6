r"""A Gaussian prior on the latent, fitted to the encoder's codes of training images, and the
generator reparametrised so that the regularisers' :math:`\|w\|^2` is that prior.

Every method of the package penalises :math:`\|z\|^2`: the negative log-density of the
:math:`N(0, I)` a VAE is trained towards. A VAE trained with a small KL weight (the latent-grid
CT models, :math:`\beta = 0.002`) does not fill that ball: its codes of real slices spread
widely along a few hundred directions (variances up to ~70) and hardly at all along the rest,
so :math:`\|z\|^2` penalises the directions the slices use and lets the others go free.
:class:`LatentGaussian` fits

.. math:: z \sim N(m, \Sigma), \qquad \Sigma = U \operatorname{diag}(e)\, U^T + \delta I,

to the codes (:math:`m` their mean, :math:`U, e` the :math:`k` leading eigenpairs of their
covariance, :math:`\delta > 0` a floor, so that directions no training slice used stay
reachable), and :class:`WhitenedGenerator` writes :math:`z = m + \Sigma^{1/2} w`:

.. math:: G_\Sigma(w) = G(m + \Sigma^{1/2} w), \qquad
          \|w\|^2 = (z - m)^T \Sigma^{-1} (z - m) .

So range, soft, sparse, the latent method and the hybrid use the fitted prior unchanged: give
them :math:`G_\Sigma` instead of :math:`G`. With
:math:`\Sigma^{1/2} = \sqrt{\delta}\, I + U \operatorname{diag}(\sqrt{e + \delta} -
\sqrt{\delta})\, U^T`, applying it costs two (d × k) products.
"""
import torch
from torch import nn

#: default floor :math:`\delta` of the fitted covariance, in the latent's own units
#: (docs/results.md: 0.1-0.5 give the same PSNR on held-out CT slices).
SHRINKAGE = 0.2


class LatentGaussian(nn.Module):
    r"""The Gaussian :math:`N(m, U \operatorname{diag}(e) U^T + \delta I)` of the latent.

    Parameters
    ----------
    mean : torch.Tensor
        :math:`m`, (d,).
    basis : torch.Tensor
        :math:`U`, (d, k) with orthonormal columns.
    variances : torch.Tensor
        :math:`e \ge 0`, (k,).
    shrinkage : float
        :math:`\delta > 0`.

    Raises
    ------
    ValueError
        for shapes that do not match, negative or non-finite variances, :math:`\delta \le 0`.
    """

    def __init__(self, mean, basis, variances, shrinkage=SHRINKAGE):
        super().__init__()
        mean, basis, variances = (torch.as_tensor(t, dtype=torch.float32).detach()
                                  for t in (mean, basis, variances))
        d = mean.shape[0] if mean.ndim == 1 else -1
        if mean.ndim != 1 or basis.ndim != 2 or basis.shape[0] != d or variances.ndim != 1 \
                or variances.shape[0] != basis.shape[1] or basis.shape[1] > d:
            raise ValueError(f"a latent Gaussian needs mean (d,), basis (d, k) and variances (k,) "
                             f"with k <= d; got {tuple(mean.shape)}, {tuple(basis.shape)}, "
                             f"{tuple(variances.shape)}.")
        if not bool(torch.isfinite(variances).all()) or bool((variances < 0).any()):
            raise ValueError("the latent Gaussian's variances must be finite and >= 0.")
        shrinkage = float(shrinkage)
        if not shrinkage > 0:
            raise ValueError(f"shrinkage (the covariance's floor) must be > 0, got {shrinkage}: "
                             "without it the directions no training code used are unreachable.")
        self.shrinkage = shrinkage
        self.register_buffer("mean", mean)
        self.register_buffer("basis", basis)
        self.register_buffer("variances", variances)
        # Σ^{±1/2} = δ^{±1/2} I + U diag(gains) U^T: the gains, once (not saved: derived)
        for name, power in (("root_gains", 0.5), ("inverse_root_gains", -0.5)):
            self.register_buffer(name, (variances + shrinkage) ** power - shrinkage ** power,
                                 persistent=False)

    @property
    def latent_dim(self):
        return self.mean.shape[0]

    @property
    def rank(self):
        return self.basis.shape[1]

    @classmethod
    def fit(cls, codes, shrinkage=SHRINKAGE, rank=None):
        r"""The Gaussian of a set of codes: their mean and the ``rank`` leading eigenpairs of
        their covariance (default: the min(N − 1, d) that N centred codes span; a larger
        ``rank`` keeps what there is).

        Parameters
        ----------
        codes : torch.Tensor
            (N, d), N >= 2.
        shrinkage : float
            :math:`\delta`.
        rank : int, optional
            :math:`k`.

        Returns
        -------
        LatentGaussian
        """
        codes = torch.as_tensor(codes).detach().to("cpu", torch.float64)
        if codes.ndim != 2 or codes.shape[0] < 2:
            raise ValueError(f"fitting a latent Gaussian needs codes (N, d) with N >= 2, got "
                             f"shape {tuple(codes.shape)}.")
        if not bool(torch.isfinite(codes).all()):
            raise ValueError("the codes hold NaN or Inf: check the encoder and the images.")
        n, d = codes.shape
        k = min(n - 1, d) if rank is None else int(rank)
        if not 1 <= k <= d:
            raise ValueError(f"rank must be in [1, {d}], got {rank}.")
        mean = codes.mean(dim=0)
        centred = codes - mean
        # the covariance's eigenpairs from the thin SVD of the centred codes
        _, s, vt = torch.linalg.svd(centred, full_matrices=False)
        variances = (s ** 2 / (n - 1))[:k]
        return cls(mean, vt[:k].T, variances, shrinkage)

    def _apply_root(self, v, floor, gains):
        # Σ^{±1/2} v = δ^{±1/2} v + U diag((e + δ)^{±1/2} − δ^{±1/2}) U^T v, for rows v
        return floor * v + ((v @ self.basis) * gains) @ self.basis.T

    def to_latent(self, w):
        r""":math:`z = m + \Sigma^{1/2} w` for rows ``w`` (B, d)."""
        return self.mean + self._apply_root(w, self.shrinkage ** 0.5, self.root_gains)

    def from_latent(self, z):
        r""":math:`w = \Sigma^{-1/2} (z - m)` for rows ``z`` (B, d)."""
        return self._apply_root(z - self.mean, self.shrinkage ** -0.5, self.inverse_root_gains)

    def extra_repr(self):
        return f"latent_dim={self.latent_dim}, rank={self.rank}, shrinkage={self.shrinkage:g}"


class WhitenedGenerator(nn.Module):
    r"""The generator :math:`G_\Sigma(w) = G(m + \Sigma^{1/2} w)` of a fitted latent prior
    (module docstring): a generator like any other (``latent_dim``, ``image_shape``), whose
    :math:`\|w\|^2` is the fitted prior's :math:`(z - m)^T \Sigma^{-1} (z - m)`; its encoder
    gives :math:`w = \Sigma^{-1/2} (\mu(x) - m)`.

    Parameters
    ----------
    generator : torch.nn.Module
        :math:`G`, with ``latent_dim`` and ``image_shape``.
    prior : LatentGaussian
        of the same latent dimension.
    """

    def __init__(self, generator, prior):
        super().__init__()
        if prior.latent_dim != generator.latent_dim:
            raise ValueError(f"the latent prior is of dimension {prior.latent_dim}, the "
                             f"generator's latent of {generator.latent_dim}: fit the prior to "
                             "this generator's codes (cil_genreg.models.fit_latent_prior).")
        self.generator = generator
        self.prior = prior
        self.latent_dim = generator.latent_dim
        self.image_shape = tuple(generator.image_shape)
        self.intensity_range = getattr(generator, "intensity_range", None)
        self.output_channels = getattr(generator, "output_channels", 1)
        self.metadata = dict(getattr(generator, "metadata", {}) or {})
        if hasattr(generator, "encode"):
            self.encode = self._encode

    def forward(self, w):
        r""":math:`G(m + \Sigma^{1/2} w)`, (B, d) -> (B, 1, H, W)."""
        return self.generator(self.prior.to_latent(w))

    def _encode(self, x):
        code = self.generator.encode(x)
        return self.prior.from_latent(code[0] if isinstance(code, (tuple, list)) else code)


def encode_codes(generator, images, batch_size=64):
    """The encoder's means of ``images`` (N, H, W) or (N, 1, H, W), as a (N, d) tensor on the
    CPU, ``batch_size`` images at a time."""
    from ..latent.generator import encode_mean
    if not hasattr(generator, "encode"):
        raise ValueError("fitting a latent prior needs the model's encoder (a VAE or an "
                         "autoencoder); a GAN has none.")
    p = next(generator.parameters())
    images = torch.as_tensor(images, dtype=torch.float32)
    if images.ndim == 3:
        images = images[:, None]
    shape = tuple(images.shape[-2:])
    if shape != tuple(generator.image_shape):
        raise ValueError(f"the images are {shape}, the model's {tuple(generator.image_shape)}: "
                         "resample them to the model's size.")
    return torch.cat([encode_mean(generator, images[i:i + batch_size].to(p.device)).cpu()
                      for i in range(0, len(images), batch_size)])


def fit_latent_prior(generator, images, shrinkage=SHRINKAGE, rank=None, batch_size=64):
    r"""The :class:`LatentGaussian` of the encoder's codes of ``images`` (the training images:
    never the held-out ones), to attach to the model (:func:`attach_prior`: then
    :func:`~cil_genreg.models.save` keeps it in the checkpoint) and use through :func:`whitened`.

    Parameters
    ----------
    generator : VAE or Autoencoder
    images : array (N, H, W), N >= 2, at the model's size
    shrinkage : float
        :math:`\delta` (:data:`SHRINKAGE`).
    rank : int, optional
        eigenpairs kept (default: all the codes span, min(N − 1, d)).
    batch_size : int

    Returns
    -------
    LatentGaussian
    """
    was_training = generator.training
    generator.eval()
    try:
        codes = encode_codes(generator, images, batch_size)
    finally:
        generator.train(was_training)
    return LatentGaussian.fit(codes, shrinkage, rank)


def attach_prior(generator, prior):
    """Keep ``prior`` with ``generator`` as ``generator.latent_prior`` (what
    :func:`~cil_genreg.models.save` writes into the checkpoint and :func:`whitened` uses by
    default); None removes it. It stays out of the model's ``state_dict`` and submodules, so
    training, :func:`~cil_genreg.models.at_size` and ``load_state_dict`` see the model as it
    was.

    Parameters
    ----------
    generator : torch.nn.Module
        a model with ``latent_dim``.
    prior : LatentGaussian or None

    Returns
    -------
    torch.nn.Module
        ``generator``.

    Raises
    ------
    ValueError
        when the prior's dimension is not the model's latent dimension.
    """
    if prior is not None and prior.latent_dim != generator.latent_dim:
        raise ValueError(f"the latent prior is of dimension {prior.latent_dim}, the model's "
                         f"latent of {generator.latent_dim}.")
    generator.__dict__["latent_prior"] = prior
    return generator


def whitened(generator, prior=None):
    r""":math:`G_\Sigma` of ``generator`` with ``prior`` (default: the one its checkpoint carries,
    ``generator.latent_prior``).

    Parameters
    ----------
    generator : torch.nn.Module
        :math:`G`, with ``latent_dim`` and ``image_shape``.
    prior : LatentGaussian, optional

    Returns
    -------
    WhitenedGenerator
        in eval mode, on the device of ``generator``.

    Raises
    ------
    ValueError
        when the model carries no fitted prior and none is given.
    """
    prior = getattr(generator, "latent_prior", None) if prior is None else prior
    if prior is None:
        raise ValueError(
            "this model carries no fitted latent prior: fit one to its training images with "
            "`cil-genreg fit-prior` (or cil_genreg.models.fit_latent_prior) or use the "
            "standard prior N(0, I).")
    return WhitenedGenerator(generator, prior).to(next(generator.parameters()).device).eval()
