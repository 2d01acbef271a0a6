"""Held-out images for evaluation: data the shipped models never saw in training."""
import numpy as np

from .mnist import mnist
from .synthetic import shapes


def held_out_digits(n, seed=0):
    """``n`` MNIST test digits (the split no shipped model has seen), chosen with ``seed``.

    Parameters
    ----------
    n : int
        how many (at most the 1,005 of the test split).
    seed : int
        seed of the choice.

    Returns
    -------
    numpy.ndarray
        (n, 28, 28) float32 in [0, 1], in the test split's order.
    """
    digits = mnist(split="test")
    rng = np.random.default_rng(seed)
    return digits[np.sort(rng.choice(len(digits), size=min(n, len(digits)), replace=False))]


def held_out_shapes(n, size=64, seed=0):
    """``n`` non-empty shapes from the held-out stream ``shapes(..., seed=1_000_000 + seed)``
    (the shipped ``shapes-vae`` was trained on seed 0).

    Parameters
    ----------
    n : int
    size : int
        image side.
    seed : int

    Returns
    -------
    numpy.ndarray
        (n, size, size) float32 in [0, 1].
    """
    images = shapes(3 * n + 10, size=size, seed=1_000_000 + seed)
    keep = images[images.reshape(len(images), -1).max(axis=1) > 0]
    return np.ascontiguousarray(keep[:n])
