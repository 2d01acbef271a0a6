"""The patch prior: the patch operator (adjoint, tiling, borders) and the exact tiled
regularisers against closed forms of a linear generator and against each patch on its own."""
import math

import numpy as np
import pytest
from cil.framework import ImageGeometry
from cil.optimisation.functions import OperatorCompositionFunction

from cil_genreg import (PatchGenerativeRegulariser, PatchOperator, RangeGenerativeRegulariser,
                        SoftGenerativeRegulariser, SparseDeviationGenerativeRegulariser)
from generators import LinearGenerator

TIGHT = dict(tolerance=1e-12, max_iteration=300, adaptive_tolerance=False)
P = 8  # the linear generator's patches are 8 x 8


def rel_err(a, b):
    return np.linalg.norm(np.ravel(a) - np.ravel(b)) / max(np.linalg.norm(np.ravel(b)), 1e-12)


def ridge(W, rhs, ridge_weight):
    return np.linalg.solve(W.T @ W + ridge_weight * np.eye(W.shape[1]), W.T @ rhs)


@pytest.fixture
def lin():
    G = LinearGenerator(image_shape=(P, P))
    return G, G.weight.detach().double().numpy(), G.bias.detach().double().numpy()


@pytest.mark.parametrize("shape, stride, offset, border", [
    ((24, 24), 8, (0, 0), "wrap"), ((24, 32), 8, (3, 5), "wrap"), ((21, 19), 8, (2, 6), "skip"),
    ((20, 20), 4, (1, 2), "wrap"), ((20, 22), 3, (0, 1), "skip"), ((3, 16, 16), 8, (4, 4), "wrap")])
def test_patch_operator_adjoint_passes_the_dot_product_test(shape, stride, offset, border):
    ig = ImageGeometry(*shape[::-1])
    op = PatchOperator(ig, P, stride=stride, offset=offset, border=border)
    x = ig.allocate("random", seed=1)
    u = op.range_geometry().allocate("random", seed=2)
    lhs = float(np.vdot(op.direct(x).as_array().astype(float), u.as_array().astype(float)))
    rhs = float(np.vdot(x.as_array().astype(float), op.adjoint(u).as_array().astype(float)))
    assert lhs == pytest.approx(rhs, rel=1e-5)
    counts = np.bincount(op.index.ravel(), minlength=x.size)
    assert op.norm() == pytest.approx(math.sqrt(counts.max()), rel=1e-6)


def test_non_overlapping_wrap_tiling_is_a_permutation_and_wraps_at_the_border():
    ig = ImageGeometry(24, 16)                          # (16, 24): 2 x 3 tiles
    op = PatchOperator(ig, P, offset=(3, 5))
    x = ig.allocate("random", seed=3)
    assert op.n_patches == 6 and not op.overlapping and op.covered().all()
    np.testing.assert_array_equal(op.adjoint(op.direct(x)).as_array(), x.as_array())
    patches = op.direct(x).as_array()
    arr = x.as_array()
    np.testing.assert_array_equal(patches[0], arr[3:11, 5:13])
    # the last tile of the first row starts at column 21 and continues at column 0
    np.testing.assert_array_equal(patches[2], np.roll(arr, (-3, -21), axis=(0, 1))[:8, :8])


def test_skip_border_leaves_partial_tiles_out_and_overlap_counts_pixels():
    ig = ImageGeometry(20, 20)
    op = PatchOperator(ig, P, offset=(2, 2), border="skip")
    covered = op.covered()
    assert covered[2:18, 2:18].all() and not covered[:2].any() and not covered[18:].any()
    ones = ig.allocate(1.0)
    over = PatchOperator(ig, P, stride=4)                # wrap, stride p/2: every pixel in 4
    np.testing.assert_allclose(over.adjoint(over.direct(ones)).as_array(), 4.0)
    assert over.overlapping and over.norm() == pytest.approx(2.0)


def test_patch_operator_bad_arguments_are_refused():
    ig = ImageGeometry(16, 16)
    with pytest.raises(ValueError, match="stride"):
        PatchOperator(ig, 8, stride=9)
    with pytest.raises(ValueError, match="border"):
        PatchOperator(ig, 8, border="reflect")
    with pytest.raises(ValueError, match="patch_size"):
        PatchOperator(ig, 17)


