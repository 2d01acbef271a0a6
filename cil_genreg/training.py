"""Training of the package's generative models: VAE, autoencoder and WGAN-GP.

Objectives, for images ``x`` in [0, 1] of shape (1, H, W), averaged over a minibatch:

* **VAE** (the talk's objective), with ``q(z|x) = N(mu(x), diag sigma(x)^2)`` and the
  reparameterisation ``z = mu + sigma * eps``, ``eps ~ N(0, I)``:

  .. math:: L = ||x - G(z)||_2^2 + beta_t KL(q(z|x) || N(0, I)),
            KL = 1/2 sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2),

  the squared error summed over pixels, ``beta_t = beta min(1, t / T_warm)`` (KL warm-up over
  ``kl_warmup_epochs`` epochs).
* **AE**: ``L = ||x - G(E(x))||_2^2``.
* **WGAN-GP** (Gulrajani et al. 2017): critic ``D`` minimises
  ``D(G(z)) - D(x) + lambda_gp (||grad D(x_hat)||_2 - 1)^2`` with ``x_hat`` on random segments
  between real and generated images; the generator minimises ``-D(G(z))``, one generator step
  every ``n_critic`` critic steps; Adam with betas (0, 0.9).

The learning rate follows a cosine schedule from ``lr`` to ``lr * lr_final_fraction`` (a function
of the step number only, so a resumed run follows the same schedule).

**Checkpoints.** With ``checkpoint=PATH`` every completed epoch writes, each atomically (a
temporary file then ``os.replace``; an interrupted run loses at most the epoch in progress):

* ``PATH`` -- the generator as a safetensors checkpoint with metadata
  (:func:`cil_genreg.models.save`), loadable with :func:`cil_genreg.models.load`;
* ``PATH + ".state.pt"`` -- the training state: model (and critic) weights, optimiser states,
  the torch RNG state, epoch number and loss history, a plain dict of tensors and numbers read
  back with ``torch.load(weights_only=True)`` (no code runs when it is read).

**Many processes.** Under ``torchrun --nproc_per_node N`` (and ``--nnodes``) the VAE and AE
train with DistributedDataParallel (:mod:`cil_genreg.distributed`: gloo on the CPU, nccl on
GPUs): every step's global batch of ``batch_size`` images (the same seeded permutation on
every rank) is dealt round-robin to the ranks, each rank's summed loss is scaled by
:math:`N/B`, and DDP's gradient average is then the one-process gradient; the VAE's noise is
drawn for the whole batch on every rank and each keeps its rows. So N processes follow the
one-process run (to rounding), whatever N, and a run may resume with another N. Only rank 0
writes the checkpoint (which records ``world_size``) and shows progress; the loss and the
held-out PSNR are reduced over the ranks.

``resume=True`` continues from the last completed epoch of ``PATH + ".state.pt"``: same weights,
optimiser moments and random stream, so an interrupted run of ``epochs`` epochs, resumed with
the same arguments, ends with the same weights as an uninterrupted one. Resuming with a larger
``epochs`` extends a run; the cosine learning-rate schedule is then spread over the new total.
"""
import math
import os
import platform
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import distributed
from .models import architectures as _arch
from .models.checkpoints import atomic_write, save as save_checkpoint

STATE_SUFFIX = ".state.pt"


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes
    ----------
    model : torch.nn.Module
        the trained model (eval mode); for a GAN the generator.
    critic : torch.nn.Module or None
        the WGAN critic.
    history : list of dict
        per epoch: ``epoch``, ``loss`` (mean training loss), ``seconds``, ``images_per_second``
        and, with validation data, ``val_psnr_db`` (reconstruction PSNR of the encoder-decoder;
        latent-fit PSNR for a GAN).
    images_per_second : float
        training throughput over the epochs run by this call.
    checkpoint : str or None
    """
    model: torch.nn.Module
    critic: object = None
    history: list = field(default_factory=list)
    images_per_second: float = float("nan")
    seconds: float = 0.0
    checkpoint: str = None


def resolve_device(device):
    """A :class:`torch.device`; a clear error when CUDA is asked for and is not available."""
    device = torch.device(device or "cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device={str(device)!r} was asked for but torch.cuda.is_available() is False (no "
            "NVIDIA GPU, or a CPU-only PyTorch build). Use device='cpu' (--device cpu), or "
            "install a CUDA build of PyTorch on a machine with a GPU.")
    return device


def _as_tensor(data, name="data"):
    from .datasets._common import as_images

    if hasattr(data, "as_array") and not isinstance(data, np.ndarray):
        data = data.as_array()
    if isinstance(data, torch.Tensor):
        data = data.detach().cpu().numpy()
    a = as_images(data, name)
    return torch.from_numpy(a)[:, None]


def psnr(x, y, data_range=1.0):
    """Per-image PSNR in dB, ``10 log10(range^2 / mean((x - y)^2))``, for batches (B, ...)."""
    mse = ((x - y) ** 2).flatten(1).mean(1).clamp_min(1e-12)
    return 10.0 * torch.log10(data_range ** 2 / mse)


def kl_divergence(mu, logvar):
    """``KL(N(mu, diag e^logvar) || N(0, I))`` per sample: ``1/2 sum(mu^2 + e^logvar - 1 - logvar)``."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)


