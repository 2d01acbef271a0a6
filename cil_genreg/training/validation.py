"""Held-out scores of a model during training: the encoder-decoder reconstruction PSNR (VAE,
AE) or, for a generator without an encoder (a GAN), the latent-fit PSNR."""
import torch

from ..utilities.metrics import batch_psnr


def latent_fit_psnr(generator, data, n=32, steps=100):
    r"""Mean PSNR (dB) of :math:`G(z^*)` against held-out images, with
    :math:`z^* = \arg\min_z \|G(z) - x\|^2 + 10^{-3}\|z\|^2` by Adam from :math:`z = 0`: the
    held-out error of a generator without an encoder (a GAN).

    Parameters
    ----------
    generator : torch.nn.Module
        (B, d) -> (B, 1, H, W) with ``latent_dim``.
    data : torch.Tensor (N, 1, H, W) or (N, H, W)
        held-out images in [0, 1]; the first ``n`` are fitted.
    n, steps : int
        images fitted and Adam steps (kept small: this runs every epoch).

    Returns
    -------
    float
    """
    from ..experiments.evaluation import latent_fit
    return float(latent_fit(generator, data[:n], steps=steps, progress=False)[2].mean())


@torch.no_grad()
def reconstruction_psnr(model, data, batch_size=256):
    """Mean PSNR (dB) of ``G(mu(x))`` (VAE) or ``G(E(x))`` (AE) over ``data`` (N, 1, H, W).

    Parameters
    ----------
    model : torch.nn.Module
        a VAE or Autoencoder with ``reconstruct``.
    data : torch.Tensor
        (N, 1, H, W) in [0, 1].
    batch_size : int

    Returns
    -------
    float
    """
    values = _per_batch(model, data, batch_size, lambda x: batch_psnr(model.reconstruct(x), x))
    return float(torch.cat(values).mean())


def _per_batch(model, data, batch_size, score):
    """``score(x)`` of each batch of ``data`` (moved to the model's device), in eval mode, the
    model's mode restored after."""
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    try:
        return [score(data[i:i + batch_size].to(device)).cpu()
                for i in range(0, len(data), batch_size)]
    finally:
        model.train(was)


@torch.no_grad()
def network_psnr(net, arch, data, sigma_range=(0.0, 0.1), batch_size=64):
    r"""Mean held-out PSNR (dB) of a denoiser, :math:`D_\sigma(x + \sigma n)` against
    :math:`x` at the middle of ``sigma_range`` (noise seeded: the same every epoch), or of a
    post-processing network, :math:`P(x_0)` against :math:`x` for pairs (N, 2, H, W).

    Parameters
    ----------
    net : torch.nn.Module
    arch : {"drunet", "fbpconvnet"}
    data : torch.Tensor
    sigma_range : (float, float)
    batch_size : int

    Returns
    -------
    float
    """
    device = next(net.parameters()).device
    was = net.training
    net.eval()
    sigma = 0.5 * (sigma_range[0] + sigma_range[1])
    noise = torch.Generator().manual_seed(0)
    values = []
    for i in range(0, len(data), batch_size):
        x = data[i:i + batch_size]
        if arch == "drunet":
            v = x + sigma * torch.randn(x.shape, generator=noise)
            out, truth = net(v.to(device), sigma), x
        else:
            out, truth = net(x[:, :1].to(device)), x[:, 1:]
        values.append(batch_psnr(out, truth.to(device)).cpu())
    net.train(was)
    return float(torch.cat(values).mean())


@torch.no_grad()
def structured_nll(model, data, batch_size=64):
    r"""Mean held-out negative log-likelihood of a structured VAE in nats per pixel,
    :math:`-\log p(x \mid \mu(x)) / N` (the encoder's mean code; :math:`N` pixels).

    Parameters
    ----------
    model : StructuredVAE
    data : torch.Tensor
        (N, 1, H, W) in [0, 1].
    batch_size : int

    Returns
    -------
    float
    """
    values = _per_batch(model, data, batch_size, lambda x: model.nll(x, model.encode(x)[0]).sum())
    return float(sum(values)) / data[:, :1].numel()


def validation_psnr(net, arch, x_val, sigma_range=(0.0, 0.1)):
    """The held-out PSNR (dB) reported each epoch: :func:`latent_fit_psnr` for a GAN,
    :func:`network_psnr` for a denoiser or post-processing network, else
    :func:`reconstruction_psnr`.

    Parameters
    ----------
    net : torch.nn.Module
    arch : str
        "vae", "ae" or "gan".
    x_val : torch.Tensor
        held-out images (N, 1, H, W) (pairs (N, 2, H, W) for "fbpconvnet").
    sigma_range : (float, float)
        the denoiser's noise levels.

    Returns
    -------
    float
    """
    if arch in ("drunet", "fbpconvnet"):
        return network_psnr(net, arch, x_val, sigma_range)
    return latent_fit_psnr(net, x_val) if arch == "gan" else reconstruction_psnr(net, x_val)
