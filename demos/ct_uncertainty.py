#!/usr/bin/env python
"""How sure is a generative CT reconstruction? Calibration of the latent posterior and of the
soft method's joint posterior on held-out chest CT slices.

* data: ``--n`` slices of the held-out block of the chest CT
  (``cil_genreg.datasets.ct_slices("chest", "test", size=128)``), parallel beam with
  ``--angles`` (30) over 180° and over ``--limited-span`` (120°: the missing wedge), Gaussian
  noise ``--noise`` (2 % of the sinogram's maximum), ASTRA;
* ``--methods latent``: :math:`p(w \\mid y) \\propto \\exp(-\\|A G(w) - y\\|^2 / 2\\sigma^2 -
  \\|w\\|^2/2)` with ``ct-vae-128`` whitened by its fitted latent Gaussian, σ the noise level;
  MALA (:class:`cil_genreg.algorithms.LatentPosteriorSampler`) from the MAP (the latent method
  at λ = σ², started from the encoding of TV at λ = 10);
* ``--methods soft``: the joint :math:`p(x, w \\mid y) \\propto \\exp(-\\|Ax - y\\|^2/2\\sigma^2 -
  \\|x - G(w)\\|^2/2\\tau^2 - \\|w\\|^2/2)`, :math:`\\tau = \\sigma/\\sqrt\\lambda` with λ =
  ``--soft-lam`` (1000, the best soft λ at 128², 30 angles, docs/results.md); Gibbs
  (:class:`cil_genreg.algorithms.JointPosteriorSampler`: x exactly, w by MALA) from the soft
  reconstruction at that λ and μ = σ²/λ (whose joint mode it is; ``--map-iterations`` FISTA
  iterations from TV) and the latent of p(w | x);
* ``--methods pnp-ula`` (the anchor, not run by default): PnP-ULA
  (:class:`cil_genreg.algorithms.PlugAndPlayULA`, Laumont et al. 2022, deepinv's
  ``sampling.ULA``) with the shipped denoiser ``ct-drunet-128`` at ``--ula-sigma``
  (:math:`\\varepsilon = \\sigma_{den}^2`) and ``--ula-alpha``, step
  :math:`\\delta = 1/(3(\\|A\\|^2/\\sigma^2 + \\alpha/\\varepsilon))`, clipped to [0, 1], from the
  TV reconstruction; ``--ula-burn-in`` steps then ``--ula-samples`` draws, every
  ``--ula-thin``-th step kept (a step is one denoiser pass and one A, Aᵀ: cheaper than theirs);
* the latent and soft chains: ``--burn-in`` steps then ``--samples`` draws per chain, the same seeds;
* measured per slice and chain (:func:`cil_genreg.algorithms.calibration`): the share of truth
  pixels inside the 95 % interval (empirical quantiles, and mean ± 1.96 std; also in the body,
  in the air and among the worst-decile errors), corr(std, |error|), the ESS, ESS per second;
  and the share of the std image's spectral power inside the
  missing wedge (against the share of the wedge's area), for the limited-angle case;
* outputs in ``--out``: ``ct_uncertainty.json``, the figure ``ct_uncertainty.png`` (truth /
  mean / std / |error| of the first slice, one row per geometry and chain, std and error each on
  its own colour scale) and the images as ``ct_uncertainty.npz``.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

#: TV's λ for 128² CT slices (demos/ct_tomography.py's middle value): the MAP's start
TV_LAMBDA = 10.0
#: soft's best λ at 128², 30 angles, 2 % noise (docs/results.md): τ = σ/√λ of the joint chain
SOFT_LAMBDA = 1000.0
#: the chains: the range method's latent posterior, the soft method's joint posterior, and the
#: anchor PnP-ULA with a trained denoiser (run on request)
METHODS = ("latent", "soft", "pnp-ula")
#: the chains run by default
DEFAULT_METHODS = ("latent", "soft")
#: PnP-ULA's denoiser
ULA_DENOISER = "ct-drunet-128"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=2, help="held-out slices")
    p.add_argument("--samples", type=int, default=300, help="kept draws per chain")
    p.add_argument("--burn-in", type=int, default=200, help="discarded, step-adapting steps")
    p.add_argument("--chains", type=int, default=1)
    p.add_argument("--angles", type=int, default=30)
    p.add_argument("--limited-span", type=float, default=120.0)
    p.add_argument("--noise", type=float, default=0.02)
    p.add_argument("--model", default="ct-vae-128")
    p.add_argument("--map-iterations", type=int, default=60,
                   help="iterations of each MAP: LatentLBFGS (latent), FISTA (soft)")
    p.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=METHODS,
                   help="latent: MALA on p(w | y); soft: the joint Gibbs chain on p(x, w | y); "
                   "pnp-ula: PnP-ULA with ct-drunet-128 (the anchor)")
    p.add_argument("--soft-lam", type=float, default=SOFT_LAMBDA,
                   help="the soft method's λ: τ = σ/√λ, and its MAP at μ = σ²/λ")
    p.add_argument("--ula-sigma", type=float, default=0.03,
                   help="PnP-ULA: the denoiser's noise level (epsilon = sigma^2)")
    p.add_argument("--ula-alpha", type=float, default=1.0, help="PnP-ULA: the prior's weight")
    p.add_argument("--ula-samples", type=int, default=2000, help="PnP-ULA: kept draws")
    p.add_argument("--ula-burn-in", type=int, default=2000, help="PnP-ULA: discarded steps")
    p.add_argument("--ula-thin", type=int, default=4, help="PnP-ULA: keep every n-th step")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sigma-from", default="noise", choices=("noise", "residual"),
                   help="the likelihood's σ: the noise level (default), or the MAP's residual "
                   "RMS ‖A G(w*) − y‖/√m, which also counts the generator's model error")
    p.add_argument("--out", default=os.path.join("outputs", "ct_uncertainty"))
    p.add_argument("--overwrite", action="store_true")
    return p.parse_args(argv)


def wedge_fraction(image, span):
    """The share of ``image``'s spectral power (mean removed) whose frequency direction lies in
    the missing wedge of a parallel scan over [0, span) degrees, and the wedge's share of the
    frequency plane. A projection at angle θ measures the Fourier line at θ (the Fourier slice
    theorem; the angle counted with the image's rows pointing up): checked on the error of a
    noise-free 120° FBP, whose power lies 58 % in the wedge of 35 % of the plane."""
    image = np.asarray(image, np.float64)
    power = np.abs(np.fft.fftshift(np.fft.fft2(image - image.mean()))) ** 2
    n = image.shape[0]
    fy, fx = np.mgrid[:n, :n] - n // 2
    angle = np.degrees(np.arctan2(-fy, fx)) % 180.0
    missing = (angle >= span) & ((fx != 0) | (fy != 0))
    return float(power[missing].sum() / power.sum()), float(missing.mean())


def region_coverage(truth, mean, std, z=1.96, body=0.05):
    """Where the interval mean ± z·std holds the truth: its share in the body (truth >
    ``body``), in the air around it, and among the 10 % of pixels of largest |mean − truth| (a
    spatially uniform std covers the flat air and misses the edges: calibrated on average,
    not locally)."""
    truth, mean, std = (np.asarray(a, np.float64) for a in (truth, mean, std))
    error = np.abs(mean - truth)
    inside = error <= z * std
    inner = truth > body
    worst = np.argsort(error, axis=None)[-max(1, -(-error.size // 10)):]
    return {"coverage_body": float(inside[inner].mean()),
            "coverage_air": float(inside[~inner].mean()) if (~inner).any() else float("nan"),
            "coverage_worst_decile": float(inside.ravel()[worst].mean())}


def measure(image, geometry, args, rng):
    """The data of one slice under one geometry, and the TV start of the MAPs."""
    from cil_genreg.experiments import methods
    from cil_genreg.physics.forward import initial_reconstruction, make_geometry, make_projector
    from cil_genreg.physics.measurement import GaussianMeasurement

    ig, ag = make_geometry(image.shape[-1], args.angles, geometry,
                           limited_span=args.limited_span)
    A = make_projector(ig, ag)
    measured = GaussianMeasurement(args.noise).measure(image, A, rng)
    y = measured.data
    fbp, _ = initial_reconstruction(A, y)
    started = time.perf_counter()
    tv = methods.reconstruct("tv", A, y, TV_LAMBDA, x0=fbp, iterations=50)
    return dict(A=A, y=y, sigma=measured.sigma, truth=measured.truth, fbp=fbp, tv=tv,
                geometry=geometry, tv_seconds=time.perf_counter() - started)


def _sigma(problem, image, args):
    """The likelihood's σ: the noise level, or at least the MAP's residual RMS."""
    sigma, A, y = problem["sigma"], problem["A"], problem["y"]
    if args.sigma_from == "residual":
        sigma = max(sigma, float((A.direct(image) - y).norm()) / np.sqrt(y.as_array().size))
    return sigma


def latent_chain(problem, G, args, seed):
    """MALA on p(w | y) from the latent method's MAP at λ = σ²: (sampler, MAP image, σ)."""
    from cil_genreg.algorithms import LatentPosteriorSampler
    from cil_genreg.experiments import methods

    A, y = problem["A"], problem["y"]
    f, z = methods.latent_map(A, y, problem["sigma"] ** 2, G, x0=problem["tv"],
                              iterations=args.map_iterations)
    map_image = f.image(z)
    sigma = _sigma(problem, map_image, args)
    sampler = LatentPosteriorSampler(initial=z, f=f, sigma=sigma, step=1e-3,
                                     burn_in=args.burn_in, chains=args.chains, seed=seed)
    return sampler, map_image, sigma


def joint_chain(problem, G, args, seed):
    """Gibbs on p(x, w | y) from the soft MAP at λ = ``--soft-lam``, μ = σ²/λ, and the latent
    of p(w | x): (sampler, MAP image, σ)."""
    from cil_genreg.algorithms import (JointPosteriorSampler, latent_given_image,
                                       soft_posterior_scales)
    from cil_genreg.experiments import methods

    A, y, lam = problem["A"], problem["y"], args.soft_lam
    mu = soft_posterior_scales(problem["sigma"], lam)["mu_consistent"]
    map_image = methods.reconstruct("soft", A, y, lam, G, x0=problem["tv"],
                                    iterations=args.map_iterations, mu=mu, max_iteration=2)
    sigma = _sigma(problem, map_image, args)
    tau = soft_posterior_scales(sigma, lam)["tau"]
    w = latent_given_image(G, map_image, tau, iterations=args.map_iterations)
    sampler = JointPosteriorSampler(initial=map_image, A=A, y=y, generator=G, sigma=sigma,
                                    tau=tau, latent=w, step=1e-3, burn_in=args.burn_in,
                                    chains=args.chains, seed=seed)
    return sampler, map_image, sigma


def ula_chain(problem, G, args, seed):
    """PnP-ULA with ``ct-drunet-128`` from the TV reconstruction (clipped to [0, 1]):
    (sampler, start image, σ); ``G`` is unused (the prior is the denoiser's)."""
    from cil_genreg.algorithms import PlugAndPlayULA
    from cil_genreg.models import pretrained

    start = problem["tv"].copy()
    start.fill(np.clip(start.as_array(), 0.0, 1.0))
    sigma = _sigma(problem, start, args)
    sampler = PlugAndPlayULA(start, problem["A"], problem["y"], pretrained(ULA_DENOISER), sigma,
                             sigma_denoiser=args.ula_sigma, alpha=args.ula_alpha,
                             burn_in=args.ula_burn_in, thin=args.ula_thin,
                             chains=args.chains, seed=seed)
    return sampler, start, sigma


def one_slice(problem, G, method, args, seed):
    """One chain on one slice under one geometry: its calibration report and its arrays."""
    from cil_genreg.algorithms import calibration

    started = time.perf_counter()
    make = {"latent": latent_chain, "soft": joint_chain, "pnp-ula": ula_chain}[method]
    sampler, map_image, sigma = make(problem, G, args, seed)
    map_seconds = time.perf_counter() - started
    sampler.sample(args.ula_samples if method == "pnp-ula" else args.samples)
    truth = problem["truth"].as_array()
    report = calibration(sampler, problem["truth"])
    mean, std = sampler.mean.as_array(), sampler.std.as_array()
    error = np.abs(mean - truth)
    report.update(region_coverage(truth, mean, std))
    report["psnr"] = float(10 * np.log10(1.0 / np.mean((mean - truth) ** 2)))
    report.update(method=method, geometry=problem["geometry"], sigma=sigma,
                  map_seconds=map_seconds + problem["tv_seconds"],
                  sampling_seconds=sampler.seconds,
                  map_rmse=float(np.sqrt(np.mean((map_image.as_array() - truth) ** 2))))
    if method == "soft":
        report.update(tau=sampler.tau, cg_iterations=sampler.cg_iterations)
    if method == "pnp-ula":
        report.update(denoiser=ULA_DENOISER, sigma_denoiser=sampler.sigma_denoiser,
                      alpha=sampler.alpha, burn_in=sampler.burn_in, thin=sampler.thin)
    if problem["geometry"] == "limited":
        report["std_wedge_power"], report["wedge_area"] = wedge_fraction(std, args.limited_span)
        report["fbp_error_wedge_power"], _ = wedge_fraction(
            problem["fbp"].as_array() - truth, args.limited_span)
    return report, (truth, mean, std, error)


def figure(panels, path, title):
    """Truth / mean / std / |error|, one row per (slice, geometry)."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from cil_genreg.experiments.reports import save_figure

    fig, axes = plt.subplots(len(panels), 4, figsize=(10, 2.6 * len(panels)), squeeze=False)
    for row, (name, (truth, mean, std, error)) in zip(axes, panels):
        # std and error each on its own scale (the colour bars): the std can be far smaller
        for ax, (label, img, vmax, cmap) in zip(row, (
                ("truth", truth, 1, "gray"), ("posterior mean", mean, 1, "gray"),
                ("pixel std", std, np.percentile(std, 99.5), "magma"),
                ("|mean − truth|", error, np.percentile(error, 99.5), "magma"))):
            shown = ax.imshow(img, cmap=cmap, vmin=0, vmax=vmax)
            ax.set_title(f"{name}: {label}", fontsize=8)
            ax.axis("off")
            if cmap == "magma":
                fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
    return save_figure(fig, path, title, dpi=110)


def main(argv=None):
    import torch
    from cil_genreg.datasets import ct_slices
    from cil_genreg.experiments.methods import load_generator
    from cil_genreg.utilities.output_safety import check_output_files

    args = parse_args(argv)
    names = ["ct_uncertainty.json", "ct_uncertainty.png", "ct_uncertainty.npz"]
    check_output_files(args.out, names, overwrite=args.overwrite)
    torch.set_num_threads(1)
    G = load_generator(args.model)
    images = ct_slices("chest", "test", size=128, n=args.n, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    reports, panels = [], []
    for k, image in enumerate(images):
        for geometry in ("parallel", "limited"):
            problem = measure(image, geometry, args, rng)
            # the latent and soft seeds first, as before PnP-ULA was added: the same data
            seeds = {method: int(rng.integers(1 << 30)) for method in DEFAULT_METHODS}
            seeds["pnp-ula"] = seeds["latent"] ^ 0x5EED
            for method in args.methods:
                report, arrays = one_slice(problem, G, method, args, seeds[method])
                reports.append(dict(report, slice=k))
                panels.append((f"{k} {geometry} {method}", arrays))
                print(f"slice {k} {geometry:8} {method:6}: coverage {report['coverage']:.3f} "
                      f"(mean ± 1.96 std: {report['coverage_gaussian']:.3f}), corr(std, |err|) "
                      f"{report['std_error_correlation']:.3f}, ESS {report['ess']:.1f} "
                      f"({report['ess_per_second']:.3f} per s), acceptance "
                      f"{report['acceptance']:.2f}, mean std {report['mean_std']:.4f}, RMSE "
                      f"{report['rmse']:.4f}", flush=True)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, names[0]), "w") as f:
        json.dump({"settings": vars(args), "slices": reports}, f, indent=1)
    np.savez_compressed(os.path.join(args.out, names[2]),
                        **{f"{name.replace(' ', '_')}_{kind}": array for name, arrays in panels
                           for kind, array in zip(("truth", "mean", "std", "error"), arrays)})
    figure(panels[:2 * len(args.methods)], os.path.join(args.out, names[1]),
           f"posteriors ({', '.join(args.methods)}), {args.model}, {args.angles} angles, "
           f"noise {args.noise:g}")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
