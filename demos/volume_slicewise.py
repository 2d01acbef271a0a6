#!/usr/bin/env python
"""A 3D parallel-beam volume whose slices are held-out MNIST digits (or shapes), reconstructed
with a 2D generative prior applied slice by slice, all slices in one batch.

The forward problem is one CIL operator on the whole volume (slices, H, W): ASTRA's 3D GPU
projector or TIGRE's (``--device cuda``, where a GPU exists), else on the CPU a
``SliceWiseOperator`` that applies ASTRA's 2D CPU projector to each slice. The generative
regularisers (and ``LatentLeastSquares``) take the 3D ImageData as it is: each slice is one
item of the generator's batch. FBP is slice by slice; TV is CIL's 2D TotalVariation of each
slice (the slices here are unrelated digits, so 3D TV, ``--tv-3d``, would couple them unfairly).

The table (CSV, JSON) and a figure (rows: truth, FBP, each method; columns: slices) go to
``--out``.
"""
import os
import sys

import numpy as np

from cil_genreg import datasets
from cil_genreg.experiments import comparison
from cil_genreg.experiments import methods
from cil_genreg.utilities import metrics
from cil_genreg.experiments import reports
from cil_genreg.commands import options

METHODS = ("fbp", "tv", "latent", "soft")


def parse_args(argv=None):
    p = options.comparison_parser(__doc__.split("\n\n")[0], n=1,
                                  out=os.path.join("outputs", "volume"), model="mnist-vae",
                                  angles=(10,), geometries=("parallel", "limited"))
    p.set_defaults(methods=list(METHODS))
    p.add_argument("--dataset", default="mnist", choices=("mnist", "shapes"),
                   help="slices: held-out MNIST digits (model mnist-vae) or shapes "
                   "(use --model shapes-vae)")
    p.add_argument("--slices", type=int, default=8, help="slices per volume")
    p.add_argument("--tv-3d", action="store_true",
                   help="3D TV of the volume instead of 2D TV per slice")
    return p.parse_args(argv)


def volume_slices(dataset, n, slices, seed):
    """``n`` volumes (n, slices, H, W) of held-out images."""
    if dataset == "mnist":
        images = datasets.held_out_digits(n * slices, seed)
    else:
        images = datasets.held_out_shapes(n * slices, seed=seed)
    return np.ascontiguousarray(images.reshape(n, slices, *images.shape[-2:]))


def volume_figure(examples, path, title="", columns=4):
    """Rows: ground truth, then each method (λ best against the truth) with its PSNR; columns:
    the first ``columns`` slices."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    truth = examples["truth"]
    rows = [("Ground truth", truth)]
    for key, x in examples["recons"].items():
        if key == "fbp" or key.endswith("*"):
            label = examples["initial_label"] if key == "fbp" else \
                methods.LABELS[key.rstrip("*")]
            rows.append((f"{label} {metrics.psnr(x, truth):.1f} dB", x))
    cols = min(columns, truth.shape[0])
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.6 * cols + 1.2, 1.6 * len(rows)),
                             squeeze=False)
    for r, (name, vol) in enumerate(rows):
        for c in range(cols):
            ax = axes[r, c]
            ax.imshow(vol[c], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
            if r == 0:
                ax.set_title(f"slice {c}", fontsize=8)
    return reports.save_figure(fig, path, title)


def main(argv=None):
    args = parse_args(argv)
    lambdas = options.chosen_lambdas(args, methods.lambda_grids(), methods.lambda_grids("quick"))
    refusal = options.backend_refusal(args)
    if refusal:
        return refusal
    from cil_genreg.experiments.comparison import output_names
    from cil_genreg.utilities.output_safety import check_output_files
    check_output_files(args.out, output_names(f"volume_{args.dataset}", args.geometry,
                                              args.angles), overwrite=args.overwrite)
    generator = methods.load_generator(args.model, args.latent_prior)
    volumes = volume_slices(args.dataset, args.n, args.slices, args.seed)
    summary = []
    for geometry in args.geometry:
        for count in args.angles:
            results = comparison.compare(
                volumes, generator, angles=count, geometry=geometry, noise=args.noise,
                methods=args.methods, lambdas=lambdas, iterations=args.iterations,
                backend=args.backend, device=args.device, seed=args.seed,
                progress=not args.quiet, tv_per_slice=not args.tv_3d,
                start_from=args.start)
            stem = f"volume_{args.dataset}_{geometry}_{count}"
            reports.save_results(results, args.out, stem)
            volume_figure(results["examples"], os.path.join(args.out, stem + ".png"),
                          f"{args.slices}-slice volume ({args.dataset}), {geometry} beam, "
                          f"{count} angles")
            print(f"\n{len(volumes)} volume(s) of {args.slices} {args.dataset} slices, "
                  f"{geometry}, {count} angles:")
            print(reports.format_table(results["summary"]))
            summary += results["summary"]
    print(f"\ntables and figures written to {args.out}")
    return {"summary": summary, "out": args.out}


if __name__ == "__main__":
    from cil_genreg.cli import script_status
    sys.exit(script_status(main))
