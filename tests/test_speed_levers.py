"""The speed levers of a latent step: the encoder's amortised start (``latent_start``), inexact
proximal maps on a schedule (``inner_schedule``) and reduced precision (``precision``)."""
import numpy as np
import pytest
import torch
from cil.framework import ImageGeometry

from cil_genreg import SoftGenerativeRegulariser
from cil_genreg.latent import GeneratorAdapter, InnerSchedule, LatentSolver, SquaredMisfit
from cil_genreg.utilities.validation import InputError
from generators import ConvGenerator, LinearGenerator


class InvertibleLinear(LinearGenerator):
    """G(z) = W z with orthonormal W, and its exact inverse on the range E(x) = W^T x."""

    def __init__(self, latent_dim=4, image_shape=(8, 8)):
        super().__init__(latent_dim, image_shape)
        with torch.no_grad():
            q, _ = torch.linalg.qr(self.weight)
            self.weight.copy_(q)
            self.bias.zero_()

    def encode(self, x):
        return x.reshape(x.shape[0], -1) @ self.weight, None


def image(seed, shape=(8, 8)):
    x = ImageGeometry(voxel_num_x=shape[1], voxel_num_y=shape[0]).allocate(0)
    x.fill(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))
    return x


def prox_iterations(R, seeds, tau=0.5):
    counts = []
    for s in seeds:
        before = R.stats.iterations
        R.proximal(image(s), tau)
        counts.append(R.stats.iterations - before)
    return counts


@pytest.mark.parametrize("start", ["encoder", "warm+encoder"])
def test_an_exact_encoder_start_needs_at_most_two_inner_iterations(start):
    # mu = 0: the prox's latent is W^T v, which the encoder gives exactly
    options = dict(mu=0.0, tolerance=1e-10, adaptive_tolerance=False, max_iteration=50)
    warm = prox_iterations(SoftGenerativeRegulariser(InvertibleLinear(), **options), range(5))
    R = SoftGenerativeRegulariser(InvertibleLinear(), latent_start=start, **options)
    amortised = prox_iterations(R, range(5))
    assert max(amortised) <= 2 and sum(amortised) < sum(warm[1:]), (amortised, warm)
    if start == "warm+encoder":
        assert R.stats.encoder_starts >= 4  # E(v) beats the previous target's latent


def test_warm_and_encoder_keeps_the_better_start():
    G = ConvGenerator()
    solver = LatentSolver(G, tol=1e-8, max_iter=1)
    target = G(torch.zeros(1, 6)).detach()
    solver.set_warm_latent(torch.zeros(1, 6))
    sol = solver.solve(SquaredMisfit(), target, 0.0, candidates=torch.full((1, 6), 3.0))
    assert solver.stats.encoder_starts == 0 and sol.objective.item() < 1e-6
    sol = solver.solve(SquaredMisfit(), G(torch.ones(1, 6)).detach(), 0.0,
                       candidates=torch.ones(1, 6))
    assert solver.stats.encoder_starts == 1 and sol.objective.item() < 1e-6


def test_latent_start_is_validated():
    with pytest.raises(ValueError, match="latent_start must be one of"):
        SoftGenerativeRegulariser(InvertibleLinear(), latent_start="encoders")
    with pytest.raises(ValueError, match="has no encode method"):
        SoftGenerativeRegulariser(LinearGenerator(), latent_start="encoder")


def test_inner_schedule_values():
    assert [InnerSchedule(1, 4, 3)(k) for k in range(6)] == [1, 2, 3, 4, 4, 4]
    assert [InnerSchedule(1, 8, 3, "geometric")(k) for k in range(5)] == [1, 2, 4, 8, 8]
    for bad in [(0, 3), (2, 3, 0), (1, 2.5)]:
        with pytest.raises(ValueError, match="positive integer"):
            InnerSchedule(*bad)
    with pytest.raises(ValueError, match="kind"):
        InnerSchedule(1, 2, 3, "cubic")
    with pytest.raises(TypeError, match="inner_schedule"):
        SoftGenerativeRegulariser(LinearGenerator(), inner_schedule=3)


def test_inner_schedule_caps_each_proximal_map_and_restarts_with_reset():
    options = dict(mu=0.01, tolerance=1e-12, adaptive_tolerance=False, warm_start=False,
                   max_iteration=50)
    free = prox_iterations(SoftGenerativeRegulariser(LinearGenerator(), **options), [0])
    assert free[0] > 4  # each solve needs more than the schedule allows
    R = SoftGenerativeRegulariser(LinearGenerator(), inner_schedule=(1, 4, 3), **options)
    assert prox_iterations(R, range(5)) == [1, 2, 3, 4, 4]
    R.reset()
    assert prox_iterations(R, range(2)) == [1, 2]
    R(image(0))  # a value is not a proximal map: uncapped, not counted
    assert prox_iterations(R, [1]) == [3]
    scheduled = SoftGenerativeRegulariser(LinearGenerator(), inner_schedule=lambda k: 2,
                                          **options)
    assert prox_iterations(scheduled, range(2)) == [2, 2]


def test_bfloat16_generator_is_close_to_float32():
    torch.manual_seed(0)
    from cil_genreg import models
    G = models.build("vae", latent_dim=8, image_shape=(28, 28)).eval()
    z = torch.randn(4, 8)
    exact = GeneratorAdapter(G)(z)
    adapter = GeneratorAdapter(G, precision="bfloat16")
    low = adapter(z)
    assert low.dtype == torch.float32
    assert ((low - exact).norm() / exact.norm()).item() < 3e-2
    # gradients flow through the autocast pass (the solver's backward)
    zz = z.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(adapter(zz).square().sum(), zz)
    (g32,) = torch.autograd.grad(GeneratorAdapter(G)(zz).square().sum(), zz)
    assert ((g - g32).norm() / g32.norm()).item() < 5e-2


def test_precision_is_validated():
    with pytest.raises(InputError, match="precision must be one of"):
        GeneratorAdapter(LinearGenerator(), precision="half")
    with pytest.raises(InputError, match="needs a CUDA device.*bfloat16"):
        SoftGenerativeRegulariser(LinearGenerator(), precision="float16")


def test_bfloat16_prox_is_close_to_float32():
    G = ConvGenerator()
    x = ImageGeometry(voxel_num_x=16, voxel_num_y=16).allocate(0)
    x.fill(G(torch.full((1, 6), 0.3)).detach().numpy()[0, 0])
    out = [SoftGenerativeRegulariser(G, precision=p).proximal(x, 0.5).as_array()
           for p in ("float32", "bfloat16")]
    assert np.linalg.norm(out[1] - out[0]) / np.linalg.norm(out[0]) < 2e-2


def test_demos_refuse_float16_on_the_cpu_with_what_to_do(tmp_path, capsys):
    import argparse
    from cil_genreg.cli import main
    from cil_genreg.commands import options
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["demo", "--precision", "float16", "--out", str(tmp_path)]) == 1
    assert "bfloat16" in capsys.readouterr().err
    args = argparse.Namespace(backend="astra", device="cpu", precision="float16")
    assert options.backend_refusal(args) == 1 and "bfloat16" in capsys.readouterr().err
    args.precision = "bfloat16"
    assert options.backend_refusal(args) is None
    assert options.precision_options(args) == {"precision": "bfloat16"}
    assert not list(tmp_path.iterdir())
