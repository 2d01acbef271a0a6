r"""One process vs N under ``torchrun`` on this machine (gloo on the CPU): training images/s
(VAE, DDP) and slab-parallel reconstruction slices/s (soft regulariser, FISTA).

Each configuration is one ``torchrun --standalone --nproc_per_node N`` run of this file in
``--worker`` mode; rank 0 times, after a barrier, (1) one epoch of VAE training on MNIST-sized
shapes (global batch 64, so N ranks take 64/N images each per step) and (2) the reconstruction
of a (slices, 28, 28) volume of held-out digits from 10 parallel-beam angles, split into N
slabs, with and without the latent chain. Start-up (process launch, imports) is not timed; the
whole command's wall time is reported beside it.

    python benchmarks/bench_distributed.py                 # 1 and 2 processes
    python benchmarks/bench_distributed.py --quick         # smoke sizes
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import common  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    p.add_argument("--train-images", type=int, default=1024)
    p.add_argument("--slices", type=int, default=16)
    p.add_argument("--iterations", type=int, default=30, help="FISTA iterations")
    p.add_argument("--coupling", type=float, default=0.5, help="λ_z of the coupled run")
    p.add_argument("--model", default="mnist-vae")
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--out", default=str(HERE / "results" / "bench_distributed.json"))
    args = p.parse_args(argv)
    if args.quick:
        args.train_images, args.slices, args.iterations = 128, 4, 3
    return args


def worker(args):
    """Under torchrun: time training and reconstruction on rank 0, write its JSON."""
    import numpy as np
    import torch.distributed as dist

    from cil_genreg.utilities import distributed
    from cil_genreg.physics import forward
    from cil_genreg.experiments import methods
    from cil_genreg.utilities import metrics
    from cil_genreg.experiments import slabs
    from cil_genreg.datasets import mnist, shapes
    from cil_genreg.training import train

    ctx = distributed.init("cpu")
    result = {"world_size": ctx.world_size}
    images = shapes(args.train_images, size=28, seed=0)
    sync = dist.barrier if ctx.distributed else (lambda: None)
    sync()
    t0 = time.perf_counter()
    trained = train(data=images, epochs=1, batch_size=64, latent_dim=8, width=8, seed=0,
                    progress=False, threads=1)
    sync()
    result["train_seconds"] = time.perf_counter() - t0
    result["train_images_per_second"] = args.train_images / result["train_seconds"]
    result["train_loss"] = trained.history[-1]["loss"]

    digits = mnist(split="test")[:args.slices]
    ig, ag = forward.make_geometry(28, 10, "parallel", slices=args.slices)
    A = forward.make_projector(ig, ag)
    truth = ig.allocate(None)
    truth.fill(digits)
    y, _ = forward.add_noise(A.direct(truth), 0.05, np.random.default_rng(0))
    generator = methods.load_generator(args.model)
    for coupling in (0.0, args.coupling):
        sync()
        t0 = time.perf_counter()
        volume, _ = slabs.reconstruct_slab("soft", y, ig, 60.0, generator, ctx,
                                           iterations=args.iterations, latent_coupling=coupling,
                                           mu=1e-3, seed=0)
        sync()
        seconds = time.perf_counter() - t0
        key = "independent" if coupling == 0 else "coupled"
        result[f"recon_{key}_seconds"] = seconds
        result[f"recon_{key}_slices_per_second"] = args.slices / seconds
        if ctx.is_main:
            result[f"recon_{key}_psnr"] = metrics.psnr(volume, digits)
    if ctx.is_main:
        with open(args.worker, "w") as f:
            json.dump(result, f)
    distributed.shutdown(ctx)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    info = common.machine_info()
    common.print_machine(info)
    runs = []
    root = HERE.parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    for n in args.processes:
        with tempfile.TemporaryDirectory() as tmp:
            part = os.path.join(tmp, "result.json")
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc_per_node={n}", __file__, "--worker", part,
                   "--train-images", str(args.train_images), "--slices", str(args.slices),
                   "--iterations", str(args.iterations), "--coupling", str(args.coupling),
                   "--model", args.model]
            t0 = time.perf_counter()
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if done.returncode != 0:
                raise RuntimeError(done.stdout[-2000:] + done.stderr[-2000:])
            with open(part) as f:
                run = json.load(f)
        run["command_wall_seconds"] = wall
        runs.append(run)
        print(f"{n} process(es): train {run['train_images_per_second']:.0f} images/s; "
              f"reconstruction {run['recon_independent_slices_per_second']:.2f} slices/s "
              f"(independent, {run['recon_independent_psnr']:.2f} dB), "
              f"{run['recon_coupled_slices_per_second']:.2f} slices/s (coupled λ_z = "
              f"{args.coupling:g}, {run['recon_coupled_psnr']:.2f} dB); whole command "
              f"{wall:.1f} s", flush=True)
    base = runs[0]
    for run in runs[1:]:
        print(f"{run['world_size']} vs {base['world_size']}: training "
              f"{run['train_images_per_second'] / base['train_images_per_second']:.2f}×, "
              f"reconstruction {run['recon_independent_slices_per_second'] / base['recon_independent_slices_per_second']:.2f}× "
              f"(independent), {run['recon_coupled_slices_per_second'] / base['recon_coupled_slices_per_second']:.2f}× (coupled)")
    payload = {"machine": info, "args": {k: v for k, v in vars(args).items() if k != "worker"},
               "runs": runs}
    common.write_json(args.out, payload)
    return payload


if __name__ == "__main__":
    main()
