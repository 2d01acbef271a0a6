"""One optimisation step per model kind, each ``step(trainer, x, step) -> loss`` on a batch
``x`` (B, 1, H, W): the VAE's reparameterised loss with its KL warm-up, the autoencoder's
reconstruction loss, and WGAN-GP's critic step (with its gradient penalty) and, every
``n_critic`` steps, a generator step; and the networks the generative models are compared
with: the Plug-and-Play denoiser's noise-level-conditioned denoising loss and the
post-processing network's supervised loss on (FBP, truth) pairs; and the structured VAE's
negative ELBO with its sparse precision (its head alone, in the usual frozen-mean training).
"""
import torch


def kl_divergence(mu, logvar):
    """``KL(N(mu, diag e^logvar) || N(0, I))`` per sample: ``1/2 sum(mu^2 + e^logvar - 1 - logvar)``.

    Parameters
    ----------
    mu, logvar : torch.Tensor
        (B, d), the posterior's mean and log-variance.

    Returns
    -------
    torch.Tensor
        (B,).
    """
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)


def gradient_penalty(critic, real, fake, mix=None, reduce=True):
    """``E (||grad_x D(x_hat)||_2 - 1)^2`` with ``x_hat = a real + (1 - a) fake``, ``a ~ U(0, 1)``.

    Parameters
    ----------
    critic : torch.nn.Module
        :math:`D`: (B, 1, H, W) -> (B,).
    real, fake : torch.Tensor
        batches (B, 1, H, W).
    mix : torch.Tensor, optional
        the (B, 1, 1, 1) weights ``a``; default drawn here.
    reduce : bool
        the mean (default), or the (B,) per-image penalties.

    Returns
    -------
    torch.Tensor
        a scalar (or (B,)), differentiable with respect to the critic's weights.
    """
    a = torch.rand(real.shape[0], 1, 1, 1, device=real.device) if mix is None else mix
    x_hat = (a * real + (1 - a) * fake).requires_grad_(True)
    grad, = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    penalty = (grad.flatten(1).norm(dim=1) - 1.0).pow(2)
    return penalty.mean() if reduce else penalty


def vae_step(trainer, x, step):
    """One Adam step on ``||x - G(z)||^2 + beta_t KL`` with ``z = mu + sigma eps``.

    Parameters
    ----------
    trainer : Trainer
    x : torch.Tensor
        the batch (B, 1, H, W).
    step : int
        the global step number (for the KL warm-up).

    Returns
    -------
    torch.Tensor
        the batch's mean loss.
    """
    warm = trainer.kl_warmup_epochs * trainer.steps_per_epoch
    beta_t = trainer.beta * min(1.0, (step + 1) / warm) if warm > 0 else trainer.beta
    # the whole global batch's noise on every rank, each keeping its rows: the same draws as
    # in one process
    eps = trainer.batch_noise(trainer.net.latent_dim)
    return _descend(trainer, trainer.per_image_loss(x, eps, beta_t), x)


def ae_step(trainer, x, step):
    """One Adam step on ``||x - G(E(x))||^2``.

    Parameters
    ----------
    trainer : Trainer
    x : torch.Tensor
        the batch (B, 1, H, W).
    step : int
        the global step number (unused: the loss has no schedule).

    Returns
    -------
    torch.Tensor
        the batch's mean loss.
    """
    return _descend(trainer, trainer.per_image_loss(x), x)


def _descend(trainer, per_image, x):
    """One Adam step on this rank's summed losses scaled by N/B (see
    :func:`cil_genreg.utilities.distributed.loss_scale`: DDP's gradient average is then the gradient of
    the global batch's mean); returns this rank's mean loss."""
    loss = per_image.sum() * trainer.loss_scale
    trainer.opt.zero_grad(set_to_none=True)
    loss.backward()
    trainer.opt.step()
    return per_image.detach().sum() / max(1, x.shape[0])


class _NetworkLoss(torch.nn.Module):
    """A per-image loss of the network ``net`` as a module (DDP wraps it; its ``forward`` arms
    DDP's gradient hooks).

    Parameters
    ----------
    net : torch.nn.Module
    """

    def __init__(self, net):
        super().__init__()
        self.net = net


class PerImageLoss(_NetworkLoss):
    """The per-image loss of a VAE or AE as one ``forward`` (what DistributedDataParallel wraps:
    its gradient hooks are armed by ``forward``, and ``encode`` is not one):
    ``||x - G(mu + sigma eps)||^2 + beta KL`` (VAE, given ``eps``) or ``||x - G(E(x))||^2``
    (AE).

    Parameters
    ----------
    net : torch.nn.Module
        a VAE or Autoencoder.
    """

    def forward(self, x, eps=None, beta=0.0):
        if eps is None:
            return (self.net(self.net.encode(x)) - x).pow(2).flatten(1).sum(1)
        mu, logvar, z = _reparametrised(self.net, x, eps)
        return (self.net(z) - x).pow(2).flatten(1).sum(1) + beta * kl_divergence(mu, logvar)


def _reparametrised(net, x, eps):
    """``(mu, logvar, z)`` of the encoder's q(z|x) with ``z = mu + sigma * eps``."""
    mu, logvar = net.encode(x)
    return mu, logvar, mu + eps * (0.5 * logvar).exp()


