r"""A 3D volume through a 2D prior: one batch through G vs a loop over the slices.

A (64, 28, 28) volume of held-out MNIST digits plus Gaussian noise (what an outer iteration
would hand to the proximal map). ``SoftGenerativeRegulariser.proximal`` on the whole
ImageData (all slices one batch through the generator, the batched L-BFGS keeping each slice's
problem separate) against a loop calling it on each slice as a 2D ImageData (warm start reset
before each slice, so both solve the same problems from the same starts). Reports time per
slice, the ratio, the max abs difference of the results, and peak memory (a subprocess per
mode: its peak RSS above the RSS after the setup, minus that of a subprocess that does nothing
after the setup).

    python benchmarks/bench_volume.py
    python benchmarks/bench_volume.py --slices 4 --quick
"""
import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def setup(args):
    from cil.framework import ImageGeometry
    common.apply_threads(args)
    G, model_desc = common.load_generator(args.model)
    images, data_desc = common.load_digits(args.slices)
    rng = np.random.default_rng(args.seed)
    noisy = (images + args.noise * rng.standard_normal(images.shape)).astype(np.float32)
    ig3 = ImageGeometry(voxel_num_x=28, voxel_num_y=28, voxel_num_z=len(images))
    ig2 = ImageGeometry(voxel_num_x=28, voxel_num_y=28)
    vol = ig3.allocate(0)
    vol.fill(noisy)
    slices = []
    for s in noisy:
        x = ig2.allocate(0)
        x.fill(s)
        slices.append(x)
    return G, vol, slices, model_desc, data_desc


def regulariser(G, args):
    from cil_genreg import SoftGenerativeRegulariser
    # one exact prox per call (adaptive_tolerance would make a first prox an inexact one)
    return SoftGenerativeRegulariser(G, mu=args.mu, max_iteration=args.inner_max_iter,
                                     tolerance=args.inner_tol, adaptive_tolerance=False)


def batched(G, vol, args):
    R = regulariser(G, args)
    t = time.perf_counter()
    out = R.proximal(vol, args.tau)
    return time.perf_counter() - t, out.as_array().copy(), R.stats.as_dict()


def looped(G, slices, args):
    R = regulariser(G, args)
    results = []
    t = time.perf_counter()
    for x in slices:
        R.reset()
        results.append(R.proximal(x, args.tau).as_array())
    return time.perf_counter() - t, np.stack(results), R.stats.as_dict()


def _status_kb(field):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def child(args):
    """One mode in a fresh process: its peak resident memory above the set-up process.

    On Linux the peak (VmHWM) is reset to the current RSS after the setup (writing 5 to
    /proc/self/clear_refs), so that the transient peak of importing torch/CIL and loading the
    data does not hide the run's own; elsewhere ru_maxrss of the whole process."""
    import gc
    G, vol, slices, _, _ = setup(args)
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        base = _status_kb("VmRSS")
        reset = True
    except OSError:
        base, reset = 0, False
    if args.child == "batched":
        batched(G, vol, args)
    elif args.child == "loop":
        looped(G, slices, args)
    peak = _status_kb("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_kb": peak - base, "base_kb": base, "reset": reset}))


def memory(argv_base):
    rss = {}
    for mode in ("none", "batched", "loop"):
        out = subprocess.run([sys.executable, __file__, *argv_base, "--child", mode, "--out", ""],
                             capture_output=True, text=True, check=True).stdout
        rss[mode] = json.loads(out.strip().splitlines()[-1])
    return rss


def run(args, argv):
    info = common.machine_info()
    G, vol, slices, model_desc, data_desc = setup(args)
    info["torch_threads"] = common.torch.get_num_threads()
    common.print_machine(info)
    n = len(slices)
    print(f"model: {model_desc}; data: {data_desc}; volume {vol.shape}, noise {args.noise}, "
          f"tau={args.tau}, mu={args.mu}; {args.repeats} repeats, modes alternating")
    batched(G, vol, args), looped(G, slices[:2], args)  # warm up (allocators, first calls)
    tb, tl = [], []
    for _ in range(args.repeats):
        t, xb, stats_b = batched(G, vol, args)
        tb.append(t)
        t, xl, stats_l = looped(G, slices, args)
        tl.append(t)
    diff = float(np.abs(xb - xl).max())
    per_b, per_l = statistics.median(tb) / n, statistics.median(tl) / n
    speedup = per_l / per_b
    if args.skip_memory:
        mem = {"baseline_mb": float("nan"), "batched_peak_mb": float("nan"),
               "loop_peak_mb": float("nan")}
    else:
        rss = memory(argv)
        mb = {k: v["peak_kb"] / 1024.0 for k, v in rss.items()}
        mem = {"baseline_mb": rss["none"]["base_kb"] / 1024.0,
               "batched_peak_mb": mb["batched"] - mb["none"],
               "loop_peak_mb": mb["loop"] - mb["none"],
               "method": "VmHWM reset after setup" if rss["none"]["reset"] else "ru_maxrss"}
    print(f"batched: {1e3 * per_b:.2f} ms per slice (median of {args.repeats}: "
          f"{[round(t, 3) for t in tb]} s for {n}); inner iterations {stats_b['iterations']}, "
          f"generator calls {stats_b['generator_calls']}")
    print(f"loop:    {1e3 * per_l:.2f} ms per slice ({[round(t, 3) for t in tl]} s); inner "
          f"iterations {stats_l['iterations']}, generator calls {stats_l['generator_calls']}")
    print(f"batched is x{speedup:.1f} faster per slice  [target >= 4x: "
          f"{'met' if speedup >= 4 else 'NOT met'}]; max |batched - loop| = {diff:.2e}")
    print(f"peak memory above setup (subprocess per mode, {mem.get('method')}; setup RSS "
          f"{mem['baseline_mb']:.0f} MB): batched {mem['batched_peak_mb']:.1f} MB, loop "
          f"{mem['loop_peak_mb']:.1f} MB")
    info["loadavg_after"] = common.loadavg()
    result = {"benchmark": "bench_volume", "machine": info, "model": model_desc,
              "data": data_desc, "config": {k: v for k, v in vars(args).items()},
              "slices": n, "batched_seconds": tb, "loop_seconds": tl,
              "batched_ms_per_slice": 1e3 * per_b, "loop_ms_per_slice": 1e3 * per_l,
              "speedup": speedup, "max_abs_difference": diff, "memory": mem,
              "batched_stats": stats_b, "loop_stats": stats_l}
    common.write_json(args.out, result)
    return result


def parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--slices", type=int, default=64)
    p.add_argument("--noise", type=float, default=0.1, help="std of the noise added to digits")
    p.add_argument("--tau", type=float, default=0.1, help="prox step")
    p.add_argument("--mu", type=float, default=0.01)
    p.add_argument("--inner-max-iter", type=int, default=50)
    p.add_argument("--inner-tol", type=float, default=1e-6)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="tiny configuration (smoke test)")
    p.add_argument("--skip-memory", action="store_true",
                   help="no subprocesses measuring peak memory")
    p.add_argument("--child", choices=("none", "batched", "loop"), help=argparse.SUPPRESS)
    common.common_arguments(p, "bench_volume")
    return p


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    if args.quick:
        args.repeats, args.inner_max_iter = 1, 10
    if args.child:
        return child(args)
    return run(args, argv)


if __name__ == "__main__":
    main()
