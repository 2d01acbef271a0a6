"""``cil-genreg demo``: the MNIST comparison (FBP, TV, range, soft, sparse deviations) out of the
box with the shipped ``mnist-vae``, small enough to finish in about three minutes on 2 cores."""
import os

from .options import (add_comparison_options, add_run_options, check_precision_option,
                      precision_options)

NAME = "demo"
HELP = "reconstruct held-out MNIST digits by FBP, TV and the generative regularisers"


def add_parser(subparsers):
    p = subparsers.add_parser(
        NAME, help=HELP,
        description=HELP + " (10 and 30 parallel-beam angles, 5%% noise, ASTRA on the CPU). "
        "Prints a PSNR/SSIM table and writes it (CSV, JSON) with a figure of each method's "
        "reconstruction (PNG). The full experiment is demos/mnist_tomography.py.")
    add_comparison_options(p, n=3, iterations=50)
    return add_run_options(p, model="mnist-vae", out=os.path.join("outputs", "demo"))


def run(args):
    from ..experiments.comparison import mnist_comparison, output_names
    from ..physics.forward import check_backend
    from ..experiments.methods import lambda_grids
    from ..utilities.output_safety import check_output_files
    check_output_files(args.out, output_names("mnist", args.geometry, args.angles)
                       + ["summary.json"], overwrite=args.overwrite)
    check_backend(args.backend, args.device)
    check_precision_option(args)
    mnist_comparison(n=args.n, angles=args.angles, geometries=args.geometry,
                     iterations=args.iterations, methods=args.methods, model=args.model,
                     latent_prior=args.latent_prior,
                     lambdas=lambda_grids("demo"), out=args.out, backend=args.backend,
                     device=args.device, seed=args.seed, progress=not args.quiet,
                     start_from=args.start, overwrite=args.overwrite,
                     regulariser_options=precision_options(args))
    return 0