class StructuredLoss(_NetworkLoss):
    r"""The per-image negative ELBO of a :class:`~cil_genreg.models.StructuredVAE` as one
    ``forward`` (what DDP wraps): with :math:`z = \mu + \sigma \odot \varepsilon`,

    .. math:: \tfrac12\|B_z(x - m(z))\|_2^2 - \sum_i \log d_i(z) + \tfrac{N}{2}\log 2\pi
              + \beta\, \mathrm{KL}(q(z|x) \,\|\, N(0, I)),

    in nats (the KL term is a constant when the encoder is frozen, the usual case:
    :meth:`~cil_genreg.models.StructuredVAE.from_vae`).

    Parameters
    ----------
    net : StructuredVAE
    """

    def forward(self, x, eps, beta=0.0):
        mu, logvar, z = _reparametrised(self.net, x, eps)
        return self.net.nll(x, z) + beta * kl_divergence(mu, logvar)


def structured_step(trainer, x, step):
    """One Adam step on the structured VAE's negative ELBO (:class:`StructuredLoss`): with the
    mean frozen, on the precision head alone.

    Parameters
    ----------
    trainer : Trainer
    x : torch.Tensor
        the batch (B, 1, H, W).
    step : int
        the global step number (unused: no schedule).

    Returns
    -------
    torch.Tensor
        the batch's mean loss (nats per image).
    """
    eps = trainer.batch_noise(trainer.net.latent_dim)
    return _descend(trainer, trainer.per_image_loss(x, eps, trainer.beta), x)


def wgan_gp_step(trainer, x, step):
    """One critic step on ``D(G(z)) - D(x) + gp_weight * penalty`` and, every ``n_critic``
    steps, one generator step on ``-D(G(z))``.

    Parameters
    ----------
    trainer : Trainer
    x : torch.Tensor
        the batch of real images (B, 1, H, W).
    step : int
        the global step number.

    Returns
    -------
    torch.Tensor
        the critic's loss.
    """
    net, critic, opt, opt_c = trainer.net, trainer.critic, trainer.opt, trainer.opt_critic
    # noise for the whole global batch on every rank, each keeping its rows; under torchrun the
    # gradients are averaged over the ranks explicitly (DDP does not split the penalty's double
    # backward), with the losses scaled by N/B as in the other steps
    z = trainer.batch_noise(net.latent_dim)
    mix = trainer.batch_noise(1, uniform=True)[:, :, None, None]
    with torch.no_grad():
        fake = net(z)
    per_image = (critic(fake) - critic(x)
                 + trainer.gp_weight * gradient_penalty(critic, x, fake, mix, reduce=False))
    opt_c.zero_grad(set_to_none=True)
    (per_image.sum() * trainer.loss_scale).backward()
    trainer.average_gradients(critic)
    opt_c.step()
    if (step + 1) % trainer.n_critic == 0:
        z = trainer.batch_noise(net.latent_dim)
        g_loss = -critic(net(z)).sum() * trainer.loss_scale
        opt.zero_grad(set_to_none=True)
        g_loss.backward()
        trainer.average_gradients(net)
        opt.step()
    return per_image.detach().sum() / max(1, x.shape[0])


class DenoisingLoss(_NetworkLoss):
    r"""The per-image loss of a denoiser :math:`D` as one ``forward`` (what DDP wraps):
    :math:`\|D_\sigma(x + \sigma n, \sigma) - x\|_2^2`, summed over pixels.

    Parameters
    ----------
    net : DRUNetDenoiser
    """

    def forward(self, x, sigma, noise):
        level = sigma.reshape(-1, 1, 1, 1)
        return (self.net(x + level * noise, sigma) - x).pow(2).flatten(1).sum(1)


class PairLoss(_NetworkLoss):
    r"""The per-image loss of a post-processing network :math:`P` on pairs stacked as two
    channels, ``x[:, 0]`` the FBP image :math:`x_0`, ``x[:, 1]`` the truth :math:`x`:
    :math:`\|P(x_0) - x\|_2^2`, summed over pixels.

    Parameters
    ----------
    net : PostProcessingUNet
    """

    def forward(self, pairs):
        return (self.net(pairs[:, :1]) - pairs[:, 1:]).pow(2).flatten(1).sum(1)


def denoiser_step(trainer, x, step):
    r"""One Adam step on :math:`\|D_\sigma(x + \sigma n, \sigma) - x\|^2`,
    :math:`n \sim N(0, I)`, :math:`\sigma \sim U(\sigma_{min}, \sigma_{max})` per image
    (``trainer.sigma_range``).

    Parameters
    ----------
    trainer : Trainer
    x : torch.Tensor
        clean images (B, 1, H, W).
    step : int
        the global step number (unused).

    Returns
    -------
    torch.Tensor
        the batch's mean loss.
    """
    lo, hi = trainer.sigma_range
    sigma = lo + (hi - lo) * trainer.batch_noise(1, uniform=True)[:, 0]
    noise = trainer.batch_noise(x[0].numel()).reshape(x.shape)
    return _descend(trainer, trainer.per_image_loss(x, sigma, noise), x)


def postprocess_step(trainer, x, step):
    r"""One Adam step on :math:`\|P(x_0) - x\|^2` for pairs ``x`` (B, 2, H, W) (see
    :class:`PairLoss`).

    Parameters
    ----------
    trainer : Trainer
    x : torch.Tensor
        (B, 2, H, W): FBP images and truths.
    step : int
        the global step number (unused).

    Returns
    -------
    torch.Tensor
        the batch's mean loss.
    """
    return _descend(trainer, trainer.per_image_loss(x), x)


#: the step function of each architecture
STEPS = {"vae": vae_step, "ae": ae_step, "gan": wgan_gp_step, "drunet": denoiser_step,
         "fbpconvnet": postprocess_step, "svae": structured_step}
#: the per-image loss module of each architecture trained by :func:`_descend` (DDP wraps it)
LOSSES = {"vae": PerImageLoss, "ae": PerImageLoss, "drunet": DenoisingLoss,
          "fbpconvnet": PairLoss, "svae": StructuredLoss}
