r"""The range method on held-out MNIST digits: ours vs CSGM as deepinv runs it.

All minimise the same objective :math:`\|A\,G(z) - y\|^2 + \alpha\|z\|^2` (image :math:`x = G(z)`):

* **ours, latent**: ``FISTA(initial=0, f=LatentLeastSquares(A, G, y), g=alpha * L2NormSquared())``
  on :math:`z` (step :math:`1/L`, ``L`` the function's own estimate, computed before timing and
  reported separately);
* **ours, range**: ``FISTA(initial=0, f=LeastSquares(A, y), g=alpha * RangeGenerativeRegulariser(G))``
  on :math:`x`;
* ``latent-fbp`` / ``range-fbp``: the same two, started where a user starts them: the latent
  FISTA from the encoder's mean of the FBP image, the image FISTA from the FBP image; the FBP
  and the encoding are inside the timed region (the first trace point includes them);
* **reference, CSGM** (Bora et al. 2017, as ``deepinv.models.CSGMGenerator`` runs it): Adam on
  :math:`z \sim N(0, I)`, lr 1e-2, at most 2,500 steps, stop when the relative change of the
  objective is below 1e-4; the projector enters the torch graph through
  ``cil_genreg.cil_operator_to_torch`` (forward = ``A.direct``, backward = ``A.adjoint``).

Per digit: final PSNRs, time for ours to first reach CSGM's final PSNR, and
``csgm_time / our_time`` (csgm_time: until its stopping rule fires; the ``oracle`` ratio credits
CSGM with the moment it first reached its final PSNR).

    python benchmarks/bench_range.py
    python benchmarks/bench_range.py --digits 1 --quick
    python benchmarks/bench_range.py --methods latent-fbp,range-fbp
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def csgm_reference(G, A, y, x_true, alpha, max_steps=2500, lr=1e-2, tol=1e-4, seed=0):
    from cil_genreg import cil_operator_to_torch
    A_t = cil_operator_to_torch(A)
    y_t = torch.from_numpy(y.as_array().copy())
    x_true_np = x_true.as_array()
    z = torch.randn(1, G.latent_dim, generator=torch.Generator().manual_seed(seed))
    z.requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    params = [p for p in G.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    times, psnrs, objectives = [], [], []
    previous = None
    monitor = 0.0
    t0 = time.perf_counter()
    try:
        for _ in range(max_steps):
            opt.zero_grad()
            image = G(z)
            loss = (A_t(image[0, 0]) - y_t).square().sum() + alpha * z.square().sum()
            loss.backward()
            opt.step()
            value = loss.item()
            tm = time.perf_counter()  # monitoring, not timed: PSNR of the image just made
            psnrs.append(common.psnr(image[0, 0].detach().numpy(), x_true_np))
            objectives.append(value)
            monitor += time.perf_counter() - tm
            times.append(time.perf_counter() - t0 - monitor)
            if previous is not None and abs(previous - value) < tol * abs(value):
                break
            previous = value
        # the image of the final latent (what CSGM returns)
        with torch.no_grad():
            final = G(z)[0, 0]
            final_objective = float((A_t(final) - y_t).square().sum() + alpha * z.square().sum())
        times.append(time.perf_counter() - t0 - monitor)
        psnrs.append(common.psnr(final.numpy(), x_true_np))
        objectives.append(final_objective)
    finally:
        for p in params:
            p.requires_grad_(True)
    return {"times": times, "psnrs": psnrs, "objectives": objectives, "steps": len(times) - 1}


class LatentTrace(common.TraceCallback):
    """PSNR of G(z) for an algorithm on the latent (the generator pass is not timed)."""

    def __init__(self, x_true, f):
        super().__init__(x_true)
        self.f = f
        self._image = None

    def __call__(self, algorithm):
        t = time.perf_counter()
        self.times.append(t - self._t0 - self._overhead)
        self._image = self.f.image(algorithm.solution, out=self._image)
        self.psnrs.append(common.psnr(self._image, self.x_true))
        self._overhead += time.perf_counter() - t


def ours_latent(G, A, y, x_true, alpha, iterations, start="zeros"):
    from cil.optimisation.algorithms import FISTA
    from cil.optimisation.functions import L2NormSquared
    from cil_genreg import LatentLeastSquares
    f = LatentLeastSquares(A, G, y)
    t = time.perf_counter()
    L = f.L  # estimated once (power iterations through G and A), reported apart
    t_L = time.perf_counter() - t
    g = alpha * L2NormSquared()
    trace = LatentTrace(x_true, f)
    trace.start()
    z0 = (f.generator_operator.encode(common.fbp_start(A, y)) if start == "fbp" else
          f.latent_geometry.allocate(0))
    algo = FISTA(initial=z0, f=f, g=g, update_objective_interval=0)
    algo.run(iterations, callbacks=[trace], verbose=0)
    z = algo.solution
    objective = f(z) + g(z)
    return {"times": trace.times, "psnrs": trace.psnrs, "objective": float(objective),
            "L": float(L), "L_estimate_seconds": t_L}


def ours_lbfgs(G, A, y, x_true, alpha, iterations, restarts=0, tolerance=1e-6):
    """``LatentLBFGS`` on ``LatentLeastSquares + alpha * L2NormSquared`` from z = 0."""
    from cil.optimisation.functions import L2NormSquared
    from cil_genreg import LatentLeastSquares
    from cil_genreg.algorithms import LatentLBFGS
    f = LatentLeastSquares(A, G, y)
    objective = f + alpha * L2NormSquared()
    trace = LatentTrace(x_true, f)
    trace.start()
    algo = LatentLBFGS(initial=f.latent_geometry.allocate(0), f=objective, tolerance=tolerance,
                       restarts=restarts, update_objective_interval=0)
    algo.run(iterations, callbacks=[trace], verbose=0)
    return {"times": trace.times, "psnrs": trace.psnrs,
            "objective": float(objective(algo.solution)), "iterations": len(trace.times),
            "evaluations": algo.evaluations, "stop_reason": algo.stop_reason}


def ours_range(G, A, y, x_true, alpha, iterations, norm_A2, inner_max_iter=50, start="zeros"):
    from cil.optimisation.algorithms import FISTA
    from cil.optimisation.functions import LeastSquares
    from cil_genreg import RangeGenerativeRegulariser
    f = LeastSquares(A, y)
    f.L = 2.0 * norm_A2
    R = RangeGenerativeRegulariser(G, max_iteration=inner_max_iter)
    trace = common.TraceCallback(x_true)
    trace.start()
    x0 = common.fbp_start(A, y) if start == "fbp" else A.domain_geometry().allocate(0)
    algo = FISTA(initial=x0, f=f, g=alpha * R, update_objective_interval=0)
    algo.run(iterations, callbacks=[trace], verbose=0)
    x = algo.solution
    z = R.latent
    objective = f(x) + alpha * float(np.sum(z ** 2))
    return {"times": trace.times, "psnrs": trace.psnrs, "objective": float(objective),
            "stats": R.stats.as_dict()}


def run(args):
    info, G, model_desc, images, data_desc = common.start(args)
    print(f"model: {model_desc}; data: {data_desc}; {len(images)} digits; {args.angles} angles, "
          f"noise {args.noise} x sinogram max; alpha={args.alpha}")
    methods = [m for m in args.methods.split(",") if m]
    rows = []
    for i, image in enumerate(images):
        ig, A, x_true, y = common.ct_problem(image, args.angles, args.noise, seed=args.seed + i)
        norm_A2 = A.norm() ** 2
        ref = csgm_reference(G, A, y, x_true, args.alpha, args.csgm_steps, args.csgm_lr,
                             args.csgm_tol, seed=args.seed + 1000 + i)
        ref_psnr, ref_time = ref["psnrs"][-1], ref["times"][-1]
        target = ref_psnr - args.psnr_tol
        ref_oracle = common.time_to_reach(ref["times"], ref["psnrs"], target)
        row = {"digit": i, "csgm": {"final_psnr": ref_psnr, "time": ref_time,
                                    "oracle_time": ref_oracle, "steps": ref["steps"],
                                    "first_objective": ref["objectives"][0],
                                    "final_objective": ref["objectives"][-1]}}
        line = (f"digit {i}: CSGM {ref_psnr:.2f} dB in {ref_time:.2f} s, {ref['steps']} steps "
                f"(objective {ref['objectives'][-1]:.4g})")
        for m in methods:
            kind, _, start = m.partition("-")
            if kind == "lbfgs":
                o = ours_lbfgs(G, A, y, x_true, args.alpha, args.iterations,
                               restarts=int(start or 0))
            elif kind == "latent":
                o = ours_latent(G, A, y, x_true, args.alpha, args.iterations,
                                start=start or "zeros")
            else:
                o = ours_range(G, A, y, x_true, args.alpha, args.iterations, norm_A2,
                               args.inner_max_iter, start=start or "zeros")
            t_reach = common.time_to_reach(o["times"], o["psnrs"], target)
            o.update({"final_psnr": o["psnrs"][-1], "best_psnr": max(o["psnrs"]),
                      "final_objective": o["objective"],
                      "time": o["times"][-1], "time_to_reference_psnr": t_reach,
                      "ratio": common.ratio(ref_time, t_reach),
                      "oracle_ratio": common.ratio(ref_oracle, t_reach)})
            if i > 0:
                o.pop("times"), o.pop("psnrs")
            row[m] = o
            line += (f" | {m} {o['final_psnr']:.2f} dB in {o['time']:.2f} s (objective "
                     f"{o['objective']:.4g}), reaches CSGM in "
                     f"{common.fmt(t_reach, '.3f')} s -> x{common.fmt(o['ratio'], '.1f')}")
        rows.append(row)
        print(line, flush=True)

    summary = {"csgm_final_psnr_mean": float(np.mean([r["csgm"]["final_psnr"] for r in rows])),
               "csgm_time_mean": float(np.mean([r["csgm"]["time"] for r in rows]))}
    print("\nsummary (ratio = CSGM time / our time to CSGM's final PSNR; a miss counts as 0 "
          "in the median and at the time ours stopped in the all-digits geomean):")
    print(f"  CSGM: mean final PSNR {summary['csgm_final_psnr_mean']:.2f} dB, mean time "
          f"{summary['csgm_time_mean']:.2f} s")
    for m in methods:
        summary[m] = common.ratio_summary(rows, m, "csgm")
        common.print_ratio_summary(f"ours[{m}]", summary[m], target=10)
    info["loadavg_after"] = common.loadavg()
    result = {"benchmark": "bench_range", "machine": info, "model": model_desc,
              "data": data_desc, "config": vars(args), "summary": summary, "digits": rows}
    common.write_json(args.out, result)
    return result


def parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--digits", type=int, default=10)
    p.add_argument("--angles", type=int, default=10)
    p.add_argument("--noise", type=float, default=0.05, help="x sinogram max")
    p.add_argument("--alpha", type=float, default=1.0, help="weight of ||z||^2")
    p.add_argument("--iterations", type=int, default=100, help="our FISTA iterations")
    p.add_argument("--inner-max-iter", type=int, default=50)
    p.add_argument("--methods", default="lbfgs,lbfgs-3,latent,range,range-fbp",
                   help="ours to run: lbfgs (LatentLBFGS on LatentLeastSquares from z = 0; "
                        "lbfgs-K: with K batched random restarts), latent (LatentLeastSquares "
                        "+ FISTA from z = 0), range "
                        "(RangeGenerativeRegulariser from x = 0), latent-fbp / range-fbp (the "
                        "same from the FBP image, FBP and encoding timed)")
    p.add_argument("--csgm-steps", type=int, default=2500)
    p.add_argument("--csgm-lr", type=float, default=1e-2)
    p.add_argument("--csgm-tol", type=float, default=1e-4)
    p.add_argument("--psnr-tol", type=float, default=0.05,
                   help="'reaching' the reference's final PSNR means coming within this many dB "
                        "(both methods converge to the same point; without it the last 0.01 dB "
                        "decides)")
    p.add_argument("--quick", action="store_true", help="tiny configuration (smoke test)")
    common.common_arguments(p, "bench_range")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    if args.quick:
        args.iterations, args.csgm_steps, args.inner_max_iter = 5, 20, 10
    return run(args)


if __name__ == "__main__":
    main()