def gradient_penalty(critic, real, fake):
    """``E (||grad_x D(x_hat)||_2 - 1)^2`` with ``x_hat = a real + (1 - a) fake``, ``a ~ U(0, 1)``."""
    a = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
    x_hat = (a * real + (1 - a) * fake).requires_grad_(True)
    grad, = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1.0).pow(2).mean()


def _lr_at(step, total, lr, final_fraction):
    if total <= 1:
        return lr
    c = 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
    return lr * (final_fraction + (1.0 - final_fraction) * c)


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
    from .evaluation import latent_fit
    return float(latent_fit(generator, data[:n], steps=steps, progress=False)[2].mean())


@torch.no_grad()
def reconstruction_psnr(model, data, batch_size=256):
    """Mean PSNR (dB) of ``G(mu(x))`` (VAE) or ``G(E(x))`` (AE) over ``data`` (N, 1, H, W)."""
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    values = []
    for i in range(0, len(data), batch_size):
        x = data[i:i + batch_size].to(device)
        values.append(psnr(model.reconstruct(x), x).cpu())
    model.train(was)
    return float(torch.cat(values).mean())


def train(model="vae", data=None, epochs=10, batch_size=64, lr=None, latent_dim=16, seed=0,
          device="cpu", checkpoint=None, resume=False, overwrite=False, beta=0.05,
          kl_warmup_epochs=2.0,
          width=16, val_data=None, n_critic=5, gp_weight=10.0, lr_final_fraction=0.05,
          metadata=None, command=None, threads=None, progress=True):
    """Train a VAE, an autoencoder or a WGAN-GP on images in [0, 1].

    Parameters
    ----------
    model : {"vae", "ae", "gan"} or a package model
        what to train (a fresh model of that architecture, or an existing VAE / Autoencoder /
        WGANGenerator to fine-tune).
    data : array (N, H, W) or (N, 1, H, W), or an object with ``as_array()``
        training images, intensities in [0, 1] (other ranges are min-max scaled).
    epochs : int
        total number of epochs (with ``resume``, including those already done).
    batch_size : int
    lr : float, optional
        Adam learning rate; default 1e-3 (VAE, AE) or 1e-4 (GAN).
    latent_dim : int
    seed : int
        seeds torch's random stream (initial weights, shuffling, noise).
    device : {"cpu", "cuda", ...}
    checkpoint : str, optional
        where to write the generator (safetensors) after each epoch; the training state goes to
        ``checkpoint + ".state.pt"``.
    resume : bool
        continue from the state saved next to ``checkpoint`` (starts afresh, with a message,
        when none exists yet).
    overwrite : bool
        start afresh over an existing ``checkpoint`` (or its training state). Without it (or
        ``resume``) an existing file is refused before anything is trained: a trained model
        is never lost by accident.
    beta : float
        weight of the KL term (VAE).
    kl_warmup_epochs : float
        epochs over which the KL weight ramps linearly from 0 to ``beta``.
    width : int
        channels at the finest scale of the networks.
    val_data : array, optional
        held-out images, scored every epoch: the encoder-decoder reconstruction PSNR (VAE/AE),
        or for a GAN, which has no encoder, the latent-fit PSNR
        (:func:`latent_fit_psnr`: at most 32 of them, 100 Adam steps).
    n_critic, gp_weight : int, float
        WGAN-GP critic steps per generator step and gradient-penalty weight.
    lr_final_fraction : float
        the cosine schedule ends at ``lr * lr_final_fraction``.
    metadata : dict, optional
        extra facts stored in the checkpoint (dataset, split, ...).
    command : str, optional
        the command line that ran the training (stored in the checkpoint).
    threads : int, optional
        ``torch.set_num_threads(threads)``.
    progress : bool
        show a tqdm progress bar with the loss.

    Returns
    -------
    TrainResult

    Raises
    ------
    ValueError
        for missing data, a bad model name, a checkpoint that exists (without ``resume`` or
        ``overwrite``), or a GAN under torchrun with several processes.
    """
    if data is None:
        raise ValueError("data is required: an array (N, H, W) of training images in [0, 1], "
                         "e.g. cil_genreg.datasets.shapes(5000, size=64).")
    if checkpoint and not resume and not overwrite:
        taken = [f for f in (os.fspath(checkpoint), os.fspath(checkpoint) + STATE_SUFFIX)
                 if os.path.exists(f)]
        if taken:
            raise FileExistsError(
                f"{taken[0]!r} exists: continue that run with resume=True (--resume), choose "
                "another checkpoint path (--out), or pass overwrite=True (--overwrite) to "
                "start afresh and replace it.")
    if threads:
        torch.set_num_threads(int(threads))
    ctx = distributed.init(resolve_device(device))
    device = ctx.device
    x_all = _as_tensor(data)
    n, image_shape = x_all.shape[0], tuple(x_all.shape[2:])
    if n == 0:
        raise ValueError("data holds no images.")
    x_val = _as_tensor(val_data, "val_data") if val_data is not None else None

    torch.manual_seed(int(seed))
    if isinstance(model, torch.nn.Module):
        net = model
        arch = net.config["arch"]
        if tuple(net.image_shape) != image_shape:
            raise ValueError(f"the model makes {net.image_shape} images but data are "
                             f"{image_shape}.")
    else:
        arch = {"autoencoder": "ae", "wgan": "gan"}.get(str(model).lower(), str(model).lower())
        if arch not in _arch.ARCHITECTURES:
            raise ValueError(f"model must be one of {list(_arch.ARCHITECTURES)}, got {model!r}.")
        net = _arch.build(arch, latent_dim=latent_dim, image_shape=image_shape, width=width)
    net = net.to(device).train()
    if ctx.distributed and arch == "gan":
        raise ValueError("training under torchrun with several processes takes --model vae or "
                         "ae; train the GAN in one process (its critic's gradient penalty is a "
                         "double backward that DDP does not split).")
    per_image_loss = distributed.wrap(ctx, _PerImageLoss(net)) if arch != "gan" else None
    lr = float(lr if lr is not None else (1e-4 if arch == "gan" else 1e-3))
    critic = None
    if arch == "gan":
        critic = _arch.WGANCritic(image_shape, width=net.width).to(device).train()
        opt = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.0, 0.9))
        opt_c = torch.optim.Adam(critic.parameters(), lr=lr, betas=(0.0, 0.9))
    else:
        opt, opt_c = torch.optim.Adam(net.parameters(), lr=lr), None

    steps_per_epoch = math.ceil(n / batch_size)
    total_steps = steps_per_epoch * int(epochs)
    start_epoch, history = 0, []
    state_path = (os.fspath(checkpoint) + STATE_SUFFIX) if checkpoint else None
    if resume:
        if not checkpoint:
            raise ValueError("resume=True needs checkpoint=PATH (where the last run saved).")
        if os.path.isfile(state_path):
            state = torch.load(state_path, map_location=device, weights_only=True)
            if state["config"] != net.config:
                raise ValueError(f"cannot resume: {state_path!r} holds a {state['config']} model "
                                 f"but this run builds {net.config}; use the same --model, "
                                 "--latent-dim and data, or another --out.")
            if state.get("n_images") != n:
                tqdm.write(f"warning: resuming on {n} images; the saved run used "
                           f"{state.get('n_images')}.")
            net.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            if critic is not None:
                critic.load_state_dict(state["critic"])
                opt_c.load_state_dict(state["optimizer_critic"])
            torch.set_rng_state(state["rng"].cpu())
            if device.type == "cuda" and "cuda_rng" in state:
                torch.cuda.set_rng_state(state["cuda_rng"].cpu())
            start_epoch, history = int(state["epoch"]), list(state["history"])
        elif progress and ctx.is_main:
            tqdm.write(f"no training state at {state_path!r}: starting from epoch 0.")

    bar = tqdm(total=total_steps, initial=start_epoch * steps_per_epoch,
               disable=not progress or not ctx.is_main,
               desc=f"train {arch}", unit="batch", dynamic_ncols=True, mininterval=1.0)
    images_seen, t_train = 0, 0.0
    for epoch in range(start_epoch, int(epochs)):
        perm = torch.randperm(n)
        t0 = time.perf_counter()
        loss_sum, count = 0.0, 0
        for b in range(steps_per_epoch):
            step = epoch * steps_per_epoch + b
            for g in opt.param_groups:
                g["lr"] = _lr_at(step, total_steps, lr, lr_final_fraction)
            batch = perm[b * batch_size:(b + 1) * batch_size]
            rows = distributed.rank_rows(ctx, len(batch))
            x = x_all[batch[rows]].to(device)
            if arch in ("vae", "ae"):
                if arch == "vae":
                    # the whole batch's noise on every rank: the same draws as in one process
                    eps = torch.randn(len(batch), net.latent_dim, device=device)[rows]
                    warm = kl_warmup_epochs * steps_per_epoch
                    beta_t = beta * min(1.0, (step + 1) / warm) if warm > 0 else beta
                    per_image = per_image_loss(x, eps, beta_t)
                else:
                    per_image = per_image_loss(x)
                loss = per_image.sum() * distributed.loss_scale(ctx, len(batch))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss = per_image.detach().sum() / max(1, x.shape[0])
            else:
                for g in opt_c.param_groups:
                    g["lr"] = _lr_at(step, total_steps, lr, lr_final_fraction)
                z = torch.randn(x.shape[0], net.latent_dim, device=device)
                with torch.no_grad():
                    fake = net(z)
                loss = (critic(fake).mean() - critic(x).mean()
                        + gp_weight * gradient_penalty(critic, x, fake))
                opt_c.zero_grad(set_to_none=True)
                loss.backward()
                opt_c.step()
                if (step + 1) % n_critic == 0:
                    z = torch.randn(x.shape[0], net.latent_dim, device=device)
                    g_loss = -critic(net(z)).mean()
                    opt.zero_grad(set_to_none=True)
                    g_loss.backward()
                    opt.step()
            loss_sum += float(loss.detach()) * x.shape[0]
            count += x.shape[0]
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss_sum / count:.4g}")
        seconds = time.perf_counter() - t0
        loss_sum, count = distributed.total(ctx, [loss_sum, count])
        count = int(count)
        images_seen += count
        t_train += seconds
        record = {"epoch": epoch + 1, "loss": loss_sum / count, "seconds": seconds,
                  "images_per_second": count / seconds}
        if x_val is not None:
            if arch == "gan":
                record["val_psnr_db"] = latent_fit_psnr(net, x_val)
            else:  # each rank scores its share; the mean over all held-out images
                mine = x_val[distributed.rank_rows(ctx, len(x_val))]
                score = reconstruction_psnr(net, mine) * len(mine) if len(mine) else 0.0
                score, scored = distributed.total(ctx, [score, len(mine)])
                record["val_psnr_db"] = score / scored
            bar.set_postfix(epoch=epoch + 1, loss=f"{record['loss']:.4g}",
                            val_psnr=f"{record['val_psnr_db']:.2f}")
        history.append(record)
        if checkpoint and ctx.is_main:
            _write_checkpoint(checkpoint, state_path, net, critic, opt, opt_c, epoch + 1,
                              int(epochs), history, n, device, dict(
                                  metadata or {}, arch=arch, seed=int(seed), lr=lr,
                                  batch_size=int(batch_size), beta=beta if arch == "vae" else None,
                                  kl_warmup_epochs=kl_warmup_epochs if arch == "vae" else None,
                                  command=command, world_size=ctx.world_size))
    bar.close()
    ips = images_seen / t_train if t_train > 0 else float("nan")
    if progress and images_seen and ctx.is_main:
        tqdm.write(f"trained {epochs - start_epoch} epoch(s) of {n} images in {t_train:.1f} s: "
                   f"{ips:.0f} images/s on {device}.")
    net.eval()
    return TrainResult(model=net, critic=critic, history=history, images_per_second=ips,
                       seconds=t_train, checkpoint=os.fspath(checkpoint) if checkpoint else None)


