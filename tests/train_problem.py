"""The tiny training run shared by tests/test_distributed_training.py and its torchrun script."""
#: one epoch of 21 images in global batches of 8 (8, 8, 5: the last one splits 3 / 2)
OPTIONS = dict(model="vae", epochs=1, batch_size=8, latent_dim=4, width=4, seed=0,
               kl_warmup_epochs=0.5, progress=False)


def images():
    """21 shapes of 16 x 16 and 6 held out."""
    from cil_genreg.datasets import shapes
    return shapes(21, size=16, seed=3)

#: the same for a WGAN-GP (a generator step after every critic step, so that both are tested)
GAN_OPTIONS = dict(OPTIONS, model="gan", n_critic=1, lr=1e-3)
