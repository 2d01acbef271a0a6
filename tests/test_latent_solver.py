"""The torch-only latent solver against closed forms of a linear generator."""
import pytest
import torch

from cil_genreg.latent import (GeneratorAdapter, HuberMisfit, LatentSolver, NegatedInnerProduct,
                               SquaredMisfit, resolve_device)
from generators import ConvGenerator, LinearGenerator


def ridge_latent(G, v, weight, c):
    """argmin_z weight ||v - Wz - b||^2 + c ||z||^2 for the linear generator."""
    W, b = G.weight.detach().double(), G.bias.detach().double()
    rhs = weight * (v.reshape(v.shape[0], -1).double() - b) @ W
    return torch.linalg.solve(weight * W.T @ W + c * torch.eye(W.shape[1], dtype=torch.float64),
                              rhs.T).T


@pytest.mark.parametrize("optimiser,max_iter", [("bfgs", 100), ("lbfgs", 100), ("adam", 3000)])
def test_squared_misfit_matches_ridge_solution(optimiser, max_iter):
    G = LinearGenerator()
    v = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    solver = LatentSolver(G, optimiser=optimiser, max_iter=max_iter, tol=1e-10,
                          lr=0.02 if optimiser == "adam" else None)
    sol = solver.solve(SquaredMisfit(0.7), v, 0.2)
    expected = ridge_latent(G, v, 0.7, 0.2).float()
    assert torch.allclose(sol.z, expected, rtol=1e-3, atol=2e-3 if optimiser == "adam" else 1e-4)
    # the returned image and objective belong to the returned latent
    assert torch.allclose(sol.image, G(sol.z), atol=1e-6)
    obj = 0.7 * (v - sol.image).flatten(1).square().sum(1) + 0.2 * sol.z.square().sum(1)
    assert torch.allclose(sol.objective, obj, rtol=1e-5)


def test_warm_start_reuses_previous_solution_and_saves_iterations():
    G = ConvGenerator()
    v = G(torch.randn(2, G.latent_dim)).detach()
    solver = LatentSolver(G, max_iter=200, tol=1e-6)
    first = solver.solve(SquaredMisfit(1.0), v, 0.01)
    assert torch.equal(solver.warm_latent("default"), first.z)
    second = solver.solve(SquaredMisfit(1.0), v, 0.01)
    assert second.iterations < first.iterations
    assert second.objective.sum() <= first.objective.sum() + 1e-6
    solver.reset()
    assert solver.warm_latent("default") is None


def test_restarts_are_batched_and_keep_the_best_start():
    G = ConvGenerator()
    torch.manual_seed(3)
    v = G(2.0 * torch.randn(4, G.latent_dim)).detach()
    single = LatentSolver(G, max_iter=30, warm_start=False)
    multi = LatentSolver(G, max_iter=30, restarts=5, seed=0, warm_start=False)
    a = single.solve(SquaredMisfit(1.0), v, 1e-3)
    b = multi.solve(SquaredMisfit(1.0), v, 1e-3)
    # each target keeps its best of 6 starts, among them the one the single solver used
    assert (b.objective <= a.objective + 1e-5).all()
    assert b.z.shape == (4, G.latent_dim)
    # one batch of at most 6 x 4 images per generator call: all at first, then those still running
    assert multi.stats.generator_images <= 24 * multi.stats.generator_calls


def test_counters_and_no_weight_gradients():
    G = ConvGenerator()
    solver = LatentSolver(G, max_iter=10)
    solver.solve(SquaredMisfit(1.0), torch.rand(1, 1, 16, 16), 0.1)
    s = solver.stats
    assert s.solves == 1 and 1 <= s.iterations <= 10
    assert s.generator_calls >= s.iterations and s.seconds > 0
    assert all(p.grad is None for p in G.parameters())
    assert all(p.requires_grad for p in G.parameters())  # restored after the solve


def test_huber_misfit_is_moreau_envelope_of_abs():
    r = torch.linspace(-2, 2, 41).reshape(1, 1, 41, 1)
    delta = 0.5
    value = HuberMisfit(delta)(torch.zeros_like(r), r)
    # Moreau envelope: min_d 1/(2 delta) (d - r)^2 + |d|, on a fine grid of d
    d = torch.linspace(-3, 3, 60001).reshape(-1, 1)
    env = ((d - r.reshape(1, -1)) ** 2 / (2 * delta) + d.abs()).min(0).values.sum()
    assert value.item() == pytest.approx(env.item(), rel=1e-4)


def test_linear_misfit_maximises_inner_product():
    G = LinearGenerator()
    s = torch.randn(1, 1, 8, 8)
    sol = LatentSolver(G, tol=1e-12, max_iter=100).solve(NegatedInnerProduct(), s, 0.5)
    W = G.weight.detach()
    z = (s.reshape(1, -1) @ W) / (2 * 0.5)  # stationary point of <Wz + b, s> - c||z||^2
    assert torch.allclose(sol.z, z, rtol=1e-3, atol=1e-4)


