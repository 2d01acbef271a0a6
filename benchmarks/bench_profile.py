r"""Where the time of one soft reconstruction goes: generator, projector, everything else.

``FISTA(f=LeastSquares(A, y), g=lam * SoftGenerativeRegulariser(G, mu))``, 100 iterations, one
held-out digit. The generator module is wrapped so that its forward passes are timed (and its
encoder, when it has one); ``torch.autograd.grad`` is wrapped for the duration so that the
backward passes through the generator are timed; the projector's ``direct`` and ``adjoint`` are
wrapped on the operator instance. "Everything else" is the wall time minus these.

A second run under cProfile lists the top Python hot spots of "everything else" (by tottime,
leaving out the generator's and projector's own frames: torch.nn, torch.autograd, astra,
cil.plugins.astra, and torch's compiled kernels). cProfile slows Python down, so the shares
come from the first (uninstrumented except for the timers) run.

    python benchmarks/bench_profile.py
    python benchmarks/bench_profile.py --quick
    python benchmarks/bench_profile.py --ct --threads 0   # a 128² CT slice, all cores

``--ct``: a held-out 128² chest-CT slice (``datasets.ct_slices("chest", "test")``, index
``--digit``) with the shipped ``ct-vae-128``, 30 angles, 2 % noise, λ = 1000, μ = 1e-3, started
from the FBP image: the "one 128² soft reconstruction" of ``demos/ct_tomography.py``.
"""
import argparse
import contextlib
import cProfile
import io
import pstats
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


class Timers:
    def __init__(self):
        self.seconds = defaultdict(float)
        self.calls = defaultdict(int)

    @contextlib.contextmanager
    def __call__(self, name):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - t
            self.calls[name] += 1


class TimedGenerator(torch.nn.Module):
    """The generator with its forward (and encoder) timed."""

    def __init__(self, module, timers):
        super().__init__()
        self.inner = module
        self.timers = timers
        self.latent_dim = module.latent_dim
        self.image_shape = getattr(module, "image_shape", None)
        if hasattr(module, "encode"):
            self.encode = self._encode

    def _encode(self, x):
        with self.timers("encoder"):
            return self.inner.encode(x)

    def forward(self, z):
        with self.timers("generator forward"):
            return self.inner(z)


@contextlib.contextmanager
def timed_autograd(timers):
    original = torch.autograd.grad

    def grad(*args, **kwargs):
        with timers("generator backward"):
            return original(*args, **kwargs)

    torch.autograd.grad = grad
    try:
        yield
    finally:
        torch.autograd.grad = original


def time_operator(A, timers):
    direct, adjoint = A.direct, A.adjoint

    def timed_direct(*args, **kwargs):
        with timers("projector direct"):
            return direct(*args, **kwargs)

    def timed_adjoint(*args, **kwargs):
        with timers("projector adjoint"):
            return adjoint(*args, **kwargs)

    A.direct, A.adjoint = timed_direct, timed_adjoint
    return A


def reconstruction(G, A, y, lam, mu, iterations, norm_A2, inner_max_iter, x0=None):
    from cil.optimisation.algorithms import FISTA
    from cil.optimisation.functions import LeastSquares
    from cil_genreg import SoftGenerativeRegulariser
    f = LeastSquares(A, y)
    f.L = 2.0 * norm_A2
    R = SoftGenerativeRegulariser(G, mu=mu, max_iteration=inner_max_iter)
    algo = FISTA(initial=A.domain_geometry().allocate(0) if x0 is None else x0, f=f, g=lam * R,
                 update_objective_interval=0)
    return algo, R, f


EXCLUDE_FILES = ("torch/nn/", "torch/autograd/", "torch/_tensor.py", "astra/",
                 "cil/plugins/astra/", "bench_profile.py")
EXCLUDE_BUILTINS = ("conv", "linear", "addmm", "softplus", "sigmoid", "run_backward",
                    "_engine_run_backward", "astra", "leaky_relu", "_C._nn", "grad")


def _excluded(func):
    filename, _, name = func
    if any(part in filename.replace("\\", "/") for part in EXCLUDE_FILES):
        return True
    if filename == "~":
        return any(k in name for k in EXCLUDE_BUILTINS)
    return False