class _PerImageLoss(torch.nn.Module):
    """The per-image loss of a VAE or AE as one ``forward`` (what DDP wraps: its gradient
    hooks are armed by ``forward``, and ``encode`` is not one):
    ``||x - G(mu + sigma eps)||^2 + beta KL`` (VAE) or ``||x - G(E(x))||^2`` (AE)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x, eps=None, beta=0.0):
        if eps is None:
            return (self.net(self.net.encode(x)) - x).pow(2).flatten(1).sum(1)
        mu, logvar = self.net.encode(x)
        z = mu + eps * (0.5 * logvar).exp()
        return (self.net(z) - x).pow(2).flatten(1).sum(1) + beta * kl_divergence(mu, logvar)


def _write_checkpoint(path, state_path, net, critic, opt, opt_c, epoch, epochs, history, n,
                      device, info):
    state = {"epoch": epoch, "config": net.config, "model": net.state_dict(),
             "optimizer": opt.state_dict(), "rng": torch.get_rng_state(), "history": history,
             "n_images": n}
    if critic is not None:
        state["critic"] = critic.state_dict()
        state["optimizer_critic"] = opt_c.state_dict()
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state()
    atomic_write(state_path, lambda tmp: torch.save(state, tmp))
    last = history[-1]
    meta = {k: v for k, v in info.items() if v is not None}
    meta.update({
        "epochs": epoch, "epochs_planned": epochs, "n_train_images": n,
        "final_loss": last["loss"],
        "images_per_second": float(np.mean([h["images_per_second"] for h in history])),
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__, "machine": platform.machine(), "device": str(device)})
    if "val_psnr_db" in last:
        key = ("held_out_latent_fit_psnr_db" if info.get("arch") == "gan" else
               "held_out_reconstruction_psnr_db")
        meta[key] = last["val_psnr_db"]
    save_checkpoint(net, path, meta)
