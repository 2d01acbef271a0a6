"""Shared parts of the benchmarks: the machine report, timing traces, the ratio summary and the
JSON writer (the generator, digits, CT problem and PSNR are the package's).

Run the benchmarks from the repository root, e.g. ``python benchmarks/bench_soft.py``.
"""
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

RESULTS = HERE / "results"
IMAGE_SHAPE = (28, 28)


# -- machine -------------------------------------------------------------------------------
def cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def loadavg():
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def machine_info():
    """Where and with what the figures were measured."""
    import cil
    try:
        import astra
        astra_version = astra.__version__
    except Exception:  # pragma: no cover
        astra_version = None
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "loadavg_1_5_15": loadavg(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cil": getattr(cil, "__version__", None),
        "astra": astra_version,
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }


def print_machine(info):
    print(f"machine: {info['cpu']}, {info['cores']} cores, torch threads "
          f"{info['torch_threads']}, load average {info['loadavg_1_5_15']}")
    print(f"versions: python {info['python']}, torch {info['torch']}, CIL {info['cil']}, "
          f"astra {info['astra']}")


def common_arguments(parser, name):
    parser.add_argument("--model", default="mnist-vae",
                        help="'mnist-vae' (cil_genreg.models.pretrained), a checkpoint path "
                             "(cil_genreg.models.load), or 'untrained' (random weights: smoke "
                             "tests only)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (0: torch's default). Default 1: the batches are "
                             "tiny, and on a loaded machine torch's OpenMP threads spin "
                             "(measured here: a 28x28 decoder pass 0.85 ms with 1 thread, "
                             "75 ms with 2 at load 7)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--digit-seed", type=int, default=None,
                        help="draw the held-out digits with this seed "
                             "(datasets.held_out_digits) instead of taking the first ones: "
                             "digits the benchmark never chose")
    parser.add_argument("--out", default=str(RESULTS / f"{name}.json"),
                        help="where to write the JSON of results ('' for nowhere)")
    return parser


def apply_threads(args):
    if args.threads:
        torch.set_num_threads(args.threads)


# -- generator, digits and the CT problem: the package's ----------------------------------
def load_generator(model="mnist-vae"):
    """(generator module in eval mode, description): a shipped model by name, a checkpoint path,
    or "untrained" (the package's VAE, d = 8, random weights of seed 0: smoke tests only)."""
    from cil_genreg import models
    from cil_genreg.experiments import methods
    if model == "untrained":
        torch.manual_seed(0)
        return (models.build("vae", latent_dim=8, image_shape=IMAGE_SHAPE).eval(),
                "untrained cil_genreg VAE (d = 8, random weights, seed 0)")
    return methods.load_generator(model).eval(), f"cil_genreg.experiments.methods.load_generator({model!r})"


def start(args):
    """What every digit benchmark does first: threads, machine report, model and digits.
    Returns (machine info, generator, model description, images, data description)."""
    apply_threads(args)
    info = machine_info()
    print_machine(info)
    G, model_desc = load_generator(args.model)
    images, data_desc = load_digits(args.digits, getattr(args, "digit_seed", None))
    return info, G, model_desc, images, data_desc


def load_digits(n, seed=None):
    """(n MNIST test digits (n, 28, 28) in [0, 1], description): the split no shipped model has
    seen; the first n, or with ``seed`` n drawn by ``datasets.held_out_digits(n, seed)``."""
    from cil_genreg import datasets
    if seed is not None:
        return (np.ascontiguousarray(datasets.held_out_digits(n, seed)),
                f"cil_genreg.datasets.held_out_digits({n}, seed={seed})")
    images = datasets.mnist(split="test")
    return np.ascontiguousarray(images[:n]), "cil_genreg.datasets.mnist(split='test')"


def ct_problem(image, n_angles=10, noise=0.05, seed=0):
    """(ig, A, x_true, y): parallel beam (:func:`cil_genreg.physics.forward.make_geometry`), Gaussian
    noise of ``noise`` x the sinogram's maximum."""
    from cil_genreg.physics import forward
    ig, ag = forward.make_geometry(image.shape[-1], n_angles, "parallel")
    A = forward.make_projector(ig, ag)
    x_true = ig.allocate(0)
    x_true.fill(np.asarray(image, dtype=np.float32))
    y, _ = forward.add_noise(A.direct(x_true), noise, seed)
    return ig, A, x_true, y


def fbp_start(A, y):
    """The FBP image of ``y`` (ASTRA's CPU FBP), where the demos and users start."""
    from cil_genreg.physics.forward import initial_reconstruction
    return initial_reconstruction(A, y)[0]