def hot_spots(profile, top=15):
    stats = pstats.Stats(profile)
    rows = []
    for func, (cc, nc, tt, ct, callers) in stats.stats.items():
        if not _excluded(func):
            rows.append((tt, ct, nc, func))
    rows.sort(reverse=True)
    return [{"tottime": tt, "cumtime": ct, "calls": nc,
             "function": f"{Path(func[0]).name}:{func[1]}({func[2]})"
             if func[0] != "~" else func[2]} for tt, ct, nc, func in rows[:top]]


def load_images(args, G):
    """The digits, or with ``--ct`` the held-out chest-CT slices at the model's size."""
    if not args.ct:
        return common.load_digits(args.digit + 1)
    from cil_genreg import datasets
    images = datasets.ct_slices("chest", "test", size=G.image_shape[0])
    return images, f"cil_genreg.datasets.ct_slices('chest', 'test', size={G.image_shape[0]})"


CT_DEFAULTS = {"model": "ct-vae-128", "angles": 30, "noise": 0.02, "lam": 1000.0, "mu": 1e-3}
DIGIT_DEFAULTS = {"model": "mnist-vae", "angles": 10, "noise": 0.05, "lam": 30.0, "mu": 0.01}


def run(args):
    common.apply_threads(args)
    info = common.machine_info()
    common.print_machine(info)
    G, model_desc = common.load_generator(args.model)
    images, data_desc = load_images(args, G)
    ig, A, x_true, y = common.ct_problem(images[args.digit], args.angles, args.noise,
                                         seed=args.seed)
    x0 = common.fbp_start(A, y) if args.ct else None
    norm_A2 = A.norm() ** 2
    print(f"model: {model_desc}; data: {data_desc} (image {args.digit}); {args.iterations} "
          f"FISTA iterations, lam={args.lam}, mu={args.mu}")

    # 1. timers: --repeats reconstructions, each with a fresh regulariser and algorithm (the
    # first one in a fresh process, "cold"); the table is that of the median share
    timers = Timers()
    time_operator(A, timers)
    TG = TimedGenerator(G, timers).eval()  # eval: the package uses it as it is (no copy)
    runs = []
    for _ in range(args.repeats):
        algo, R, f = reconstruction(TG, A, y, args.lam, args.mu, args.iterations, norm_A2,
                                    args.inner_max_iter, x0)
        timers.seconds.clear(), timers.calls.clear()  # construction probes are not the run
        with timed_autograd(timers):
            t = time.perf_counter()
            algo.run(args.iterations, verbose=0)
            wall = time.perf_counter() - t
        # the run's own figures, before the objective below evaluates R (a latent solve) again
        runs.append({"wall": wall, "seconds": dict(timers.seconds), "calls": dict(timers.calls),
                     "share_inside": sum(timers.seconds.values()) / wall, "algo": algo, "R": R,
                     "f": f})
    shares = [r["share_inside"] for r in runs]
    median_run = sorted(runs, key=lambda r: r["share_inside"])[(len(runs) - 1) // 2]
    wall, seconds, calls = median_run["wall"], median_run["seconds"], median_run["calls"]
    algo, R, f = median_run["algo"], median_run["R"], median_run["f"]
    solver_stats = R.stats.as_dict()
    final_psnr = common.psnr(algo.solution, x_true)
    objective = f(algo.solution) + args.lam * R(algo.solution)
    first_objective = f(A.domain_geometry().allocate(0))  # at x0 = 0, R(0) >= 0 not added
    groups = {"generator": ["generator forward", "generator backward", "encoder"],
              "projector": ["projector direct", "projector adjoint"]}
    table = []
    inside = 0.0
    for group, names in groups.items():
        for n in names:
            s, c = seconds.get(n, 0.0), calls.get(n, 0)
            table.append({"part": n, "group": group, "seconds": s, "calls": c,
                          "ms_per_call": 1e3 * s / c if c else None,
                          "ms_per_fista_iteration": 1e3 * s / args.iterations,
                          "share": s / wall})
            inside += s
    other = wall - inside
    table.append({"part": "everything else", "group": "other", "seconds": other, "calls": None,
                  "ms_per_call": None, "ms_per_fista_iteration": 1e3 * other / args.iterations,
                  "share": other / wall})
    gen = sum(r["seconds"] for r in table if r["group"] == "generator")
    proj = sum(r["seconds"] for r in table if r["group"] == "projector")
    print(f"\nwall {wall:.3f} s for {args.iterations} iterations "
          f"({1e3 * wall / args.iterations:.2f} ms per FISTA iteration); final PSNR "
          f"{final_psnr:.2f} dB; latent solver: {solver_stats}")
    print(f"{'part':<22}{'seconds':>9}{'calls':>8}{'ms/call':>9}{'ms/iter':>9}{'share':>8}")
    for r in table:
        print(f"{r['part']:<22}{r['seconds']:>9.3f}{str(r['calls'] or ''):>8}"
              f"{common.fmt(r['ms_per_call'], '.3f'):>9}{r['ms_per_fista_iteration']:>9.3f}"
              f"{100 * r['share']:>7.1f}%")
    share_inside = (gen + proj) / wall
    print(f"generator {100 * gen / wall:.1f}% + projector {100 * proj / wall:.1f}% = "
          f"{100 * share_inside:.1f}% of wall time (the median of {len(runs)} runs: "
          f"{', '.join(f'{100 * v:.1f}%' for v in shares)}; the first is cold)  "
          f"[target >= 80%: {'met' if share_inside >= 0.8 else 'NOT met'}]")

    # 2. cProfile of the same reconstruction (fresh regulariser), hot spots outside G and A
    G2 = common.load_generator(args.model)[0]
    ig, A2, x_true, y = common.ct_problem(images[args.digit], args.angles, args.noise,
                                          seed=args.seed)
    algo2, R2, _ = reconstruction(G2, A2, y, args.lam, args.mu, args.iterations, norm_A2,
                                  args.inner_max_iter, x0)
    prof = cProfile.Profile()
    prof.enable()
    algo2.run(args.iterations, verbose=0)
    prof.disable()
    spots = hot_spots(prof, args.top)
    print(f"\ntop {args.top} Python hot spots outside the generator and projector "
          "(cProfile, by tottime; cProfile inflates Python time):")
    print(f"{'tottime':>9}{'cumtime':>9}{'calls':>8}  function")
    for s in spots:
        print(f"{s['tottime']:>9.3f}{s['cumtime']:>9.3f}{s['calls']:>8}  {s['function']}")
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(25)
    info["loadavg_after"] = common.loadavg()
    result = {"benchmark": "bench_profile", "machine": info, "model": model_desc,
              "data": data_desc, "config": vars(args), "wall_seconds": wall,
              "final_psnr": final_psnr, "final_objective": float(objective),
              "first_objective": float(first_objective), "solver_stats": solver_stats,
              "table": table, "share_generator": gen / wall, "share_projector": proj / wall,
              "share_inside": share_inside, "share_inside_runs": shares,
              "walls": [r["wall"] for r in runs], "hot_spots": spots,
              "cprofile_cumulative": out.getvalue()}
    common.write_json(args.out, result)
    return result


def parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--digit", type=int, default=0, help="the digit's (or CT slice's) index")
    p.add_argument("--ct", action="store_true",
                   help="a held-out 128² chest-CT slice with ct-vae-128, from FBP (see above)")
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--angles", type=int, default=None, help="default 10 (digits), 30 (--ct)")
    p.add_argument("--noise", type=float, default=None, help="default 0.05 (digits), 0.02 (--ct)")
    p.add_argument("--lam", type=float, default=None, help="default 30 (digits), 1000 (--ct)")
    p.add_argument("--mu", type=float, default=None, help="default 0.01 (digits), 1e-3 (--ct)")
    p.add_argument("--inner-max-iter", type=int, default=50)
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--repeats", type=int, default=5,
                   help="timed reconstructions (fresh regulariser each; the first is cold): "
                        "the figures are those of the median share")
    p.add_argument("--quick", action="store_true", help="tiny configuration (smoke test)")
    common.common_arguments(p, "bench_profile")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    defaults = CT_DEFAULTS if args.ct else DIGIT_DEFAULTS
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.ct and args.model == DIGIT_DEFAULTS["model"]:  # common's default: the CT model
        args.model = CT_DEFAULTS["model"]
    if args.quick:
        args.iterations, args.inner_max_iter, args.repeats = 5, 10, 2
    return run(args)


if __name__ == "__main__":
    main()
