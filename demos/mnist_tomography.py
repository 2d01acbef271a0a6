#!/usr/bin/env python
"""Sparse-angle tomography of held-out MNIST digits: FBP, TV and the generative regularisers.

The experiment of the talk *Regularising Inverse Problems with Generative Machine Learning
Models* (Duff, Campbell, Ehrhardt) on real digits, with CIL:

* held-out MNIST test digits (never seen by the shipped ``mnist-vae``), 28×28;
* parallel beam (ASTRA), 10 and 30 angles over 180°, a 41-pixel panel, Gaussian noise of 5 %
  of the sinogram's maximum; ``--geometry limited`` (90°) and ``--geometry fan`` change the
  forward problem without retraining the generator (the paper's point);
* methods: FBP; TV (CIL's TotalVariation under FISTA); range in latent space
  (LatentLeastSquares under LatentLBFGS) and as RangeGenerativeRegulariser; soft; sparse deviations;
* λ per method from a grid of five, chosen by the discrepancy principle, as the one λ best
  on average over the digits ("fixed") and, for reference, the best per digit against the
  ground truth ("best");
* a PSNR/SSIM table (printed, CSV and JSON) and a figure of each method's reconstruction (PNG).

Run ``python demos/mnist_tomography.py --help`` for the options; ``cil-genreg demo`` runs a
small version of it in under three minutes.
"""
import os
import sys

from cil_genreg.experiments import comparison
from cil_genreg.experiments import methods
from cil_genreg.commands import options


def parse_args(argv=None):
    p = options.comparison_parser(__doc__.split("\n\n")[0], n=20,
                                  out=os.path.join("outputs", "mnist"), model="mnist-vae")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    lambdas = options.chosen_lambdas(args, methods.lambda_grids(), methods.lambda_grids("quick"))
    refusal = options.backend_refusal(args)
    if refusal:
        return refusal
    summary = comparison.mnist_comparison(
        n=args.n, angles=args.angles, geometries=args.geometry, noise=args.noise,
        iterations=args.iterations, methods=args.methods, model=args.model, lambdas=lambdas,
        out=args.out, backend=args.backend, device=args.device, seed=args.seed,
        progress=not args.quiet, start_from=args.start, overwrite=args.overwrite,
        regulariser_options=options.precision_options(args))
    return {"summary": summary, "out": args.out}


if __name__ == "__main__":
    from cil_genreg.cli import script_status
    sys.exit(script_status(main))
