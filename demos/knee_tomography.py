#!/usr/bin/env python
"""The talk's knee comparison: sparse-angle tomography of fastMRI knee slices (128×128) by FBP,
TV and the generative regularisers.

fastMRI cannot be downloaded automatically: request access at https://fastmri.med.nyu.edu/,
download the knee single-coil validation set (``knee_singlecoil_val.tar.xz``), extract it, and
pass the folder of ``*.h5`` files (or one file) as ``--data``. Train a generator on the
training volumes first (no knee model ships with the package), e.g.::

    cil-genreg train --model vae --data /path/to/knee_singlecoil_train --size 128 \\
        --latent-dim 256 --epochs 50 --out knee-vae.safetensors
    python demos/knee_tomography.py --data /path/to/knee_singlecoil_val --model knee-vae.safetensors

As in the paper, slices are centre-cropped to 320×320, resized to 128×128 and scaled to [0, 1];
parallel beam, 10 and 30 angles, Gaussian noise of 5 % of the sinogram's maximum (the talk's
reference, PSNR in dB: 10 angles FBP 16.58, TV 17.99, range 21.90, soft 23.31; 30 angles FBP
24.25, TV 30.26, range 28.47, soft 31.50). Without ``--data`` the script says where to get the
files and exits with status 2; it does too, saying what is wrong and what to do, for files it
cannot use (fastMRI's k-space-only test set, damaged downloads, no slice left after
``--skip-edge-slices``). With fewer slices than ``--n`` it uses those there are, and says so.
"""
import os
import sys

from cil_genreg.experiments import comparison
from cil_genreg.experiments import methods
from cil_genreg.commands import options

#: λ grids for 128×128 slices (σ² of the data ~ 20× MNIST's)
LAMBDAS = {"tv": (10.0, 30.0, 100.0, 300.0, 1000.0), "latent": (1.0, 3.0, 10.0, 30.0, 100.0),
           "range": (0.3, 1.0, 3.0, 10.0, 30.0), "soft": (100.0, 300.0, 1000.0, 3000.0, 10000.0),
           "sparse": (30.0, 100.0, 300.0, 1000.0, 3000.0)}
QUICK_LAMBDAS = {"tv": (30.0, 100.0), "latent": (3.0, 10.0), "range": (1.0, 3.0),
                 "soft": (300.0, 1000.0), "sparse": (100.0, 300.0)}
TALK = {10: {"fbp": 16.58, "tv": 17.99, "range": 21.90, "soft": 23.31},
        30: {"fbp": 24.25, "tv": 30.26, "range": 28.47, "soft": 31.50}}
WHERE = ("fastMRI knee data are needed and cannot be downloaded automatically.\n"
         "  1. request access at https://fastmri.med.nyu.edu/\n"
         "  2. download the knee single-coil validation set (knee_singlecoil_val.tar.xz) and "
         "extract it\n"
         "  3. run: python demos/knee_tomography.py --data /path/to/knee_singlecoil_val "
         "--model YOUR_KNEE_MODEL.safetensors\n"
         "(train the model on knee_singlecoil_train with `cil-genreg train --data PATH "
         "--size 128`)")


def parse_args(argv=None):
    p = options.comparison_parser(__doc__.split("\n\n")[0], n=10,
                                  out=os.path.join("outputs", "knee"), model=None)
    p.add_argument("--data", help="fastMRI knee .h5 file or folder of them")
    p.add_argument("--size", type=int, default=128, help="image side (the paper's 128)")
    p.add_argument("--skip-edge-slices", type=int, default=10,
                   help="slices dropped at each end of every volume (mostly empty)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if not args.data:
        print("knee_tomography: no --data given. " + WHERE, file=sys.stderr)
        return 2
    lambdas = options.chosen_lambdas(args, LAMBDAS, QUICK_LAMBDAS)  # --quick caps --n
    from cil_genreg import datasets
    from cil_genreg.datasets.fastmri import FastMRIError, NoSlicesError
    edge = args.skip_edge_slices
    if args.n < 1 or edge < 0:
        print(f"knee_tomography: error: --n must be >= 1 and --skip-edge-slices >= 0 (got "
              f"{args.n} and {edge}).", file=sys.stderr)
        return 2
    try:
        images = datasets.fastmri_knee(args.data, n=args.n, size=args.size,
                                       slices=slice(edge, -edge) if edge else None,
                                       allow_fewer=True)
    except FileNotFoundError as err:
        print(f"knee_tomography: {err}\n" + WHERE, file=sys.stderr)
        return 2
    except FastMRIError as err:
        hint = (f"\n(--skip-edge-slices {edge} drops {edge} slices at each end of every "
                "volume: pass a smaller value for short volumes)") \
            if isinstance(err, NoSlicesError) and edge else ""
        print(f"knee_tomography: error: {err}{hint}", file=sys.stderr)
        return 2
    if len(images) < args.n:
        print(f"knee_tomography: note: --n {args.n} asked for but the files at {args.data} hold "
              f"only {len(images)} slice(s)"
              + (f" (after dropping {edge} at each end of every volume)" if edge else "")
              + f"; using those {len(images)}.", file=sys.stderr)
        args.n = len(images)
    if not args.model:
        print("knee_tomography: --model is needed (no knee model ships with cil_genreg): train "
              f"one on fastMRI knee training slices, e.g. `cil-genreg train --model vae --data "
              f"PATH --size {args.size} --out knee-vae.safetensors`.", file=sys.stderr)
        return 2
    refusal = options.backend_refusal(args)
    if refusal:
        return refusal
    generator = methods.load_generator(args.model, args.latent_prior)
    summary = comparison.run_comparison(
        images, generator, "knee", angles=args.angles, geometries=args.geometry,
        noise=args.noise, iterations=args.iterations, methods=args.methods, lambdas=lambdas,
        out=args.out, backend=args.backend, device=args.device, seed=args.seed,
        progress=not args.quiet, title="fastMRI knee", start_from=args.start,
        overwrite=args.overwrite, regulariser_options=options.precision_options(args),
        meta={"model": args.model, "data": os.path.abspath(args.data)})
    print("\nthe talk's numbers (its knee model and noise; PSNR in dB):")
    for count, row in TALK.items():
        print(f"  {count} angles: " + ", ".join(f"{k} {v:.2f}" for k, v in row.items()))
    return {"summary": summary, "out": args.out}


if __name__ == "__main__":
    from cil_genreg.cli import script_status
    sys.exit(script_status(main))