def soft_patch_prox(W, b, v, mu, tau):
    z = ridge(W, v - b, mu * (1 + 2 * tau))
    return (v + 2 * tau * (W @ z + b)) / (1 + 2 * tau)


def test_soft_patch_prior_value_gradient_prox_closed_forms_and_the_seams_move(lin):
    G, W, b = lin
    mu, tau = 0.1, 0.3
    ig = ImageGeometry(24, 16)
    x = ig.allocate("random", seed=1)
    R = PatchGenerativeRegulariser(SoftGenerativeRegulariser(G, mu=mu, **TIGHT))
    corners = []
    for call in range(3):
        offset = R.offset
        corners.append(offset)
        tiles = PatchOperator(ig, P, offset=offset)
        patches = tiles.direct(x).as_array().reshape(tiles.n_patches, -1).astype(float)
        expected = np.stack([soft_patch_prox(W, b, v, mu, tau) for v in patches])
        u = tiles.range_geometry().allocate(None)
        u.fill(expected.reshape(u.shape).astype(np.float32))
        want = tiles.adjoint(u).as_array()
        assert rel_err(R.proximal(x, tau).as_array(), want) < 1e-3
    assert corners == [(0, 0), (4, 4), (2, 6)]       # the tiling moved at every call
    # value and gradient: those of the tiling of the last call, sum over its patches
    tiles = PatchOperator(ig, P, offset=corners[-1])
    patches = tiles.direct(x).as_array().reshape(tiles.n_patches, -1).astype(float)
    zs = [ridge(W, v - b, mu) for v in patches]
    value = sum(np.sum((W @ z + b - v) ** 2) + mu * z @ z for z, v in zip(zs, patches))
    assert R(x) == pytest.approx(value, rel=1e-3)
    grad_tiles = PatchOperator(ig, P, offset=R.offset)
    gp = grad_tiles.direct(x).as_array().reshape(grad_tiles.n_patches, -1).astype(float)
    g = np.stack([2 * (v - W @ ridge(W, v - b, mu) - b) for v in gp])
    u = grad_tiles.range_geometry().allocate(None)
    u.fill(g.reshape(u.shape).astype(np.float32))
    assert rel_err(R.gradient(x).as_array(), grad_tiles.adjoint(u).as_array()) < 1e-3


@pytest.mark.parametrize("cls", [RangeGenerativeRegulariser, SparseDeviationGenerativeRegulariser,
                                 SoftGenerativeRegulariser])
def test_patch_prox_is_the_per_patch_prox_and_skips_partial_tiles(cls, lin):
    G, _, _ = lin
    tau = 0.2
    ig = ImageGeometry(21, 19)
    x = ig.allocate("random", seed=5)
    R = PatchGenerativeRegulariser(cls(G, **TIGHT), offsets=[(3, 5)], border="skip")
    single = cls(G, **TIGHT)
    patch_ig = ImageGeometry(P, P)
    out = ig.allocate(None)
    result = R.proximal(x, tau, out=out)
    assert result is out
    arr, got = x.as_array(), out.as_array()
    tiles = PatchOperator(ig, P, offset=(3, 5), border="skip")
    for r in range(3, 19 - P + 1, P):
        for c in range(5, 21 - P + 1, P):
            patch = patch_ig.allocate(None)
            patch.fill(arr[r:r + P, c:c + P])
            single.reset()
            np.testing.assert_allclose(got[r:r + P, c:c + P],
                                       single.proximal(patch, tau).as_array(), atol=1e-4)
    # pixels of the partial border tiles are left as they are
    np.testing.assert_array_equal(got[~tiles.covered()], arr[~tiles.covered()])


