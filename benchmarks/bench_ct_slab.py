r"""A slab of real CT end to end: soft vs CIL's TV, seconds per slice and a 300-slice volume.

A ``--depth`` (64) × ``--size``² (512²) slab of consecutive axial slices of the chest CT
(wide window), centred on its held-out block (:func:`ct_common.chest_slab`; the JSON lists the
held-out slices and their own PSNR: the others were seen in training), as 3D parallel-beam data
of ``--angles`` (60) with Gaussian noise of ``--noise`` (2 %) of the sinogram's maximum. The
slab is reconstructed in chunks of ``--chunk`` slices (the memory of one batch of 512² slices
through the generator with autograd), each chunk one 3D problem from its FBP:

* the projector is called once per iteration for the whole chunk: on the CPU the batched 2D
  path (``physics.forward.make_projector``: ASTRA's 2D projector slice by slice, a
  ``SliceWiseOperator``), with ``--device cuda`` ASTRA's 3D parallel-beam CUDA projector;
* **TV**: CIL's ``TotalVariation`` of each slice (``tv_per_slice``), λ = ``--tv-lam``;
* **soft**: ``ct-patch-vae-64`` run whole at the slices' side, every chunk's slices one batch
  through the generator (on ``--device``, in ``--precision``), λ = ``--soft-lam``, μ = 1e-3,
  ``--inner-iterations`` (3: the CT demo's) per proximal map.

Reported per method: seconds (FBP apart), seconds per slice, the extrapolated time of a
300-slice volume (seconds per slice × 300), PSNR over the slab and over its held-out slices,
and the peak resident memory of the process.

    python benchmarks/bench_ct_slab.py                              # CPU, 512 x 512 x 64, 50 its
    python benchmarks/bench_ct_slab.py --device cuda --chunk 64     # ASTRA CUDA + torch CUDA
    python benchmarks/bench_ct_slab.py --quick                      # smoke: 2 slices of 64²
"""
import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import ct_common  # noqa: E402

VOLUME_SLICES = 300


def chunk_problem(slab, args, seed):
    """(A, y, x_true, x0, FBP seconds) of a chunk (slices, n, n) on ``args.device``."""
    from cil_genreg.physics import forward
    ig, ag = forward.make_geometry(slab.shape[-1], args.angles, "parallel",
                                   slices=slab.shape[0])
    A = forward.make_projector(ig, ag, "astra", args.device)
    x_true = ig.allocate(0)
    x_true.fill(slab)
    y, _ = forward.add_noise(A.direct(x_true), args.noise, seed)
    t = time.perf_counter()
    x0 = forward.initial_reconstruction(A, y, "astra", args.device)[0]
    return A, y, x_true, x0, time.perf_counter() - t


def soft_options(args):
    """The soft regulariser's options of this run (device, precision, inner iterations)."""
    options = {"mu": ct_common.SOFT_MU, "max_iteration": args.inner_iterations}
    if args.device != "cpu":
        options["device"] = args.device
    if args.precision != "float32":
        options["precision"] = args.precision
    return options


def slice_psnrs(x, truth):
    """The PSNR of each slice of a volume (data range 1)."""
    a, b = x.as_array(), truth.as_array()
    return [common.psnr(a[i], b[i]) for i in range(a.shape[0])]


def run(args):
    from cil_genreg.experiments import methods
    common.apply_threads(args)
    info = common.machine_info()
    common.print_machine(info)
    slab, first, held = ct_common.chest_slab(args.size, args.depth)
    G = methods.load_generator(args.model)
    runs = {"tv": ("tv", args.tv_lam, None, {"tv_per_slice": True}),
            "soft": ("soft", args.soft_lam, G, soft_options(args))}
    seconds = {name: 0.0 for name in runs}
    psnrs = {name: [] for name in runs}
    fbp_seconds, fbp_psnrs = 0.0, []
    for k in range(0, len(slab), args.chunk):
        A, y, x_true, x0, t = chunk_problem(slab[k:k + args.chunk], args, args.seed + k)
        fbp_seconds += t
        fbp_psnrs += slice_psnrs(x0, x_true)
        for name, (method, lam, model, options) in runs.items():
            t = time.perf_counter()
            x = methods.reconstruct(method, A, y, lam, model, x0=x0,
                                    iterations=args.iterations, **options)
            seconds[name] += time.perf_counter() - t
            psnrs[name] += slice_psnrs(x, x_true)
        print(f"  slices {k}-{k + len(x_true.as_array()) - 1}: tv {seconds['tv']:.1f} s, soft "
              f"{seconds['soft']:.1f} s so far", flush=True)
    n = len(slab)
    rows = {name: summary(seconds[name], psnrs[name], held, n)
            for name in runs}
    rows["fbp"] = summary(fbp_seconds, fbp_psnrs, held, n)
    for name, r in rows.items():
        print(f"{name:>4}: {r['seconds']:.1f} s, {r['seconds_per_slice']:.2f} s per slice, "
              f"300 slices ≈ {r['volume_300_hours']:.2f} h; PSNR {r['psnr_mean']:.2f} dB "
              f"(held-out slices {common.fmt(r['psnr_held_out'])} dB)")
    ratio = rows["soft"]["seconds"] / rows["tv"]["seconds"]
    print(f"soft / TV time: x{ratio:.2f}  [target <= 3x: {'met' if ratio <= 3 else 'NOT met'}]")
    info["loadavg_after"] = common.loadavg()
    info["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    result = {"benchmark": "bench_ct_slab", "machine": info, "config": vars(args),
              "slab": {"shape": list(slab.shape), "first_slice": first,
                       "held_out_slices": held}, "methods": rows, "soft_over_tv": ratio}
    common.write_json(args.out, result)
    return result


def summary(seconds, psnrs, held, n):
    """Seconds, per slice, the 300-slice extrapolation and PSNRs of one method."""
    per = seconds / n
    return {"seconds": seconds, "seconds_per_slice": per,
            "volume_300_seconds": per * VOLUME_SLICES,
            "volume_300_hours": per * VOLUME_SLICES / 3600.0,
            "psnr_mean": float(np.mean(psnrs)), "psnr_slices": psnrs,
            "psnr_held_out": float(np.mean([psnrs[i] for i in held])) if held else None}


def parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--depth", type=int, default=64)
    p.add_argument("--chunk", type=int, default=16,
                   help="slices per 3D problem (one generator batch); 64: the slab at once")
    p.add_argument("--angles", type=int, default=60)
    p.add_argument("--noise", type=float, default=0.02, help="x sinogram max")
    p.add_argument("--iterations", type=int, default=50)
    p.add_argument("--tv-lam", type=float, default=150.0)
    p.add_argument("--soft-lam", type=float, default=10000.0)
    p.add_argument("--inner-iterations", type=int, default=3)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                   help="projector (ASTRA) and generator (torch) device")
    p.add_argument("--precision", default="float32", choices=("float32", "bfloat16", "float16"))
    p.add_argument("--quick", action="store_true", help="tiny configuration (smoke test)")
    common.common_arguments(p, "bench_ct_slab")
    p.set_defaults(model=ct_common.PATCH_MODEL)
    return p


def main(argv=None):
    from cil_genreg.commands.options import check_precision_option
    from cil_genreg.physics.forward import check_backend
    args = parser().parse_args(argv)
    check_backend("astra", args.device)  # --device cuda without a GPU: says to use --device cpu
    check_precision_option(args)
    if args.quick:
        args.size, args.depth, args.chunk, args.iterations = 64, 2, 2, 2
        args.tv_lam, args.soft_lam = 10.0, 1000.0
    return run(args)


if __name__ == "__main__":
    main()