def test_plain_module_needs_latent_dim_and_shape_is_probed():
    net = torch.nn.Sequential(torch.nn.Linear(3, 25), torch.nn.Unflatten(1, (1, 5, 5)))
    with pytest.raises(ValueError, match="latent_dim"):
        GeneratorAdapter(net)
    spec = GeneratorAdapter(net, latent_dim=3)
    assert spec.image_shape == (5, 5)
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        GeneratorAdapter(torch.nn.Linear(3, 25), latent_dim=3)


def test_missing_cuda_gives_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device exists on this machine")
    with pytest.raises(RuntimeError, match="cuda.*device='cpu'"):
        resolve_device("cuda")
    with pytest.raises(RuntimeError, match="torch.cuda.is_available"):
        LatentSolver(LinearGenerator(), device="cuda")


def test_bad_solver_options():
    with pytest.raises(ValueError, match="optimiser"):
        LatentSolver(LinearGenerator(), optimiser="sgd")
    with pytest.raises(ValueError, match="tol"):
        LatentSolver(LinearGenerator(), tol=0)


@pytest.mark.parametrize("memory", ["bfgs", "lbfgs"])
def test_batched_quasi_newton_solves_each_problem_as_if_alone(memory):
    """Problems of very different scale in one batch: each converges on its own terms."""
    from cil_genreg.latent import BFGSMemory, LBFGSMemory, batched_quasi_newton
    torch.manual_seed(0)
    scales = torch.tensor([1e-3, 1.0, 1e3])
    centres = torch.randn(3, 5)

    evaluated = []

    def fg(z, rows):  # f_b(z) = scale_b * sum_i i * (z_i - c_bi)^2 + (z_0 - c_b0)^4
        rows = torch.arange(3) if rows is None else rows
        evaluated.append(len(rows))
        w = torch.arange(1, 6, dtype=z.dtype)
        r = z - centres[rows]
        f = scales[rows] * ((w * r ** 2).sum(1) + r[:, 0] ** 4)
        g = scales[rows, None] * (2 * w * r + torch.nn.functional.pad(4 * r[:, :1] ** 3, (0, 4)))
        return f, g, r

    start = BFGSMemory() if memory == "bfgs" else LBFGSMemory()
    z, f, aux, iterations, evaluations, kept = batched_quasi_newton(
        fg, torch.zeros(3, 5), start, max_iter=200, tol=1e-10)
    assert torch.allclose(z, centres, atol=2e-3)
    assert torch.allclose(aux, z - centres)
    assert evaluations == len(evaluated) >= iterations + 1
    # problems that have stopped are not evaluated again
    assert min(evaluated) < 3
    assert kept is start and not kept.empty
    # a warm start of point and curvature: the problem is solved again at once
    again = batched_quasi_newton(fg, z, kept, max_iter=200, tol=1e-10)
    assert again[3] <= 2


class CircleGenerator(torch.nn.Module):
    """G(z) = cos(z) p + sin(z) q (d = 1, p and q orthonormal 4 x 4 images): periodic, so
    ||G(z) - v||^2 + c z^2 has a local minimum near each theta + 2 pi k for v = G(theta).
    Records the batch size (and first input) of every forward pass."""

    latent_dim = 1
    image_shape = (4, 4)

    def __init__(self):
        super().__init__()
        pq = torch.linalg.qr(torch.randn(16, 2, generator=torch.Generator().manual_seed(0)))[0]
        self.register_buffer("pq", pq.T.contiguous())
        self.batch_sizes, self.inputs = [], []
        self.eval()  # as a loaded model: the solver runs it as is (a training-mode one is copied)

    def forward(self, z):
        self.batch_sizes.append(z.shape[0])
        self.inputs.append(z.detach().clone())
        return (torch.cos(z) * self.pq[0] + torch.sin(z) * self.pq[1]).reshape(-1, 1, 4, 4)


