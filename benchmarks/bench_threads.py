r"""One pass of a latent step through the generator, one thread against all, by batch size.

A latent step is forward and backward passes of ``G`` on a batch of latents: a single image
(a 2D reconstruction), a volume's slices (all through ``G`` at once) or restarts. On a small
batch torch's threads synchronise more than they compute; on a large one they split the work.
For each model and batch size this times ``G(z)`` plus the backward pass of ``||G(z) - x||^2``
with 1 thread and with ``--threads`` (default: all cores), alternating the two, and prints the
ratio of the medians, with the output pixels of the batch: ``GeneratorAdapter(threads="auto")``
switches from one thread to torch's setting at ``AUTO_THREADS_PIXELS`` output pixels
(cil_genreg/latent/generator.py), and this benchmark is where that number comes from.

    python benchmarks/bench_threads.py
    python benchmarks/bench_threads.py --quick
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

MODELS = ("mnist-vae", "shapes-vae", "ct-vae-128")
BATCHES = (1, 2, 4, 8, 16, 32, 64)


def one_pass(G, z, x):
    zz = z.clone().requires_grad_(True)
    (G(zz) - x).square().sum().backward()
    return zz.grad


def median_seconds(G, z, x, threads, repeats):
    torch.set_num_threads(threads)
    one_pass(G, z, x)  # warm up this thread count
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        one_pass(G, z, x)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--batches", nargs="+", type=int, default=list(BATCHES))
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="the many-thread side (default: all cores)")
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--quick", action="store_true", help="one model, batches 1 and 8, 3 repeats")
    p.add_argument("--out", default=str(common.RESULTS / "bench_threads.json"))
    args = p.parse_args(argv)
    if args.quick:
        args.models, args.batches, args.repeats = args.models[:1], [1, 8], 3
    from cil_genreg.latent.generator import AUTO_THREADS_PIXELS
    info = common.machine_info()
    common.print_machine(info)
    print(f"1 thread vs {args.threads}; median of {args.repeats} alternating runs of one "
          "forward + backward pass; ratio > 1: the threads are faster; "
          f"AUTO_THREADS_PIXELS = {AUTO_THREADS_PIXELS}")
    print(f"{'model':12s} {'batch':>5s} {'pixels':>8s} {'1 thread ms':>12s} "
          f"{f'{args.threads} threads ms':>13s} {'ratio':>6s}  auto picks")
    rows = []
    torch.manual_seed(0)
    for name in args.models:
        G, _ = common.load_generator(name)
        G = G.eval()
        for p_ in G.parameters():
            p_.requires_grad_(False)
        h, w = G.image_shape
        for b in args.batches:
            z = torch.randn(b, G.latent_dim)
            x = torch.rand(b, 1, h, w)
            one = median_seconds(G, z, x, 1, args.repeats)
            many = median_seconds(G, z, x, args.threads, args.repeats)
            pixels = b * h * w
            auto = "all" if pixels >= AUTO_THREADS_PIXELS else "1"
            rows.append({"model": name, "batch": b, "pixels": pixels, "one_thread_s": one,
                         "many_threads_s": many, "ratio": one / many, "auto": auto})
            print(f"{name:12s} {b:5d} {pixels:8d} {1e3 * one:12.2f} {1e3 * many:13.2f} "
                  f"{one / many:6.2f}  {auto}", flush=True)
    info["loadavg_after"] = common.loadavg()
    if args.out:
        common.write_json(args.out, {"benchmark": "bench_threads", "machine": info,
                                     "threads": args.threads, "rows": rows})
    return rows


if __name__ == "__main__":
    main()
