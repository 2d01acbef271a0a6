#!/usr/bin/env python
"""Independent vs coupled slices: a 3D parallel-beam volume whose slices change smoothly along
z (``datasets.shape_volumes``: tilted balls and square frustums, every slice a *shapes*
image), reconstructed with the 2D ``shapes-vae`` prior,

* **independent**: the soft regulariser slice by slice (``latent_coupling=0``), FISTA;
* **coupled**: the same with the latent chain ``latent_coupling=λ_z`` (neighbouring slices'
  latents pulled together in one joint latent solve), FISTA, over a grid of λ_z;
* **z-TV**: the independent soft regulariser plus CIL's TV along z only, PDHG
  (``cil_genreg.algorithms.z_tv.z_tv_pdhg``), over a grid of α_z;

beside FBP and 2D TV per slice (the start of the generative methods). The projector is ASTRA's
2D CPU projector slice by slice (``SliceWiseOperator``; ASTRA's 3D projectors need CUDA).
Table (CSV, JSON: per method and weight, the volume's PSNR, the spread of the slices' PSNRs,
the z-flicker mean|x_{k+1} − x_k| (the truth's is printed beside it) and the z-error
mean|(x − truth)_{k+1} − (x − truth)_k|) and a figure (per-slice PSNR along z, and x–z
sections through the volume) go to ``--out``.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

from cil_genreg import RangeGenerativeRegulariser, SoftGenerativeRegulariser
from cil_genreg.experiments import methods, reports
from cil_genreg.physics import forward
from cil_genreg.utilities import metrics
from cil_genreg.commands.options import add_latent_prior_option
from cil_genreg.datasets import shape_volumes
from cil_genreg.algorithms.z_tv import z_tv_pdhg


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=2, help="volumes")
    p.add_argument("--slices", type=int, default=16)
    p.add_argument("--angles", type=int, default=10)
    p.add_argument("--noise", type=float, default=0.05,
                   help="Gaussian noise, fraction of the sinogram's maximum")
    p.add_argument("--model", default="shapes-vae")
    add_latent_prior_option(p)
    p.add_argument("--method", default="soft", choices=("soft", "range"),
                   help="the generative regulariser")
    p.add_argument("--lam", type=float, default=100.0, help="λ of the regulariser")
    p.add_argument("--mu", type=float, default=1e-2, help="μ of the soft regulariser")
    p.add_argument("--tv-lam", type=float, default=30.0, help="λ of the 2D TV start")
    p.add_argument("--couplings", type=float, nargs="+", default=[0.01, 0.03, 0.1, 0.3, 1.0],
                   help="λ_z grid of the latent chain")
    p.add_argument("--alphas", type=float, nargs="+", default=[3.0, 10.0, 30.0],
                   help="α_z grid of TV along z")
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=os.path.join("outputs", "volume_coupled"))
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier run's outputs in --out")
    return p.parse_args(argv)


def slice_psnr(x, truth):
    """PSNR (dB) of each slice."""
    return [metrics.psnr(a, b) for a, b in zip(x, truth)]


def run_volume(truth_array, generator, args, rng):
    """All methods on one volume: {key: (method, weight, array, seconds)}."""
    from cil.optimisation.algorithms import FISTA
    from cil.optimisation.functions import LeastSquares

    slices, size = truth_array.shape[0], truth_array.shape[-1]
    ig, ag = forward.make_geometry(size, args.angles, "parallel", slices=slices)
    A = forward.make_projector(ig, ag)
    truth = ig.allocate(None)
    truth.fill(truth_array)
    y, _ = forward.add_noise(A.direct(truth), args.noise, rng)
    out = {}
    t0 = time.perf_counter()
    x0, label = forward.initial_reconstruction(A, y)
    out["fbp"] = (label, None, x0.as_array().copy(), time.perf_counter() - t0)
    t0 = time.perf_counter()
    start = methods.reconstruct("tv", A, y, args.tv_lam, x0=x0, iterations=args.iterations,
                                    tv_per_slice=True)
    out["tv"] = ("TV (2D per slice)", args.tv_lam, start.as_array().copy(),
                 time.perf_counter() - t0)

    def soft(coupling):
        if args.method == "range":
            return RangeGenerativeRegulariser(generator, latent_coupling=coupling, seed=args.seed)
        return SoftGenerativeRegulariser(generator, mu=args.mu, latent_coupling=coupling,
                                         seed=args.seed)

    for coupling in [0.0] + list(args.couplings):
        t0 = time.perf_counter()
        algo = FISTA(initial=start, f=LeastSquares(A, y), g=args.lam * soft(coupling),
                     update_objective_interval=args.iterations)
        algo.run(args.iterations, verbose=0)
        key = "independent" if coupling == 0 else f"coupled {coupling:g}"
        out[key] = ("independent" if coupling == 0 else "coupled", coupling,
                    algo.solution.as_array().copy(), time.perf_counter() - t0)
    for alpha in args.alphas:
        t0 = time.perf_counter()
        algo = z_tv_pdhg(A, y, args.lam * soft(0.0), alpha, initial=start,
                         update_objective_interval=args.iterations)
        algo.run(args.iterations, verbose=0)
        out[f"z-TV {alpha:g}"] = ("z-TV", alpha, algo.solution.as_array().copy(),
                                  time.perf_counter() - t0)
    return out


def figure(truth, found, best_coupled, best_ztv, path, title, method="soft"):
    """Left: PSNR of each slice along z (FBP's, far below, in the title); right: x–z
    sections through the object."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    keys = ["tv", "independent", best_coupled, best_ztv]
    names = {"tv": "TV 2D per slice", "independent": f"{method}, independent slices",
             best_coupled: f"{method}, latent chain λ_z={found[best_coupled][1]:g}",
             best_ztv: f"{method} + TV along z, α_z={found[best_ztv][1]:g}"}
    title += f"; {found['fbp'][0]} {metrics.psnr(found['fbp'][2], truth):.1f} dB"
    row = int(np.argmax(truth.sum(axis=(0, 2))))
    sections = [("truth", truth)] + [(names[k], found[k][2]) for k in keys[1:]]
    fig = plt.figure(figsize=(11, 3.6))
    grid = fig.add_gridspec(1, 1 + len(sections), width_ratios=[2.4] + [1] * len(sections))
    ax = fig.add_subplot(grid[0])
    for k in keys:
        ax.plot(slice_psnr(found[k][2], truth), marker="o", ms=3, label=names[k])
    ax.set_xlabel("slice (z)")
    ax.set_ylabel("PSNR of the slice (dB)")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    for i, (name, vol) in enumerate(sections):
        a = fig.add_subplot(grid[1 + i])
        a.imshow(vol[:, row, :], cmap="gray", vmin=0, vmax=1, aspect="auto")
        a.set_title(name if len(name) < 26 else name.replace(", ", ",\n"), fontsize=7)
        a.set_xticks([]), a.set_yticks([])
        if i == 0:
            a.set_ylabel(f"z (x–z section, row {row})", fontsize=7)
    return reports.save_figure(fig, path)


def main(argv=None):
    from cil_genreg.utilities.output_safety import check_output_files

    args = parse_args(argv)
    stem = os.path.join(args.out, f"volume_coupled_{args.method}_{args.angles}")
    check_output_files(args.out, [os.path.basename(stem) + ext
                                  for ext in (".csv", ".json", ".png")],
                       overwrite=args.overwrite)
    generator = methods.load_generator(args.model, args.latent_prior)
    volumes = shape_volumes(args.n, args.slices, generator.image_shape[-1], seed=args.seed)
    rng = np.random.default_rng(args.seed)
    rows, first = [], None
    for i, truth in enumerate(volumes):
        found = run_volume(truth, generator, args, rng)
        for key, (method, weight, x, seconds) in found.items():
            per_slice = slice_psnr(x, truth)
            rows.append({"volume": i, "key": key, "method": method, "weight": weight,
                         "psnr": metrics.psnr(x, truth), "slice_psnr_std": float(np.std(per_slice)),
                         "z_flicker": float(np.abs(np.diff(x, axis=0)).mean()),
                         "z_error": float(np.abs(np.diff(x - truth, axis=0)).mean()),
                         "seconds": seconds})
            print(f"volume {i} {key:>14}: {rows[-1]['psnr']:.2f} dB ({seconds:.0f} s)",
                  flush=True)
        if first is None:
            first = (truth, found)
    keys = list(dict.fromkeys(r["key"] for r in rows))
    table = []
    for key in keys:
        rs = [r for r in rows if r["key"] == key]
        table.append({"key": key, "method": rs[0]["method"], "weight": rs[0]["weight"],
                      "psnr": float(np.mean([r["psnr"] for r in rs])),
                      "slice_psnr_std": float(np.mean([r["slice_psnr_std"] for r in rs])),
                      "z_flicker": float(np.mean([r["z_flicker"] for r in rs])),
                      "z_error": float(np.mean([r["z_error"] for r in rs])),
                      "seconds": float(np.mean([r["seconds"] for r in rs]))})
    truth_flicker = float(np.mean([np.abs(np.diff(v, axis=0)).mean() for v in volumes]))
    os.makedirs(args.out, exist_ok=True)
    with open(stem + ".json", "w") as f:
        json.dump({"args": vars(args), "rows": rows, "table": table,
                   "truth_z_flicker": truth_flicker}, f, indent=1)
    with open(stem + ".csv", "w") as f:
        f.write("method,weight,psnr_db,slice_psnr_std_db,z_flicker,z_error,seconds\n")
        for t in table:
            f.write(f"{t['method']},{'' if t['weight'] is None else t['weight']},"
                    f"{t['psnr']:.2f},{t['slice_psnr_std']:.2f},{t['z_flicker']:.4f},"
                    f"{t['z_error']:.4f},"
                    f"{t['seconds']:.1f}\n")
    best = lambda prefix: max((t for t in table if t["key"].startswith(prefix)),  # noqa: E731
                              key=lambda t: t["psnr"])["key"]
    figure(first[0], first[1], best("coupled"), best("z-TV"), stem + ".png",
           f"volume 0: {args.slices} slices, {args.angles} angles, {args.noise:.0%} noise",
           args.method)
    print(f"\nmean over {len(volumes)} volumes (truth's z-flicker {truth_flicker:.4f}):")
    for t in table:
        print(f"{t['key']:>16}: {t['psnr']:6.2f} dB, slice PSNR std {t['slice_psnr_std']:.2f}, "
              f"z-flicker {t['z_flicker']:.4f}, z-error {t['z_error']:.4f}, "
              f"{t['seconds']:.0f} s")
    print(f"written {stem}.csv/.json/.png")
    return {"table": table, "out": args.out}


if __name__ == "__main__":
    result = main()
    sys.exit(result if isinstance(result, int) else 0)
