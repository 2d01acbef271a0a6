"""Training of the package's generative models (VAE, autoencoder and WGAN-GP) and of the learned
peers they are compared with (a Plug-and-Play denoiser, a post-processing network).

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
* **denoiser** (DRUNet-style, for Plug-and-Play): ``L = ||D_sigma(x + sigma n, sigma) - x||_2^2``,
  ``n ~ N(0, I)``, ``sigma ~ U(sigma_min, sigma_max)`` per image (``sigma_range``).
* **postprocess** (FBPConvNet): ``L = ||P(x_0) - x||_2^2`` on pairs (FBP image ``x_0``, truth ``x``)
  of one geometry.

The learning rate follows a cosine schedule from ``lr`` to ``lr * lr_final_fraction`` (a function
of the step number only, so a resumed run follows the same schedule).

**Checkpoints.** With ``checkpoint=PATH`` every completed epoch writes, each atomically (a
temporary file then ``os.replace``; an interrupted run loses at most the epoch in progress):

* ``PATH`` -- the generator as a safetensors checkpoint with metadata
  (:func:`cil_genreg.models.save`), loadable with :func:`cil_genreg.models.load`;
* ``PATH + ".state.pt"`` -- the training state: model (and critic) weights, optimiser states,
  the torch RNG state, epoch number and loss history, a plain dict of tensors and numbers read
  back with ``torch.load(weights_only=True)`` (no code runs when it is read).

``resume=True`` continues from the last completed epoch of ``PATH + ".state.pt"``: same weights,
optimiser moments and random stream, so an interrupted run of ``epochs`` epochs, resumed with
the same arguments, ends with the same weights as an uninterrupted one. Resuming with a larger
``epochs`` extends a run; the cosine learning-rate schedule is then spread over the new total.
Without the state file, ``resume`` continues from the weights in ``PATH`` (a fresh optimiser,
said on stderr); a checkpoint already trained for ``epochs`` epochs is never rewritten.

While it runs, a training holds ``PATH + ".lock"``
(:class:`~cil_genreg.utilities.output_safety.OutputLock`): a second training into the same ``PATH`` is
refused. A loss or weights that turn NaN or Inf stop it with
:class:`~.guards.TrainingDivergedError`; nothing non-finite is written (:mod:`.guards`).
"""
from .guards import TrainingDivergedError
from .state import STATE_SUFFIX, load_state, save_state
from .steps import (STEPS, ae_step, denoiser_step, gradient_penalty, kl_divergence,
                    postprocess_step, structured_step, vae_step, wgan_gp_step)
from .trainer import Trainer, TrainResult, cosine_lr, train
from .validation import latent_fit_psnr, reconstruction_psnr, structured_nll, validation_psnr

__all__ = ["train", "Trainer", "TrainResult", "STEPS", "vae_step", "ae_step", "wgan_gp_step",
           "kl_divergence", "gradient_penalty", "denoiser_step", "postprocess_step",
           "latent_fit_psnr", "reconstruction_psnr", "validation_psnr", "cosine_lr", "load_state", "save_state", "STATE_SUFFIX",
           "TrainingDivergedError", "structured_step", "structured_nll"]
