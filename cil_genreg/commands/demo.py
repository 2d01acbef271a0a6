"""``cil-genreg demo``: the MNIST comparison (FBP, TV, range, soft, sparse deviations) out of the
box with the shipped ``mnist-vae``, small enough to finish in about three minutes on 2 cores."""
import os

from ..experiments import METHODS

NAME = "demo"
HELP = "reconstruct held-out MNIST digits by FBP, TV and the generative regularisers"

#: three λ per method around the best ones of the full demo (demos/mnist_tomography.py)
DEMO_LAMBDAS = {"tv": (1.0, 2.0, 4.0), "latent": (0.3, 1.0, 3.0), "range": (0.1, 0.3, 1.0),
                "soft": (30.0, 60.0, 100.0), "sparse": (10.0, 30.0, 100.0)}


def add_parser(subparsers):
    p = subparsers.add_parser(
        NAME, help=HELP,
        description=HELP + " (10 and 30 parallel-beam angles, 5%% noise, ASTRA on the CPU). "
        "Prints a PSNR/SSIM table and writes it (CSV, JSON) with a figure like the talk's "
        "(PNG). The full experiment is demos/mnist_tomography.py.")
    p.add_argument("--n", type=int, default=3, help="number of held-out test digits")
    p.add_argument("--angles", type=int, nargs="+", default=[10, 30])
    p.add_argument("--geometry", nargs="+", default=["parallel"],
                   choices=("parallel", "limited", "fan"))
    p.add_argument("--iterations", type=int, default=50, help="FISTA iterations per method")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS,
                   help="fbp, tv, latent (range in latent space), range, soft, sparse")
    p.add_argument("--model", default="mnist-vae", help="shipped model name or checkpoint")
    p.add_argument("--out", default=os.path.join("outputs", "demo"), help="output folder")
    p.add_argument("--backend", default="astra", choices=("astra", "tigre"),
                   help="projector: ASTRA (2D on CPU or GPU) or TIGRE (GPU only)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                   help="projector and generator device")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--start", default="tv", choices=("fbp", "tv"),
                   help="start of the generative methods: TV at the discrepancy principle's λ "
                   "(default), or FBP (as good in parallel beam, poor in limited angle)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the outputs of an earlier run in --out (refused without it)")
    return p


def run(args):
    from ..experiments import check_backend, mnist_comparison, output_names
    from ..output_safety import check_output_files
    check_output_files(args.out, output_names("mnist", args.geometry, args.angles)
                       + ["summary.json"], overwrite=args.overwrite)
    check_backend(args.backend, args.device)
    mnist_comparison(n=args.n, angles=args.angles, geometries=args.geometry,
                     iterations=args.iterations, methods=args.methods, model=args.model,
                     lambdas=DEMO_LAMBDAS, out=args.out, backend=args.backend, device=args.device,
                     seed=args.seed,
                     progress=not args.quiet, start_from=args.start, overwrite=args.overwrite)
    return 0
