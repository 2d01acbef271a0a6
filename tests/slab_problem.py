"""The small volume shared by tests/test_slabs.py and the torchrun script it starts."""
import numpy as np

#: reconstruction options of both runs (few iterations: a test of the split, not of quality)
OPTIONS = dict(iterations=6, mu=1e-3, seed=0)


def problem(slices=5, angles=8, seed=0):
    """A 5-slice volume of held-out digits under a 3D parallel beam: data, volume geometry,
    and the shipped mnist-vae generator."""
    from cil_genreg.physics import forward
    from cil_genreg.experiments import methods
    from cil_genreg.datasets import mnist

    digits = mnist(split="test")[:slices]
    ig, ag = forward.make_geometry(28, angles, "parallel", slices=slices)
    A = forward.make_projector(ig, ag)
    truth = ig.allocate(None)
    truth.fill(digits)
    y, _ = forward.add_noise(A.direct(truth), 0.05, np.random.default_rng(seed))
    return y, ig, methods.load_generator("mnist-vae")
