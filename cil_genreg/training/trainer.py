"""The training loop: a :class:`Trainer` that runs epochs of one step function per batch
(:mod:`.steps`), scores held-out data (:mod:`.validation`) and saves its state (:mod:`.state`)
after each epoch; :func:`train` builds one from the options and runs it.

**Many processes.** Under ``torchrun --nproc_per_node N`` (and ``--nnodes``) the VAE and AE
train with DistributedDataParallel (:mod:`cil_genreg.utilities.distributed`: gloo on the CPU, nccl on
GPUs), the WGAN-GP with the same all-reduce of the gradients done explicitly (DDP does not
split its gradient penalty's double backward): every step's global batch of ``batch_size``
images (the same seeded permutation on every rank) is dealt round-robin to the ranks, each
rank's summed loss is scaled by N/B, and the gradient average is then the one-process
gradient; the noise (the VAE's, the GAN's latents and penalty weights) is drawn for the whole
batch on every rank and each keeps its rows. So N processes follow the one-process run (to
rounding), whatever N, and a run may resume with another N. Only rank 0 writes the checkpoint
(which records ``world_size``) and shows progress; the loss and the held-out PSNR are reduced
over the ranks.

Extend it through ``Trainer.callbacks``: each is called as ``callback(trainer, record)`` after
every epoch (after validation, before the checkpoint is written), and may raise to stop the run.
"""
import math
import os
import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from ..utilities import distributed
from ..latent import resolve_device
from ..models import architectures as _arch
from .inputs import arch_of, model_and_arch, training_batch
from . import guards, state as _state
from .steps import LOSSES, STEPS
from .validation import structured_nll, validation_psnr


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

    Parameters
    ----------
    model, critic, history, images_per_second, seconds, checkpoint
        the attributes above.
    """
    model: torch.nn.Module
    critic: object = None
    history: list = field(default_factory=list)
    images_per_second: float = float("nan")
    seconds: float = 0.0
    checkpoint: str = None


def cosine_lr(step, total, lr, final_fraction):
    """The learning rate at ``step`` of ``total``: a cosine from ``lr`` to
    ``lr * final_fraction`` (a function of the step only, so a resumed run follows it).

    Parameters
    ----------
    step, total : int
    lr, final_fraction : float

    Returns
    -------
    float
    """
    if total <= 1:
        return lr
    c = 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
    return lr * (final_fraction + (1.0 - final_fraction) * c)


class Trainer:
    """Trains ``net`` (architecture ``arch``) on the images ``x_all`` (N, 1, H, W).

    Parameters
    ----------
    net : torch.nn.Module
        the model, on ``device``.
    arch : str
        "vae", "ae" or "gan" (which step function runs, :data:`.steps.STEPS`).
    x_all : torch.Tensor
        the training images (N, 1, H, W) on the CPU.
    device : torch.device
    epochs, batch_size : int
    lr : float
        the initial learning rate (cosine schedule to ``lr * lr_final_fraction``).
    x_val : torch.Tensor, optional
        held-out images scored after each epoch.
    checkpoint : str, optional
        where :func:`.state.save_state` writes after each epoch.
    progress : bool
    ctx : cil_genreg.utilities.distributed.Context, optional
        this process's place under torchrun (default: a world of one).
    **options
        ``beta``, ``kl_warmup_epochs`` (VAE), ``n_critic``, ``gp_weight`` (WGAN-GP),
        ``sigma_range`` (the denoiser's noise levels), ``lr_final_fraction``.

    Attributes
    ----------
    callbacks : list
        ``callback(trainer, record)`` after every epoch.
    """

    def __init__(self, net, arch, x_all, device, epochs, batch_size, lr, x_val=None,
                 checkpoint=None, progress=True, beta=0.05, kl_warmup_epochs=2.0, n_critic=5,
                 gp_weight=10.0, lr_final_fraction=0.05, ctx=None, sigma_range=(0.0, 0.1)):
        self.ctx = ctx or distributed.Context(device=device)
        self.net, self.arch, self.x_all, self.device = net, arch, x_all, device
        self.n = int(x_all.shape[0])
        self.epochs, self.batch_size, self.lr = int(epochs), int(batch_size), float(lr)
        self.x_val, self.checkpoint, self.progress = x_val, checkpoint, progress
        self.beta, self.kl_warmup_epochs = beta, kl_warmup_epochs
        self.n_critic, self.gp_weight = n_critic, gp_weight
        self.lr_final_fraction = lr_final_fraction
        self.sigma_range = tuple(float(s) for s in sigma_range)
        self.steps_per_epoch = math.ceil(self.n / self.batch_size)
        self.total_steps = self.steps_per_epoch * self.epochs
        self.step = STEPS[arch]
        self.critic = self.opt_critic = None
        if arch == "gan":
            self.critic = _arch.WGANCritic(net.image_shape, width=net.width).to(device).train()
            self.opt = torch.optim.Adam(net.parameters(), lr=self.lr, betas=(0.0, 0.9))
            self.opt_critic = torch.optim.Adam(self.critic.parameters(), lr=self.lr,
                                               betas=(0.0, 0.9))
        else:
            self.opt = torch.optim.Adam(net.parameters(), lr=self.lr)
        self.callbacks = []
        self.per_image_loss = (distributed.wrap(self.ctx, LOSSES[arch](net))
                               if arch in LOSSES else None)
        self._batch, self._rows = 0, slice(None)

    @property
    def loss_scale(self):
        """N / B: this rank's summed losses times it give, averaged by DDP, the mean over the
        global batch of B images."""
        return distributed.loss_scale(self.ctx, self._batch)

    def batch_noise(self, dim, uniform=False):
        """Noise (B, dim) for the whole global batch, standard normal (or U(0, 1)): this rank's
        rows of it (every rank draws the same numbers, as one process would)."""
        draw = torch.rand if uniform else torch.randn
        return draw(self._batch, dim, device=self.device)[self._rows]

    def average_gradients(self, module):
        """Average ``module``'s gradients over the ranks (the GAN's steps; a no-op in one
        process)."""
        distributed.average_gradients(self.ctx, module)

    def _set_lr(self, step):
        lr = cosine_lr(step, self.total_steps, self.lr, self.lr_final_fraction)
        for opt in (self.opt, self.opt_critic):
            for g in (opt.param_groups if opt is not None else ()):
                g["lr"] = lr

    def train_epoch(self, epoch, bar):
        """One pass over the shuffled images; returns the epoch's record (``epoch``, ``loss``,
        ``seconds``, ``images_per_second``).

        Parameters
        ----------
        epoch : int
            0-based.
        bar : tqdm.tqdm
            advanced by one per batch.

        Returns
        -------
        dict
        """
        perm = torch.randperm(self.n)
        t0 = time.perf_counter()
        loss_sum, count, size = 0.0, 0, self.batch_size
        for b in range(self.steps_per_epoch):
            step = epoch * self.steps_per_epoch + b
            self._set_lr(step)
            batch = perm[b * size:(b + 1) * size]
            self._batch, self._rows = len(batch), distributed.rank_rows(self.ctx, len(batch))
            x = self.x_all[batch[self._rows]].to(self.device)
            loss = self.step(self, x, step)
            loss_sum += float(loss.detach()) * x.shape[0]
            count += x.shape[0]
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss_sum / count:.4g}")
        seconds = time.perf_counter() - t0
        loss_sum, count = distributed.total(self.ctx, [loss_sum, count])
        return {"epoch": epoch + 1, "loss": loss_sum / count, "seconds": seconds,
                "images_per_second": count / seconds}

    def run(self, start_epoch=0, history=None, info=None):
        """Train from ``start_epoch`` to ``epochs``; validate, call the callbacks and save after
        each epoch.

        Parameters
        ----------
        start_epoch : int
        history : list of dict, optional
            the records of the epochs already done (a resumed run).
        info : dict, optional
            facts for the checkpoint's metadata.

        Returns
        -------
        TrainResult
        """
        history = list(history or [])
        bar = tqdm(total=self.total_steps, initial=start_epoch * self.steps_per_epoch,
                   disable=not self.progress or not self.ctx.is_main,
                   desc=f"train {self.arch}", unit="batch",
                   dynamic_ncols=True, mininterval=1.0)
        images_seen, t_train = 0, 0.0
        for epoch in range(start_epoch, self.epochs):
            record = self.train_epoch(epoch, bar)
            images_seen += self.n
            t_train += record["seconds"]
            if self.x_val is not None:
                record["val_psnr_db"] = self._validate()
                if self.arch == "svae" and not self.ctx.distributed:
                    record["val_nll_per_pixel"] = structured_nll(self.net, self.x_val)
                bar.set_postfix(epoch=epoch + 1, loss=f"{record['loss']:.4g}",
                                val_psnr=f"{record['val_psnr_db']:.2f}")
            history.append(record)
            for callback in self.callbacks:
                callback(self, record)
            if self.checkpoint and self.ctx.is_main:
                _state.save_state(self, epoch + 1, history,
                                  dict(info or {}, world_size=self.ctx.world_size))
        bar.close()
        ips = images_seen / t_train if t_train > 0 else float("nan")
        if self.progress and images_seen and self.ctx.is_main:
            tqdm.write(f"trained {self.epochs - start_epoch} epoch(s) of {self.n} images in "
                       f"{t_train:.1f} s: {ips:.0f} images/s on {self.device}.")
        self.net.eval()
        return TrainResult(model=self.net, critic=self.critic, history=history,
                           images_per_second=ips, seconds=t_train,
                           checkpoint=os.fspath(self.checkpoint) if self.checkpoint else None)


    def _validate(self):
        """The held-out PSNR; under torchrun each rank scores its share (GAN: rank 0's
        latent fit, the same on every rank) and the mean over all images is reduced."""
        if self.arch == "gan" or not self.ctx.distributed:
            return validation_psnr(self.net, self.arch, self.x_val, self.sigma_range)
        mine = self.x_val[distributed.rank_rows(self.ctx, len(self.x_val))]
        score = (validation_psnr(self.net, self.arch, mine, self.sigma_range) * len(mine)
                 if len(mine) else 0.0)
        score, scored = distributed.total(self.ctx, [score, len(mine)])
        return score / scored


@guards.locked_checkpoint
def train(model="vae", data=None, epochs=10, batch_size=64, lr=None, latent_dim=16, seed=0,
          device="cpu", checkpoint=None, resume=False, overwrite=False, beta=0.05,
          kl_warmup_epochs=2.0,
          width=16, val_data=None, n_critic=5, gp_weight=10.0, lr_final_fraction=0.05,
          metadata=None, command=None, threads=None, progress=True, sigma_range=(0.0, 0.1)):
    """Train a VAE, an autoencoder, a WGAN-GP, a Plug-and-Play denoiser or a post-processing
    network on images in [0, 1].

    Parameters
    ----------
    model : {"vae", "ae", "gan", "denoiser", "postprocess"} or a package model
        what to train (a fresh model of that architecture, or an existing VAE / Autoencoder /
        WGANGenerator / DRUNetDenoiser / PostProcessingUNet to fine-tune, or a
        StructuredVAE made by ``StructuredVAE.from_vae``: its precision head trains on its
        negative ELBO, the rest as frozen as it was made).
    data : array (N, H, W) or (N, 1, H, W), or an object with ``as_array()``
        training images, intensities in [0, 1] (other ranges are min-max scaled); for
        "postprocess" pairs (N, 2, H, W) of FBP images and truths, kept as they are
        (:func:`cil_genreg.experiments.postprocess_data.fbp_pairs`).
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
        continue from the state saved next to ``checkpoint``; without that state, from the
        weights in ``checkpoint`` itself (fresh optimiser; said on stderr), else from epoch 0.
        A checkpoint already trained for ``epochs`` epochs is left as it is.
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
    sigma_range : (float, float)
        the denoiser's noise levels: sigma ~ U(lo, hi) per image, 0 <= lo <= hi, hi > 0.

    Returns
    -------
    TrainResult

    Raises
    ------
    ValueError, TypeError
        for meaningless settings (``epochs``, ``batch_size``, ``latent_dim``, ``width`` or
        ``threads`` below 1, ``lr`` not > 0, ``beta`` < 0, ...) or constant data.
    FileExistsError
        when ``checkpoint`` exists without ``resume`` / ``overwrite``, or another training
        holds its lock (``checkpoint + ".lock"``, see
        :class:`~cil_genreg.utilities.output_safety.OutputLock`).
    TrainingDivergedError
        when the loss or the weights become NaN or Inf (nothing non-finite is written).
    """
    guards.check_settings(epochs, batch_size, lr, latent_dim, width, beta, kl_warmup_epochs,
                          threads)
    if data is None:
        raise ValueError("data is required: an array (N, H, W) of training images in [0, 1], "
                         "e.g. cil_genreg.datasets.shapes(5000, size=64).")
    if checkpoint and not resume and not overwrite:
        _state.refuse_overwrite(checkpoint)
    if resume and not checkpoint:
        raise ValueError("resume=True needs checkpoint=PATH (where the last run saved).")
    if threads:
        torch.set_num_threads(int(threads))
    ctx = distributed.init(resolve_device(device))
    device = ctx.device
    guards.check_sigma_range(sigma_range)
    arch = arch_of(model)
    x_all = training_batch(data, arch)
    if x_all.shape[0] == 0:
        raise ValueError("data holds no images.")
    guards.check_not_constant(x_all)
    x_val = training_batch(val_data, arch, "val_data") if val_data is not None else None
    torch.manual_seed(int(seed))
    net, arch = model_and_arch(model, tuple(x_all.shape[2:]), latent_dim, width)
    net = net.to(device).train()
    lr = float(lr if lr is not None else (1e-4 if arch == "gan" else 1e-3))
    trainer = Trainer(net, arch, x_all, device, epochs, batch_size, lr, x_val=x_val,
                      checkpoint=checkpoint, progress=progress, beta=beta,
                      kl_warmup_epochs=kl_warmup_epochs, n_critic=n_critic, gp_weight=gp_weight,
                      lr_final_fraction=lr_final_fraction, ctx=ctx, sigma_range=sigma_range)
    trainer.callbacks.append(guards.stop_if_diverged)
    start_epoch, history = 0, []
    if resume:
        start_epoch, history = _state.load_state(trainer, _state.state_path(checkpoint),
                                                 trainer.n, progress and ctx.is_main)
    info = dict(metadata or {}, arch=arch, seed=int(seed), lr=lr, batch_size=int(batch_size),
                beta=beta if arch == "vae" else None,
                kl_warmup_epochs=kl_warmup_epochs if arch == "vae" else None, command=command,
                sigma_range=list(map(float, sigma_range)) if arch == "drunet" else None)
    return trainer.run(start_epoch, history, info)
