"""The comparison harness: reconstruct a set of images by each method over its λ grid, choose λ
by the discrepancy principle (no ground truth), once for the whole set ("fixed") and per image
against the truth ("best", an oracle), and summarise PSNR / SSIM and the fine-detail scores
(HFEN, lower is better; SSIM inside the truth's lungs, NaN where it has none) per method and
choice. λ is chosen by PSNR only ("best" is the best PSNR): the detail scores are reported,
not optimised.
"""
import json
import os

import numpy as np

from ..datasets import held_out_digits
from ..physics.forward import initial_reconstruction, make_geometry, make_projector
from ..physics.measurement import GaussianMeasurement, for_images
from ..physics.weights import DATA_TERMS
from .methods import (ALL_METHODS, HYBRID_TV_FRACTION, METHODS, MU, NO_LAMBDA, lambda_grids,
                      load_generator, reconstruct)
from ..utilities.metrics import hfen, lung_mask, masked_ssim, psnr, ssim
from ..utilities.output_safety import check_output_files
from .parameter_choice import discrepancy_principle
from .reports import GEOMETRY_TITLES, comparison_figure, format_table, save_results

CHOICES = ("initial", "discrepancy", "fixed", "best")
STARTS = ("fbp", "tv")
SOFT_OVER_TV_TARGET = {10: 2.0, 30: 0.5}  # dB by which soft should beat TV (both at best λ)


#: the methods whose generative regulariser takes ``regulariser_options``
REGULARISERS = ("soft", "sparse", "range", "hybrid", "soft-structured")


def compare(images, generator, angles=10, geometry="parallel", noise=0.05, methods=METHODS,
            lambdas=None, iterations=100, backend="astra", device="cpu", seed=0,
            progress=True, mu=None, tv_per_slice=False, start_from="tv", limited_span=90,
            regulariser_options=None, measurement=None, size=None, denoiser=None,
            postprocessor=None, data_term="ls"):
    """Reconstruct each image by each method over its λ grid; keep, per method, the λ of the
    discrepancy principle and the best λ against the ground truth.

    ``images`` is a stack (N, H, W) of 2D problems, or (N, slices, H, W) of 3D parallel-beam
    volumes (each regularised slice by slice through the generator, in one batch). ``mu``
    overrides :data:`MU` per method (e.g. ``{"soft": 1e-2}``). ``start_from``: the start of
    the generative methods, "tv" (default: the TV image at the λ the discrepancy principle
    chose, no ground truth used; TV at the middle of its grid when "tv" is not among the
    methods; its encoding for the latent method) or "fbp" (the initial reconstruction);
    docs/results.md compares the two starts. ``regulariser_options``: keyword arguments of the
    generative regularisers (soft, sparse, range, hybrid), e.g. ``{"max_iteration": 3}``.
    ``measurement``: how a truth becomes data (:mod:`cil_genreg.physics.measurement`): default
    :class:`~cil_genreg.physics.measurement.GaussianMeasurement` of level ``noise`` (the inverse
    crime); a :class:`~cil_genreg.physics.measurement.ScannerMeasurement` takes native images
    (e.g. 512²) and reconstructs them at ``size`` (e.g. 128), scored against the truth's block
    mean at that size. ``denoiser``, ``postprocessor``: the models of "pnp" and "dpir" (each
    over its λ grid, from the same start as the generative methods) and "postprocess" (one run on the FBP
    image, no λ; it warns on a geometry or measurement it was not trained for). ``data_term``:
    ``"ls"`` (default) :math:`\\|Ax - y\\|^2`, or ``"weighted"`` :math:`\\|Ax - y\\|_W^2` with the
    Poisson weights of the scan's counts (:mod:`cil_genreg.physics.weights`; a scanner
    measurement only), the discrepancy principle then on the weighted residual with
    :math:`\\sigma_W`; dpir, whose half-quadratic step is unweighted, is refused with it.

    Returns
    -------
    dict with ``rows`` (one per image × method × choice: image, angles, geometry, method,
    choice ("discrepancy" or "best"), lam, psnr, ssim, hfen, lung_ssim: see :func:`scores`),
    ``summary`` (their means per method and choice) and ``examples`` (the first image's truth, data and reconstructions, for the
    figure).
    """
    from tqdm.auto import tqdm
    lambdas = dict(lambda_grids(), **(lambdas or {}))
    if start_from not in STARTS:
        raise ValueError(f"start_from must be one of {STARTS}, got {start_from!r}")
    check_data_term(data_term, methods)
    order = {m: i for i, m in enumerate(ALL_METHODS)}
    methods = sorted(methods, key=lambda m: order.get(m, 99))  # fbp, tv first
    rng = np.random.default_rng(seed)
    images = np.asarray(images)
    measurement, size = for_images(images, measurement, noise, size, made="a reconstruction of")
    ig, ag = make_geometry(size, angles, geometry,
                           slices=images.shape[1] if images.ndim == 4 else None,
                           limited_span=limited_span)
    A = make_projector(ig, ag, backend, device, kernel=measurement.kernel)
    gen_opts = {} if device == "cpu" else {"device": device}
    mu = dict(MU, **(mu or {}))
    rows, examples, grid = [], None, []
    work = [(k, m) for k in range(len(images)) for m in methods]
    bar = tqdm(total=sum(1 if m in NO_LAMBDA else len(lambdas[m]) for _, m in work),
               desc=f"{geometry} {angles} angles", disable=not progress)
    options = {"iterations": iterations, "tv_per_slice": tv_per_slice, "mu": mu,
               "start_from": start_from, "generator_options": gen_opts,
               "regulariser_options": dict(regulariser_options or {}),
               "models": {"generator": generator, "denoiser": denoiser,
                          "postprocessor": postprocessor}, "measurement": measurement}
    for k, image in enumerate(images):
        measured = measurement.measure(image, A, rng)
        y, truth = measured.data, measured.truth
        options["weights"], sigma = measured.data_term(data_term)
        x0, x0_label = initial_reconstruction(A, y, backend, device)
        recons, found = _each_method(A, y, sigma, x0, truth, methods, lambdas, options,
                                     bar.update)
        grid += [dict(image=k, **row) for row in found]
        mask = lung_mask(truth)
        for key, (choice, lam, x) in recons.items():
            rows.append({"image": k, "angles": angles, "geometry": geometry,
                         "method": key.rstrip("*") if key != "fbp" else x0_label.lower(),
                         "choice": choice, "lam": lam, **scores(x, truth, mask)})
        if examples is None:
            examples = {"truth": truth.as_array().copy(), "data": y.as_array().copy(),
                        "recons": {key: x.as_array().copy() for key, (_, _, x) in recons.items()},
                        "initial_label": x0_label}
    bar.close()
    rows += _fixed_lambda_rows(grid, angles, geometry)
    return {"rows": rows, "summary": summarise(rows), "examples": examples, "grid": grid}


