"""The latent chain (slices of a volume coupled along z) against its closed form on a linear
generator: the coupled latent step is then a block-tridiagonal linear system."""
import numpy as np
import pytest
import torch
from cil.framework import ImageGeometry

from cil_genreg import SoftGenerativeRegulariser, RangeGenerativeRegulariser
from cil_genreg.latent import LatentChain, LatentSolver, SquaredMisfit
from generators import ConvGenerator, LinearGenerator


def chain_solution(G, v, weight, c, lam, before=None, after=None):
    r"""argmin_Z sum_k weight ||v_k - W z_k - b||^2 + c ||z_k||^2 + lam (chain with boundaries):
    (weight WᵀW + c I) z_k + lam (L z)_k = weight Wᵀ(v_k - b) + lam (boundary terms), where L
    is the path graph's Laplacian, +1 on the diagonal at an end with a boundary latent."""
    W, b = G.weight.detach().double().numpy(), G.bias.detach().double().numpy()
    S, d = v.shape[0], W.shape[1]
    L = np.zeros((S, S))
    for k in range(S - 1):
        L[k, k] += 1; L[k + 1, k + 1] += 1; L[k, k + 1] -= 1; L[k + 1, k] -= 1  # noqa: E702
    rhs = weight * (v.reshape(S, -1).double().numpy() - b) @ W
    if before is not None:
        L[0, 0] += 1
        rhs[0] += lam * np.asarray(before, np.float64)
    if after is not None:
        L[-1, -1] += 1
        rhs[-1] += lam * np.asarray(after, np.float64)
    M = np.kron(np.eye(S), weight * W.T @ W + c * np.eye(d)) + lam * np.kron(L, np.eye(d))
    return np.linalg.solve(M, rhs.reshape(-1)).reshape(S, d)


@pytest.fixture
def volume():
    G = LinearGenerator()
    v = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    return G, v


@pytest.mark.parametrize("optimiser", ["bfgs", "lbfgs"])
def test_coupled_latent_step_solves_the_block_tridiagonal_system(volume, optimiser):
    G, v = volume
    solver = LatentSolver(G, optimiser=optimiser, max_iter=500, tol=1e-12)
    sol = solver.solve(SquaredMisfit(0.7), v, 0.2, coupling=LatentChain(1.5))
    expected = chain_solution(G, v, 0.7, 0.2, 1.5)
    assert np.allclose(sol.z.numpy(), expected, rtol=1e-3, atol=1e-4)
    # coupled: clearly not the slice-wise ridge solution
    assert not np.allclose(expected, chain_solution(G, v, 0.7, 0.2, 0.0), atol=1e-2)
    # the per-slice objectives add up to the chain objective at the returned latents
    z = sol.z.double()
    misfit = 0.7 * (v.double() - G(sol.z).double()).flatten(1).square().sum(1)
    total = misfit.sum() + 0.2 * z.square().sum() + 1.5 * (z[1:] - z[:-1]).square().sum()
    assert sol.objective.sum().item() == pytest.approx(total.item(), rel=1e-5)
    assert torch.allclose(sol.image, G(sol.z), atol=1e-6)


def test_boundary_latents_enter_the_system_and_fix_the_slab_split(volume):
    G, v = volume
    before, after = np.full(4, 0.5), np.linspace(-1, 1, 4)
    tight = dict(max_iter=500, tol=1e-12)
    sol = LatentSolver(G, **tight).solve(SquaredMisfit(1.0), v, 0.1,
                                         coupling=LatentChain(2.0, before, after))
    assert np.allclose(sol.z.numpy(), chain_solution(G, v, 1.0, 0.1, 2.0, before, after),
                       rtol=1e-3, atol=1e-4)
    # a volume split in two slabs, each given its neighbour's latent at the whole volume's
    # solution as a boundary, solves to that same solution (the fixed point slab-parallel
    # reconstruction iterates towards)
    whole = chain_solution(G, v, 1.0, 0.1, 2.0)
    low = LatentSolver(G, **tight).solve(SquaredMisfit(1.0), v[:3], 0.1,
                                         coupling=LatentChain(2.0, after=whole[3]))
    high = LatentSolver(G, **tight).solve(SquaredMisfit(1.0), v[3:], 0.1,
                                          coupling=LatentChain(2.0, before=whole[2]))
    assert np.allclose(torch.cat([low.z, high.z]).numpy(), whole, rtol=1e-3, atol=1e-4)


