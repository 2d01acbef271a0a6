#!/usr/bin/env python
"""What limits the generative methods: the starting point, the inner accuracy or the generator?

On a few held-out MNIST digits (parallel and limited-angle beam, 10 angles, 5 % noise), each at
one λ per method (the demos' typical best), this measures:

* range in latent space (``LatentLeastSquares`` under FISTA) from z = 0, from the encoder of the
  FBP image (the demos' default), from the encoder of the TV image, and the best (lowest
  objective) of those plus ``--restarts`` random starts;
* soft from the FBP image (the default) and from the TV image, with the latent solver's default
  inner accuracy and with 4 batched random restarts and 3× the inner iterations;
* the generator's own ceiling: the latent fit of the ground truth,
  min_z ‖G(z) − x‖² + 10⁻³‖z‖² (no data at all: the best any range method can do).

``--backend astra|tigre`` and ``--device cpu|cuda`` choose the projector (TIGRE: GPU only) and
where the generator runs, as in the other demos. Writes ``ablation.csv``/``.json`` and prints
mean PSNRs.
"""
import argparse
import csv
import json
import os
import sys

import numpy as np

from cil_genreg import datasets
from cil_genreg.physics import forward
from cil_genreg.experiments import methods
from cil_genreg.utilities import metrics
from cil_genreg.commands import options


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--n", type=int, default=5, help="held-out digits")
    p.add_argument("--angles", type=int, default=10)
    p.add_argument("--geometry", nargs="+", default=["parallel", "limited"],
                   choices=forward.GEOMETRIES)
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--restarts", type=int, default=3, help="random latent starts (latent)")
    p.add_argument("--lam", type=json.loads,
                   default={"tv": 4.0, "latent": 1.0, "soft": 100.0},
                   help="λ per method, JSON")
    options.add_run_options(p, model="mnist-vae", out=os.path.join("outputs", "ablation"),
                            seed_help="seed of the digits, the noise and the random starts")
    return p.parse_args(argv)


def latent_from(A, y, G, lam, z0, iterations, device="cpu"):
    """FISTA on LatentLeastSquares + λ‖z‖² from z0; returns (objective, image)."""
    from cil.optimisation.algorithms import FISTA
    from cil.optimisation.functions import L2NormSquared
    from cil_genreg import LatentLeastSquares
    f = LatentLeastSquares(A, G, y, device=device)
    start = f.latent_geometry.allocate(0)
    if z0 is not None:
        start.fill(np.asarray(z0, np.float32).ravel())
    g = lam * L2NormSquared()
    algo = FISTA(initial=start, f=f, g=g, update_objective_interval=iterations)
    algo.run(iterations, verbose=0)
    z = algo.solution
    return float(f(z) + g(z)), f.image(z)


def encode(G, x, device="cpu"):
    import torch
    with torch.no_grad():
        image = torch.from_numpy(np.ascontiguousarray(x.as_array()))[None, None]
        code = G.encode(image.to(device))
    code = code[0] if isinstance(code, (tuple, list)) else code
    return code.reshape(-1).cpu().numpy()


def latent_fit_ceiling(G, truth, device="cpu"):
    """PSNR of G(z*) for z* = argmin ‖G(z) − x‖² + 1e-3‖z‖² (from the encoder, and restarts)."""
    from cil_genreg import SoftGenerativeRegulariser
    R = SoftGenerativeRegulariser(G, mu=1e-3, max_iteration=300, tolerance=1e-9, restarts=4, seed=0,
                                  adaptive_tolerance=False, device=device)
    R(truth)
    return metrics.psnr(R.generated_image(), truth)


def main(argv=None):
    from tqdm.auto import tqdm
    args = parse_args(argv)
    refusal = options.backend_refusal(args)
    if refusal:
        return refusal
    from cil_genreg.utilities.output_safety import check_output_files
    check_output_files(args.out, ["ablation.csv", "ablation.json"], overwrite=args.overwrite)
    dev = args.device
    G = methods.load_generator(args.model, args.latent_prior).to(dev)
    digits = datasets.held_out_digits(args.n, args.seed)
    rng = np.random.default_rng(args.seed)
    rows = []
    bar = tqdm(total=len(args.geometry) * len(digits), disable=args.quiet)
    for geometry in args.geometry:
        ig, ag = forward.make_geometry(28, args.angles, geometry)
        A = forward.make_projector(ig, ag, args.backend, dev)
        for k, image in enumerate(digits):
            truth = ig.allocate(None)
            truth.fill(image)
            y, _ = forward.add_noise(A.direct(truth), 0.05, rng)
            fbp, _ = forward.initial_reconstruction(A, y, args.backend, dev)
            tv = methods.reconstruct("tv", A, y, args.lam["tv"], iterations=args.iterations)
            out = {"tv": tv, "fbp": fbp}
            lam = args.lam["latent"]
            starts = {"latent z=0": None, "latent enc(FBP)": encode(G, fbp, dev),
                      "latent enc(TV)": encode(G, tv, dev)}
            found = {name: latent_from(A, y, G, lam, z0, args.iterations, dev)
                     for name, z0 in starts.items()}
            for name, (_, x) in found.items():
                out[name] = x
            extra = [latent_from(A, y, G, lam, rng.standard_normal(G.latent_dim),
                                 args.iterations, dev) for _ in range(args.restarts)]
            out[f"latent best of {3 + args.restarts}"] = min(list(found.values()) + extra,
                                                            key=lambda t: t[0])[1]
            soft = dict(mu=methods.MU["soft"], device=dev)
            out["soft from FBP"] = methods.reconstruct(
                "soft", A, y, args.lam["soft"], G, x0=fbp, iterations=args.iterations, **soft)
            out["soft from TV"] = methods.reconstruct(
                "soft", A, y, args.lam["soft"], G, x0=tv, iterations=args.iterations, **soft)
            out["soft from FBP, 4 restarts, 3x inner"] = methods.reconstruct(
                "soft", A, y, args.lam["soft"], G, x0=fbp, iterations=args.iterations,
                restarts=4, max_iteration=150, seed=0, **soft)
            out["soft from TV, 4 restarts, 3x inner"] = methods.reconstruct(
                "soft", A, y, args.lam["soft"], G, x0=tv, iterations=args.iterations,
                restarts=4, max_iteration=150, seed=0, **soft)
            for name, x in out.items():
                rows.append({"geometry": geometry, "image": k, "variant": name,
                             "psnr": metrics.psnr(x, truth)})
            rows.append({"geometry": geometry, "image": k, "variant": "ceiling: latent fit of "
                         "the truth", "psnr": latent_fit_ceiling(G, truth, dev)})
            bar.update()
    bar.close()
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "ablation.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    means = {}
    for r in rows:
        means.setdefault((r["geometry"], r["variant"]), []).append(r["psnr"])
    summary = [{"geometry": g, "variant": v, "psnr": float(np.mean(p)), "images": len(p)}
               for (g, v), p in means.items()]
    with open(os.path.join(args.out, "ablation.json"), "w") as f:
        json.dump({"args": vars(args), "summary": summary}, f, indent=1)
    print(f"{len(digits)} held-out digits, {args.angles} angles, λ {args.lam}:")
    for s in summary:
        print(f"{s['geometry']:9} {s['variant']:40} {s['psnr']:6.2f}")
    return {"summary": summary, "out": args.out}


if __name__ == "__main__":
    from cil_genreg.cli import script_status
    sys.exit(script_status(main))