def psnr(x, ref):
    """PSNR in dB against ``ref`` (MNIST images lie in [0, 1]): the package's."""
    from cil_genreg.utilities.metrics import psnr as package_psnr
    return package_psnr(x, ref, data_range=1.0)


# -- timing --------------------------------------------------------------------------------
class TraceCallback:
    """A CIL callback recording (seconds since ``start()``, PSNR) after each iteration. The
    seconds exclude the callback's own time (the PSNR computation), so the trace is the time
    the algorithm itself took."""

    def __init__(self, x_true):
        self.x_true = x_true
        self.times, self.psnrs = [], []
        self._t0 = None
        self._overhead = 0.0

    def start(self):
        self._t0 = time.perf_counter()
        self._overhead = 0.0

    def __call__(self, algorithm):
        t = time.perf_counter()
        self.times.append(t - self._t0 - self._overhead)
        self.psnrs.append(psnr(algorithm.solution, self.x_true))
        self._overhead += time.perf_counter() - t


def time_to_reach(times, psnrs, target):
    """First time at which the PSNR trace reaches ``target`` (None if never)."""
    for t, p in zip(times, psnrs):
        if p >= target:
            return t
    return None


def ratio(numerator, denominator):
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def geomean(values):
    values = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    return float(np.exp(np.mean(np.log(values)))) if values else None


def ratio_summary(rows, key, reference):
    """The honest accounting of one comparison, ``rows[i][key]`` against ``rows[i][reference]``.

    Per digit, ``ratio`` = reference time / our time to the reference's final PSNR, None for a
    digit never reached (a *miss*). Returns the mean final PSNR and time, ``reached`` (k/n),
    ``median_misses_zero`` (the median with every miss counted as 0: what the targets use),
    ``geomean_all`` (over all digits, a miss counted at the time ours stopped: reference time /
    our total time), the geometric mean, median and minimum over the digits reached only, the
    oracle geomean, and on how many digits our final objective is below the reference's."""
    ours, refs = [r[key] for r in rows], [r[reference] for r in rows]
    ratios = [o["ratio"] for o in ours]
    reached = [x for x in ratios if x is not None]
    at_stop = [x if x is not None else ratio(f["time"], o["time"])
               for x, o, f in zip(ratios, ours, refs)]
    n = len(rows)
    return {"final_psnr_mean": float(np.mean([o["final_psnr"] for o in ours])),
            "time_mean": float(np.mean([o["time"] for o in ours])),
            "reached": f"{len(reached)}/{n}", "reached_count": len(reached), "digits": n,
            "median_misses_zero": float(np.median([x or 0.0 for x in ratios])) if n else None,
            "geomean_all": geomean(at_stop),
            "geomean_reached": geomean(reached),
            "median_reached": float(np.median(reached)) if reached else None,
            "min_reached": min(reached) if reached else None,
            "oracle_ratio_geomean": geomean([o["oracle_ratio"] for o in ours]),
            "lower_objective": sum(o["final_objective"] < f["final_objective"]
                                   for o, f in zip(ours, refs))}


def print_ratio_summary(label, s, target, min_fraction=0.8):
    """Two lines of :func:`ratio_summary`, with the verdict on the target (median with misses
    as 0 at least ``target``, and at least ``min_fraction`` of the digits reached)."""
    need = int(math.ceil(min_fraction * s["digits"]))
    met = (s["median_misses_zero"] or 0) >= target and s["reached_count"] >= need
    print(f"  {label}: mean final PSNR {s['final_psnr_mean']:.2f} dB, mean time "
          f"{s['time_mean']:.2f} s, final objective below the reference's on "
          f"{s['lower_objective']}/{s['digits']}")
    print(f"    reached {s['reached']}, median (misses = 0) x{fmt(s['median_misses_zero'], '.1f')}"
          f", geomean all digits x{fmt(s['geomean_all'], '.1f')}; on the digits reached: geomean "
          f"x{fmt(s['geomean_reached'], '.1f')}, median x{fmt(s['median_reached'], '.1f')}, min "
          f"x{fmt(s['min_reached'], '.1f')}; oracle x{fmt(s['oracle_ratio_geomean'], '.1f')}  "
          f"[target median >= {target:g}x, >= {need}/{s['digits']} reached: "
          f"{'met' if met else 'NOT met'}]")


def fmt(v, spec=".2f"):
    return "n/a" if v is None else format(v, spec)


def write_json(path, payload):
    if not path:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def clean(o):
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        if isinstance(o, (np.floating, np.integer)):
            o = o.item()
        if isinstance(o, float) and not math.isfinite(o):
            return None
        return o

    path.write_text(json.dumps(clean(payload), indent=1) + "\n")
    print(f"results written to {path}")
