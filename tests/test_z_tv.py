"""TV along z beside a generative prior: the PDHG builder against the closed form of a
two-slice TV denoising problem, and its effect on a volume with a generative regulariser."""
import numpy as np
import pytest
from cil.framework import ImageGeometry
from cil.optimisation.functions import ZeroFunction
from cil.optimisation.operators import IdentityOperator

from cil_genreg import SoftGenerativeRegulariser
from cil_genreg.algorithms.z_tv import z_difference_operator, z_tv_pdhg
from generators import LinearGenerator


def test_z_difference_is_the_forward_difference_between_slices():
    ig = ImageGeometry(3, 2, 4)
    x = ig.allocate("random", seed=0)
    d = z_difference_operator(ig).direct(x).as_array()
    assert np.allclose(d[:-1], np.diff(x.as_array(), axis=0)) and np.allclose(d[-1], 0)
    with pytest.raises(ValueError, match="vertical"):
        z_difference_operator(ImageGeometry(3, 2))


def test_pdhg_solves_two_slice_tv_denoising_in_closed_form():
    # min_x ||x - y||^2 + a |x2 - x1| per pixel: x1 = y1 + a s / 2, x2 = y2 - a s / 2 with
    # s = sign(y2 - y1) where |y2 - y1| > a, else both the mean
    ig = ImageGeometry(4, 3, 2)
    y = ig.allocate(None)
    rng = np.random.default_rng(0)
    y.fill(rng.uniform(0, 2, ig.shape).astype(np.float32))
    a = 0.6
    algo = z_tv_pdhg(IdentityOperator(ig), y, ZeroFunction(), a, initial=ig.allocate(0),
                     update_objective_interval=10_000)
    algo.run(150, verbose=0)
    y1, y2 = y.as_array()
    s = np.sign(y2 - y1)
    far = np.abs(y2 - y1) > a
    x1 = np.where(far, y1 + a * s / 2, (y1 + y2) / 2)
    x2 = np.where(far, y2 - a * s / 2, (y1 + y2) / 2)
    assert np.allclose(algo.solution.as_array(), np.stack([x1, x2]), atol=1e-5)


def test_tv_along_z_flattens_a_volume_regularised_by_a_generator():
    G = LinearGenerator()
    ig = ImageGeometry(8, 8, 4)
    y = ig.allocate("random", seed=1)
    jumps = []
    for alpha in (0.0, 5.0):
        R = SoftGenerativeRegulariser(G, mu=0.1, max_iteration=30)
        algo = z_tv_pdhg(IdentityOperator(ig), y, 0.5 * R, alpha, initial=y.copy(),
                         update_objective_interval=10_000)
        algo.run(60, verbose=0)
        jumps.append(np.abs(np.diff(algo.solution.as_array(), axis=0)).sum())
    assert jumps[1] < 0.5 * jumps[0]
    with pytest.raises(ValueError, match="alpha_z"):
        z_tv_pdhg(IdentityOperator(ig), y, ZeroFunction(), -1.0)
