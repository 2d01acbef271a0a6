"""Run by tests/test_distributed_training.py under ``torchrun --nproc_per_node 2``: one tiny
epoch of VAE training with DDP; rank 0 writes the checkpoint."""
import sys

from cil_genreg.training import train
from train_problem import OPTIONS, images


def main(checkpoint):
    train(data=images(), checkpoint=checkpoint, **OPTIONS)


if __name__ == "__main__":
    main(sys.argv[1])
