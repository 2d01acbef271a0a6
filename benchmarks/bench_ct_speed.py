r"""Speed at CT scale: soft vs CIL's TV on one held-out chest slice, side by side.

Per image side (default 512² and 128²): a held-out axial slice of the chest CT
(``datasets.ct_slices("chest", "test")``, index ``--slice``), parallel beam of ``--angles``
(60) over 180°, Gaussian noise of ``--noise`` (2 %) of the sinogram's maximum, both methods
started from the FBP image (not timed) and run for the same FISTA iterations through
:func:`cil_genreg.experiments.methods.reconstruct`:

* **TV**: CIL's ``TotalVariation`` (10 warm-started inner iterations), over its λ grid;
* **soft**: ``SoftGenerativeRegulariser`` (μ = 1e-3) with ``ct-vae-128`` at 128² and
  ``ct-patch-vae-64`` run whole at other sides, over its λ grid, once per *variant*: the
  regulariser options named by ``--variants`` (:data:`VARIANTS`) and ``--extra-variants``
  (JSON {name: options}). ``demo`` (the CT demo's 3 inner iterations per proximal map,
  "today's soft") is the reference of the PSNR targets.

Each method and variant is reported at its best λ of the grid (time of that run, PSNR), and
the verdicts are counted: at 512², soft's time ≤ 3 × TV's and PSNR within 0.2 dB of
``demo``'s; at 128², one soft reconstruction ≤ 3 s at a PSNR within 0.2 dB of ``demo``'s.

    python benchmarks/bench_ct_speed.py                                  # 512² (50 its), 128² (100 its)
    python benchmarks/bench_ct_speed.py --sizes 128 --iterations 100 --threads 0
    python benchmarks/bench_ct_speed.py --variants demo inner2 schedule encoder bfloat16
    python benchmarks/bench_ct_speed.py --extra-variants '{"sched": {"inner_schedule": [1, 2, 10]}}'
    python benchmarks/bench_ct_speed.py --quick                          # smoke: 64² and 128², 3 its
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import ct_common  # noqa: E402

#: the soft variants (regulariser options): the CT demo's settings ("today's soft", the PSNR
#: reference), fewer inner iterations per proximal map (the preliminary measurements' lever),
#: an inner schedule, the encoder's start, bfloat16, and what ``methods.reconstruct`` gives
#: without options
VARIANTS = {"demo": dict(ct_common.DEMO_INNER), "inner2": {"max_iteration": 2},
            "inner1": {"max_iteration": 1}, "schedule": {"inner_schedule": (1, 3, 25)},
            "encoder": {"max_iteration": 2, "latent_start": "warm+encoder"},
            "bfloat16": {"max_iteration": 2, "precision": "bfloat16"},
            "reconstruct-defaults": {}}
DEFAULT_VARIANTS = ("demo", "inner2", "inner1", "reconstruct-defaults")
ITERATIONS = {512: 50, 128: 100}
TARGETS = {512: "soft time <= 3 x TV's, PSNR within 0.2 dB of demo's",
           128: "soft time <= 3 s, PSNR within 0.2 dB of demo's"}


def one_size(size, args):
    """TV and every soft variant at one side: rows, best λ, verdicts."""
    from cil_genreg.experiments import methods
    iterations = args.iterations or ITERATIONS.get(size, 50)
    image = ct_common.held_out_slice(size, args.slice)
    ig, A, x_true, y = common.ct_problem(image, args.angles, args.noise, seed=args.seed)
    x0 = common.fbp_start(A, y)
    name = ct_common.model_for(size, args.model)
    G = methods.load_generator(name)
    tv_lams = args.tv_lambdas or ct_common.grid_for(ct_common.TV_LAMBDAS, size)
    soft_lams = args.soft_lambdas or ct_common.grid_for(ct_common.SOFT_LAMBDAS, size)
    problem = (A, y, None, x0, iterations, x_true)
    for method, lam, model in (("tv", tv_lams[0], None), ("soft", soft_lams[0], G)):
        ct_common.timed(method, A, y, lam, model, x0, 1, x_true)  # first calls, not timed
    tv_rows, tv = ct_common.best_of("tv", tv_lams, *problem)
    print(f"{size}²: {iterations} FISTA iterations, model {name}; FBP PSNR "
          f"{common.psnr(x0, x_true):.2f} dB")
    print(f"  TV   best λ {tv['lam']:g}: {tv['seconds']:.2f} s, {tv['psnr']:.2f} dB")
    soft = {}
    for variant, options in args.variants.items():
        options = dict(options)
        its = int(options.pop("iterations", iterations))
        rows, best = ct_common.best_of("soft", soft_lams, A, y, G, x0, its, x_true,
                                       mu=ct_common.SOFT_MU, **options)
        best = dict(best, iterations=its)
        soft[variant] = {"options": options, "rows": rows, "best": best,
                         "ratio_to_tv": best["seconds"] / tv["seconds"]}
        print(f"  soft {variant:<22} best λ {best['lam']:g}, {its} its: {best['seconds']:.2f} s "
              f"(x{best['seconds'] / tv['seconds']:.1f} TV), {best['psnr']:.2f} dB")
    return {"size": size, "iterations": iterations, "model": name,
            "fbp_psnr": common.psnr(x0, x_true), "tv": {"rows": tv_rows, "best": tv},
            "soft": soft, "verdicts": verdicts(size, tv, soft)}


def verdicts(size, tv, soft):
    """Per soft variant: the target of ``size`` met or missed (against variant ``demo``)."""
    reference = soft.get("demo", next(iter(soft.values())))["best"]["psnr"]
    out = {}
    for variant, s in soft.items():
        b = s["best"]
        fast = b["seconds"] <= (3.0 * tv["seconds"] if size >= 256 else 3.0)
        out[variant] = {"fast": fast, "psnr_kept": b["psnr"] >= reference - 0.2,
                        "met": fast and b["psnr"] >= reference - 0.2}
        print(f"  [{size}² {variant}: {TARGETS.get(size, TARGETS[128])}: "
              f"{'met' if out[variant]['met'] else 'NOT met'}]")
    return out


def run(args):
    common.apply_threads(args)
    info = common.machine_info()
    common.print_machine(info)
    results = [one_size(size, args) for size in args.sizes]
    misses = sum(not v["met"] for r in results for v in r["verdicts"].values())
    print(f"misses: {misses} of {sum(len(r['verdicts']) for r in results)} verdicts")
    info["loadavg_after"] = common.loadavg()
    result = {"benchmark": "bench_ct_speed", "machine": info, "config": vars(args),
              "sizes": results, "misses": misses}
    common.write_json(args.out, result)
    return result


def parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 128])
    p.add_argument("--iterations", type=int, default=None,
                   help="FISTA iterations of every run (default 50 at 512², 100 at 128²)")
    p.add_argument("--slice", type=int, default=0, help="index of the held-out slice")
    p.add_argument("--angles", type=int, default=60)
    p.add_argument("--noise", type=float, default=0.02, help="x sinogram max")
    p.add_argument("--tv-lambdas", type=float, nargs="+", default=None)
    p.add_argument("--soft-lambdas", type=float, nargs="+", default=None)
    p.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS),
                   choices=sorted(VARIANTS), help="the soft variants to run (VARIANTS)")
    p.add_argument("--extra-variants", type=json.loads, default=None,
                   help="JSON {name: regulariser options} of more soft variants; an "
                   "'iterations' key runs that variant for other FISTA iterations than TV's")
    p.add_argument("--quick", action="store_true", help="tiny configuration (smoke test)")
    common.common_arguments(p, "bench_ct_speed")
    p.set_defaults(model=None)
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    args.variants = {**{v: VARIANTS[v] for v in args.variants}, **(args.extra_variants or {})}
    if args.quick:
        args.sizes, args.iterations = [64, 128], 3
        args.variants = {k: args.variants[k] for k in list(args.variants)[:2]}
        args.tv_lambdas, args.soft_lambdas = args.tv_lambdas or [10.0], args.soft_lambdas or [1000.0]
    return run(args)


if __name__ == "__main__":
    main()
