"""One optimisation step per model kind, each ``step(trainer, x, step) -> loss`` on a batch
``x`` (B, 1, H, W): the VAE's reparameterised loss with its KL warm-up, the autoencoder's
reconstruction loss, and WGAN-GP's critic step (with its gradient penalty) and, every
``n_critic`` steps, a generator step.
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


def gradient_penalty(critic, real, fake):
    """``E (||grad_x D(x_hat)||_2 - 1)^2`` with ``x_hat = a real + (1 - a) fake``, ``a ~ U(0, 1)``.

    Parameters
    ----------
    critic : torch.nn.Module
        :math:`D`: (B, 1, H, W) -> (B,).
    real, fake : torch.Tensor
        batches (B, 1, H, W).

    Returns
    -------
    torch.Tensor
        a scalar, differentiable with respect to the critic's weights.
    """
    a = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
    x_hat = (a * real + (1 - a) * fake).requires_grad_(True)
    grad, = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1.0).pow(2).mean()


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
    net, opt = trainer.net, trainer.opt
    mu, logvar = net.encode(x)
    z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
    rec = (net(z) - x).pow(2).flatten(1).sum(1)
    warm = trainer.kl_warmup_epochs * trainer.steps_per_epoch
    beta_t = trainer.beta * min(1.0, (step + 1) / warm) if warm > 0 else trainer.beta
    loss = (rec + beta_t * kl_divergence(mu, logvar)).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


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
    net, opt = trainer.net, trainer.opt
    loss = (net(net.encode(x)) - x).pow(2).flatten(1).sum(1).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


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
    z = torch.randn(x.shape[0], net.latent_dim, device=x.device)
    with torch.no_grad():
        fake = net(z)
    loss = (critic(fake).mean() - critic(x).mean()
            + trainer.gp_weight * gradient_penalty(critic, x, fake))
    opt_c.zero_grad(set_to_none=True)
    loss.backward()
    opt_c.step()
    if (step + 1) % trainer.n_critic == 0:
        z = torch.randn(x.shape[0], net.latent_dim, device=x.device)
        g_loss = -critic(net(z)).mean()
        opt.zero_grad(set_to_none=True)
        g_loss.backward()
        opt.step()
    return loss


#: the step function of each architecture
STEPS = {"vae": vae_step, "ae": ae_step, "gan": wgan_gp_step}