def test_coupled_restarts_keep_the_best_whole_chain():
    G = ConvGenerator()
    v = G(torch.randn(4, G.latent_dim, generator=torch.Generator().manual_seed(2))).detach()
    chain = LatentChain(0.05)
    one = LatentSolver(G, max_iter=40, warm_start=False).solve(SquaredMisfit(1.0), v, 1e-3,
                                                               coupling=chain)
    many = LatentSolver(G, max_iter=40, warm_start=False, restarts=3, seed=0).solve(
        SquaredMisfit(1.0), v, 1e-3, coupling=chain)
    assert many.z.shape == (4, G.latent_dim)
    assert many.objective.sum() <= one.objective.sum() + 1e-5


def test_zero_coupling_is_the_slicewise_solve_exactly():
    G = ConvGenerator()
    v = G(torch.randn(5, G.latent_dim, generator=torch.Generator().manual_seed(3))).detach()
    plain = LatentSolver(G, max_iter=30).solve(SquaredMisfit(1.0), v, 1e-2)
    zero = LatentSolver(G, max_iter=30).solve(SquaredMisfit(1.0), v, 1e-2,
                                              coupling=LatentChain(0.0))
    assert torch.equal(plain.z, zero.z) and torch.equal(plain.objective, zero.objective)


@pytest.mark.parametrize("cls", [SoftGenerativeRegulariser, RangeGenerativeRegulariser])
def test_regulariser_with_zero_coupling_reproduces_slicewise_exactly(cls):
    G = ConvGenerator()
    ig = ImageGeometry(16, 16, 5)
    x = ig.allocate("random", seed=2)
    kwargs = dict(max_iteration=20, seed=0)
    a, b = cls(G, **kwargs), cls(G, latent_coupling=0.0, **kwargs)
    for _ in range(2):  # and the warm-started second call
        pa, pb = a.proximal(x, 0.5), b.proximal(x, 0.5)
        assert np.array_equal(pa.as_array(), pb.as_array())
        assert np.array_equal(a.latent, b.latent)


def test_soft_prox_of_a_volume_with_coupling_matches_the_closed_form():
    G = LinearGenerator()
    ig = ImageGeometry(8, 8, 4)
    x = ig.allocate("random", seed=3)
    mu, tau, lam = 0.1, 0.4, 0.8
    R = SoftGenerativeRegulariser(G, mu=mu, tolerance=1e-12, max_iteration=500,
                                  latent_coupling=lam, adaptive_tolerance=False)
    p = R.proximal(x, tau)
    v = torch.from_numpy(x.as_array())[:, None]
    z = chain_solution(G, v, 1.0 / (1.0 + 2.0 * tau), mu, lam)
    assert np.allclose(R.latent, z, rtol=1e-3, atol=1e-4)
    gz = G(torch.from_numpy(z).float()).detach().numpy()[:, 0]
    assert np.allclose(p.as_array(), (x.as_array() + 2 * tau * gz) / (1 + 2 * tau), atol=1e-4)
    # the value: the chain objective at its minimiser
    value = R(x)
    zv = chain_solution(G, v, 1.0, mu, lam)
    gv = G(torch.from_numpy(zv).float()).detach().double().numpy()[:, 0]
    expected = (((x.as_array() - gv) ** 2).sum() + mu * (zv ** 2).sum()
                + lam * ((zv[1:] - zv[:-1]) ** 2).sum())
    assert value == pytest.approx(expected, rel=1e-4)


def test_bad_coupling_and_boundary_give_clear_errors():
    G = LinearGenerator()
    with pytest.raises(ValueError, match="latent_coupling"):
        SoftGenerativeRegulariser(G, latent_coupling=-1.0)
    R = SoftGenerativeRegulariser(G, latent_coupling=1.0)
    with pytest.raises(ValueError, match="4 entries"):
        R.set_latent_boundary(before=np.zeros(3))
    with pytest.raises(ValueError, match=r"\(d,\) vector"):
        LatentChain(1.0, before=torch.zeros(2, 4))