def test_patch_prior_regularises_a_volume_and_its_conjugate_needs_the_tiles(lin):
    G, W, b = lin
    mu = 0.1
    ig = ImageGeometry(16, 16, 2)
    x = ig.allocate("random", seed=7)
    R = PatchGenerativeRegulariser(SoftGenerativeRegulariser(G, mu=mu, **TIGHT), offsets=[(0, 0)])
    patches = PatchOperator(ig, P).direct(x).as_array().reshape(8, -1).astype(float)
    value = sum(np.sum((W @ ridge(W, v - b, mu) + b - v) ** 2) + mu * np.sum(
        ridge(W, v - b, mu) ** 2) for v in patches)
    assert R(x) == pytest.approx(value, rel=1e-3)
    skip = PatchGenerativeRegulariser(SoftGenerativeRegulariser(G, mu=mu, **TIGHT),
                                      offsets=[(2, 2)], border="skip")
    s = ig.allocate(0.1)
    assert skip.convex_conjugate(s) == math.inf        # s is not zero off the tiles
    sv = PatchOperator(ig, P).direct(s).as_array().reshape(8, -1).astype(float)
    conj = sum(v @ v / 4 + b @ v + np.sum((W.T @ v) ** 2) / (4 * mu) for v in sv)
    assert R.convex_conjugate(s) == pytest.approx(conj, rel=1e-3)


def test_overlapping_patches_compose_in_cil_with_the_sum_of_patch_gradients(lin):
    G, W, b = lin
    mu = 0.1
    ig = ImageGeometry(16, 16)
    x = ig.allocate("random", seed=8)
    K = PatchOperator(ig, P, stride=4)
    F = OperatorCompositionFunction(SoftGenerativeRegulariser(G, mu=mu, **TIGHT), K)
    patches = K.direct(x).as_array().reshape(K.n_patches, -1).astype(float)
    g = np.stack([2 * (v - W @ ridge(W, v - b, mu) - b) for v in patches])
    u = K.range_geometry().allocate(None)
    u.fill(g.reshape(u.shape).astype(np.float32))
    assert rel_err(F.gradient(x).as_array(), K.adjoint(u).as_array()) < 1e-3


def test_warm_start_is_kept_per_tiling_corner(lin):
    G, _, _ = lin
    ig = ImageGeometry(16, 16)
    x = ig.allocate("random", seed=9)
    R = PatchGenerativeRegulariser(SoftGenerativeRegulariser(G, mu=0.1, max_iteration=300,
                                                             tolerance=1e-10,
                                                             adaptive_tolerance=False),
                                   offsets=[(0, 0), (4, 4)])
    R.proximal(x, 0.1)
    R.proximal(x, 0.1)
    before = R.regulariser.stats.iterations
    R.proximal(x, 0.1)                                 # corner (0, 0) again, same input
    assert R.regulariser.stats.iterations - before <= 2
    with pytest.raises(TypeError, match="generative regulariser"):
        PatchGenerativeRegulariser(G)


def test_reconstruct_uses_a_latent_grid_model_whole_at_the_image_size():
    """methods.reconstruct with a fully convolutional model of 32² images on a 64² problem
    runs the model at 64² (models.at_size, no tiles): the same result as passing the 64² model;
    a dense 32² model is left as it is (a patch prior)."""
    import torch
    from cil_genreg import models
    from cil_genreg.experiments import methods
    from cil_genreg.physics.forward import add_noise, make_geometry, make_projector
    torch.manual_seed(0)
    grid = models.build("vae", latent_dim=2 * 64, image_shape=32, width=4, latent_grid=8).eval()
    ig, ag = make_geometry(64, 12)
    assert methods.generator_for(grid, ig).image_shape == (64, 64)
    dense = models.build("vae", 4, 32, width=4).eval()
    assert methods.generator_for(dense, ig) is dense
    assert methods.generator_for(grid, make_geometry(32, 12)[0]) is grid
    A = make_projector(ig, ag)
    truth = ig.allocate(0)
    truth.as_array()[16:48, 20:44] = 0.8
    y, _ = add_noise(A.direct(truth), 0.02, 0)
    opts = dict(iterations=3, max_iteration=5)
    small = methods.reconstruct("soft", A, y, 1.0, grid, **opts)
    whole = methods.reconstruct("soft", A, y, 1.0, models.at_size(grid, 64), **opts)
    np.testing.assert_allclose(small.as_array(), whole.as_array(), atol=1e-6)