def _each_method(A, y, sigma, x0, truth, methods, lambdas, options, tick):
    """Every method over its λ grid on one image. Returns the reconstructions by key (method:
    the discrepancy principle's λ; method + "*": the best λ against the truth; "fbp" and
    "postprocess": their one run, choice "initial") as (choice, λ, image), and one row
    (method, lam, psnr, ssim) per run."""
    recons, grid = {}, []
    start, tv_start = x0, None
    mask = lung_mask(truth)
    iterations, tv_per_slice = options["iterations"], options["tv_per_slice"]
    weights = options.get("weights")
    for method in methods:
        if method in NO_LAMBDA:
            recons[method] = ("initial", None, x0 if method == "fbp" else reconstruct(
                method, A, y, None, x0=x0, measurement=options["measurement"],
                **options["models"]))
            tick()
            continue
        if method != "tv" and start is x0 and options["start_from"] == "tv":
            start = tv_start if tv_start is not None else reconstruct(
                "tv", A, y, lambdas["tv"][len(lambdas["tv"]) // 2], x0=x0,
                iterations=iterations, tv_per_slice=tv_per_slice, weights=weights)
        found = {}
        tv_lam = recons["tv"][1] if "tv" in recons else lambdas["tv"][len(lambdas["tv"]) // 2]
        extra = {"lam_tv": HYBRID_TV_FRACTION * tv_lam} if method == "hybrid" else {}

        def run(lam, method=method, extra=extra):
            x = reconstruct(method, A, y, lam, x0=x0 if method == "tv" else start,
                            iterations=iterations, **options["models"], weights=weights,
                            mu=options["mu"].get(method), tv_per_slice=tv_per_slice, **extra,
                            **(options["generator_options"] if method != "tv" else {}),
                            **(options["regulariser_options"] if method in REGULARISERS else {}))
            found[lam] = x
            tick()
            return x

        choice = discrepancy_principle(run, A, y, sigma, lambdas[method], weights=weights)
        for lam in lambdas[method]:  # the rest of the grid, for the best against truth
            if lam not in found:
                run(lam)
        for lam, x in found.items():
            grid.append({"method": method, "lam": lam, **scores(x, truth, mask)})
        best = max(found, key=lambda lam: psnr(found[lam], truth))
        recons[method] = ("discrepancy", choice.lam, choice.x)
        recons[method + "*"] = ("best", best, found[best])
        if method == "tv":
            tv_start = choice.x  # TV at the discrepancy principle's λ: no ground truth
    return recons, grid


def check_data_term(data_term, methods=()):
    """``data_term`` refused unless one of :data:`~cil_genreg.physics.weights.DATA_TERMS`, and
    ``"weighted"`` with a method that has no weighted data term (dpir)."""
    if data_term not in DATA_TERMS:
        raise ValueError(f"data_term must be one of {DATA_TERMS}, got {data_term!r}")
    if data_term == "weighted" and "dpir" in methods:
        raise ValueError("dpir has no weighted data term (its half-quadratic step solves the "
                         "unweighted normal equations): leave it out or use data term 'ls'")


def _fixed_lambda_rows(grid, angles, geometry):
    """Rows of choice "fixed": per method, the one λ of the grid with the best mean PSNR over
    all images (as a user tuning λ once for a data set would), applied to every image."""
    rows = []
    for method in dict.fromkeys(g["method"] for g in grid):
        mine = [g for g in grid if g["method"] == method]
        lams = sorted({g["lam"] for g in mine})
        best = max(lams, key=lambda lam: np.mean([g["psnr"] for g in mine if g["lam"] == lam]))
        rows += [{"image": g["image"], "angles": angles, "geometry": geometry, "method": method,
                  "choice": "fixed", "lam": best, **{k: g[k] for k in SCORES}}
                 for g in mine if g["lam"] == best]
    return rows


#: the scores of every row of a comparison (:func:`scores`)
SCORES = ("psnr", "ssim", "hfen", "lung_ssim")


def scores(x, truth, mask=None):
    """The scores of one reconstruction: PSNR and SSIM (higher is better), HFEN (the relative
    error of the fine detail, :func:`~cil_genreg.utilities.metrics.hfen`: lower is better) and
    SSIM inside the truth's lungs (``mask``, its
    :func:`~cil_genreg.utilities.metrics.lung_mask`; NaN when there are none, e.g. MNIST).

    Parameters
    ----------
    x, truth : DataContainer or numpy.ndarray
    mask : numpy.ndarray of bool, optional

    Returns
    -------
    dict
        ``{"psnr", "ssim", "hfen", "lung_ssim"}``.
    """
    return {"psnr": psnr(x, truth), "ssim": ssim(x, truth), "hfen": hfen(x, truth),
            "lung_ssim": masked_ssim(x, truth, mask)}


def summarise(rows):
    """Mean scores (:data:`SCORES`; the lung SSIM over the images that have lungs, NaN when
    none has) per (geometry, angles, method, choice), in the order of
    :data:`METHODS` and of the choices "initial", "discrepancy" (λ by the discrepancy principle,
    per image), "fixed" (the one λ best on average over the images) and "best" (λ best
    against the truth, per image: an oracle)."""
    groups = {}
    for r in rows:
        groups.setdefault((r["geometry"], r["angles"], r["method"], r["choice"]), []).append(r)
    order = {m: i for i, m in enumerate(("fbp", "cgls") + ALL_METHODS[1:])}
    choices = {c: i for i, c in enumerate(CHOICES)}
    keys = sorted(groups, key=lambda k: (str(k[0]), k[1], order.get(k[2], 99),
                                         choices.get(k[3], 99)))
    return [{"geometry": g, "angles": a, "method": m, "choice": c, "images": len(rs),
             **{k: _mean([r.get(k, np.nan) for r in rs]) for k in SCORES},
             "lam": (float(np.median([r["lam"] for r in rs])) if rs[0]["lam"] is not None
                     else None)}
            for (g, a, m, c), rs in ((k, groups[k]) for k in keys)]


def _mean(values):
    """The mean of the finite values (NaN when there are none)."""
    values = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


def mnist_comparison(n=20, angles=(10, 30), geometries=("parallel",), noise=0.05,
                     iterations=100, methods=METHODS, model="mnist-vae", lambdas=None,
                     out=os.path.join("outputs", "mnist"), backend="astra", device="cpu",
                     seed=0, progress=True, echo=print, start_from="tv", overwrite=False,
                     latent_prior="auto", regulariser_options=None):
    """The comparison on held-out MNIST digits, for each geometry and angle count:
    tables (``mnist_GEOMETRY_ANGLES.csv/.json``), figures (``.png``) and ``summary.json`` in
    ``out``; the tables and soft's margin over TV are printed. Returns the summary rows.
    ``latent_prior``: see :func:`cil_genreg.experiments.methods.load_generator`;
    ``regulariser_options``: see :func:`compare`."""
    return run_comparison(held_out_digits(n, seed), load_generator(model, latent_prior), "mnist",
                          angles=angles, geometries=geometries, noise=noise,
                          iterations=iterations, methods=methods, lambdas=lambdas, out=out,
                          backend=backend, device=device, seed=seed, progress=progress,
                          echo=echo, meta={"model": model, "data": "MNIST test split",
                                           "start": start_from},
                          targets=SOFT_OVER_TV_TARGET, start_from=start_from, title="MNIST",
                          overwrite=overwrite, regulariser_options=regulariser_options)


def run_comparison(images, generator, name, angles=(10, 30), geometries=("parallel",),
                   noise=0.05, iterations=100, methods=METHODS, lambdas=None, out="outputs",
                   backend="astra", device="cpu", seed=0, progress=True, echo=print,
                   meta=None, targets=None, title=None, mu=None, start_from="tv",
                   overwrite=False, limited_span=90, regulariser_options=None,
                   measurement=None, size=None, denoiser=None, postprocessor=None,
                   data_term="ls"):
    """:func:`compare` for each geometry and angle count, with the outputs: tables
    (``NAME_GEOMETRY_ANGLES.csv/.json``), figures (``.png``) and ``summary.json`` in ``out``;
    the tables and soft's margin over TV are printed (``targets``: angles → dB soft should
    beat TV by, in parallel beam); ``measurement``, ``size``, ``denoiser``,
    ``postprocessor`` and ``data_term``: see :func:`compare`. Existing
    outputs of the same name in ``out`` are refused,
    before anything runs, unless ``overwrite``. Returns the summary rows."""
    check_data_term(data_term, methods)
    check_output_files(out, output_names(name, geometries, angles) + ["summary.json"],
                       overwrite=overwrite)
    summary = []
    label = title or name
    measurement = measurement or GaussianMeasurement(noise)
    for geometry in geometries:
        for count in angles:
            results = compare(images, generator, angles=count, geometry=geometry, noise=noise,
                              methods=methods, lambdas=lambdas, iterations=iterations,
                              backend=backend, device=device, seed=seed, progress=progress,
                              mu=mu, start_from=start_from, limited_span=limited_span,
                              regulariser_options=regulariser_options,
                              measurement=measurement, size=size, denoiser=denoiser,
                              postprocessor=postprocessor, data_term=data_term)
            stem = f"{name}_{geometry}_{count}"
            save_results(results, out, stem)
            where = GEOMETRY_TITLES.get(geometry, geometry).replace("90°", f"{limited_span:g}°")
            comparison_figure(results["examples"], os.path.join(out, stem + ".png"),
                              f"{label}, {where}, {count} angles, {measurement.describe()}"
                              + (", weighted data term" if data_term == "weighted" else ""))
            echo(f"\n{len(images)} held-out {label} images, {geometry}, {count} angles:")
            echo(format_table(results["summary"]))
            margin = soft_over_tv(results["summary"])
            if margin is not None:
                target = (targets or {}).get(count)
                verdict = "" if target is None or geometry != "parallel" else \
                    f" (target ≥ +{target:.1f} dB: {'met' if margin >= target else 'NOT met'})"
                echo(f"soft − TV (best λ per image, each) = {margin:+.2f} dB{verdict}")
                fixed = soft_over_tv(results["summary"], "fixed")
                echo(f"soft − TV (one λ for all images, each) = {fixed:+.2f} dB")
            summary += results["summary"]
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(dict(meta or {}, n=len(images), noise=noise, iterations=iterations, seed=seed,
                       physics=measurement.describe(), data_term=data_term,
                       summary=summary), f, indent=1)
    echo(f"\ntables, figures and summary.json written to {out}")
    return summary


def output_names(name, geometries, angles, kinds=(".csv", ".json", ".png")):
    """The files :func:`run_comparison` (and the demos) write per geometry and angle count:
    ``NAME_GEOMETRY_ANGLES.csv/.json/.png``."""
    return [f"{name}_{g}_{a}{kind}" for g in geometries for a in angles for kind in kinds]


def soft_over_tv(summary, choice="best", method="soft"):
    """PSNR of ``method`` minus that of TV, both with λ chosen by ``choice`` (None if either is
    missing)."""
    best = {s["method"]: s["psnr"] for s in summary if s["choice"] == choice}
    return best[method] - best["tv"] if method in best and "tv" in best else None


