"""Run by tests/test_distributed_training.py under ``torchrun --nproc_per_node 2``: one tiny
epoch of VAE training with DDP and one of WGAN-GP; rank 0 writes the checkpoints."""
import sys

from cil_genreg.training import train
from train_problem import GAN_OPTIONS, OPTIONS, images


def main(checkpoint, gan_checkpoint):
    train(data=images(), checkpoint=checkpoint, **OPTIONS)
    train(data=images(), checkpoint=gan_checkpoint, **GAN_OPTIONS)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