@pytest.mark.parametrize("optimiser", ["bfgs", "lbfgs", "adam"])
def test_restarts_go_through_the_generator_as_one_batch_and_the_best_is_kept(optimiser):
    K, theta, c = 4, 1.0, 1e-3
    G = CircleGenerator()
    v = G(torch.tensor([[theta]])).detach()
    kw = dict(optimiser=optimiser, max_iter=400 if optimiser == "adam" else 100, tol=1e-10,
              lr=0.05 if optimiser == "adam" else None)
    solver = LatentSolver(G, restarts=K, seed=0, **kw)
    bad = theta + 4 * torch.pi  # the warm start sits in the basin of a worse local minimum
    solver.set_warm_latent(torch.tensor([[bad]]))
    G.batch_sizes.clear(), G.inputs.clear()  # forget the shape probe
    sol = solver.solve(SquaredMisfit(1.0), v, c)

    # one batch of K + 1 rows (warm start first, then the restarts), never row by row
    assert G.batch_sizes[0] == K + 1
    assert max(G.batch_sizes) == K + 1 and G.batch_sizes.count(K + 1) >= 2
    if optimiser == "adam":
        assert set(G.batch_sizes) == {K + 1}
    assert len(G.batch_sizes) == solver.stats.generator_calls
    assert sum(G.batch_sizes) == solver.stats.generator_images
    starts = G.inputs[0]
    assert starts[0, 0].item() == pytest.approx(bad)

    # each start solved alone: a restart is strictly better than the warm start, and kept
    alone = [LatentSolver(CircleGenerator(), warm_start=False, **kw)
             .solve(SquaredMisfit(1.0), v, c, z0=start[None]) for start in starts]
    values = torch.cat([a.objective for a in alone])
    assert values.argmin() > 0 and values.min() < values[0] - 0.1
    assert sol.objective.item() == pytest.approx(values.min().item(), rel=1e-3, abs=1e-6)
    assert sol.z.item() == pytest.approx(theta / (1 + c), abs=1e-2)  # the global minimum
    assert torch.allclose(sol.image, G(sol.z).detach(), atol=1e-6)
    assert torch.equal(solver.warm_latent(), sol.z)


def test_restarts_keep_the_best_start_of_each_target_separately():
    """Two targets in one batch: the warm start is best for one, a restart for the other."""
    K, c = 3, 1e-3
    thetas = torch.tensor([[-2.0], [1.0]])
    G = CircleGenerator()
    v = G(thetas).detach()
    solver = LatentSolver(G, restarts=K, seed=0, tol=1e-10)
    warm = torch.tensor([[-2.0], [1.0 + 4 * torch.pi]])  # good for target 0, bad for target 1
    solver.set_warm_latent(warm)
    G.batch_sizes.clear()
    sol = solver.solve(SquaredMisfit(1.0), v, c)
    assert G.batch_sizes[0] == 2 * (K + 1)
    assert torch.allclose(sol.z, thetas / (1 + c), atol=1e-2)
    expected = (v - G(sol.z)).flatten(1).square().sum(1) + c * sol.z.square().sum(1)
    assert torch.allclose(sol.objective, expected.detach(), rtol=1e-4, atol=1e-7)


def test_a_warm_start_at_the_last_evaluation_reuses_its_generator_pass():
    """The next solve of a key starts where the last one's final evaluation was: the forward
    pass there is reused (only the misfit changes), and the answer is the same as without."""
    from generators import ConvGenerator
    G = ConvGenerator()
    v1 = G(torch.full((1, G.latent_dim), 0.3)).detach()
    v2 = v1 + 0.01 * torch.randn(v1.shape, generator=torch.Generator().manual_seed(0))
    results = []
    for reuse in (True, False):
        solver = LatentSolver(G, tol=1e-8, max_iter=100)
        solver.solve(SquaredMisfit(), v1, 0.1)
        calls = solver.stats.generator_calls
        if not reuse:
            solver._graph.clear()
        second = solver.solve(SquaredMisfit(), v2, 0.1)
        results.append((second, solver.stats.generator_calls - calls))
    (kept, calls_kept), (fresh, calls_fresh) = results
    assert calls_kept == calls_fresh - 1
    torch.testing.assert_close(kept.z, fresh.z)
    torch.testing.assert_close(kept.objective, fresh.objective)


def test_auto_threads_one_for_small_batches_torch_setting_for_large():
    """threads="auto": one thread below AUTO_THREADS_PIXELS output pixels, torch's own count
    from there on; the caller's setting is restored after the block; bad values are refused."""
    from cil_genreg.latent.generator import AUTO_THREADS_PIXELS
    G = LinearGenerator()  # 8 x 8 images
    adapter = GeneratorAdapter(G)
    small, large = 1, AUTO_THREADS_PIXELS // 64
    assert adapter.thread_count(small) == 1 and adapter.thread_count(large) is None
    assert adapter.thread_count(large - 1) == 1
    assert GeneratorAdapter(G, threads=3).thread_count(large) == 3
    assert GeneratorAdapter(G, threads=None).thread_count(small) is None
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with adapter.threads(small):
            assert torch.get_num_threads() == 1
        with adapter.threads(large):
            assert torch.get_num_threads() == 2
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    for bad in ("many", 0, -2):
        with pytest.raises(ValueError, match="threads must be"):
            GeneratorAdapter(G, threads=bad)
