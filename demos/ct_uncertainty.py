#!/usr/bin/env python
"""How sure is a generative CT reconstruction? Calibration of the latent posterior on held-out
chest CT slices.

* data: ``--n`` slices of the held-out block of the chest CT
  (``cil_genreg.datasets.ct_slices("chest", "test", size=128)``), parallel beam with
  ``--angles`` (30) over 180° and over ``--limited-span`` (120°: the missing wedge), Gaussian
  noise ``--noise`` (2 % of the sinogram's maximum), ASTRA;
* posterior: :math:`p(w \\mid y) \\propto \\exp(-\\|A G(w) - y\\|^2 / 2\\sigma^2 - \\|w\\|^2/2)`
  with ``ct-vae-128`` whitened by its fitted latent Gaussian, σ the noise level; MALA
  (:class:`cil_genreg.algorithms.LatentPosteriorSampler`) from the MAP (the latent method at
  λ = σ², started from the encoding of TV at λ = 10), ``--burn-in`` steps then ``--samples``
  draws per chain;
* measured per slice (:func:`cil_genreg.algorithms.calibration`): the share of truth pixels
  inside the 95 % interval, corr(std, |error|), the ESS and seconds per effective sample; and
  the share of the std image's spectral power inside the missing wedge (against the share of
  the wedge's area), for the limited-angle case;
* outputs in ``--out``: ``ct_uncertainty.json``, the figure ``ct_uncertainty.png`` (truth /
  mean / std / |error|, one row per geometry, std and error each on its own colour scale) and
  the images as ``ct_uncertainty.npz``.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

#: TV's λ for 128² CT slices (demos/ct_tomography.py's middle value): the MAP's start
TV_LAMBDA = 10.0


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
    p.add_argument("--map-iterations", type=int, default=60)
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


def one_slice(image, G, geometry, args, rng):
    """The posterior of one slice under one geometry: the sampler, its calibration, arrays."""
    from cil.optimisation.functions import L2NormSquared  # noqa: F401  (CIL present)
    from cil_genreg.algorithms import LatentPosteriorSampler, calibration
    from cil_genreg.experiments import methods
    from cil_genreg.physics.forward import initial_reconstruction, make_geometry, make_projector
    from cil_genreg.physics.measurement import GaussianMeasurement

    ig, ag = make_geometry(image.shape[-1], args.angles, geometry,
                           limited_span=args.limited_span)
    A = make_projector(ig, ag)
    measured = GaussianMeasurement(args.noise).measure(image, A, rng)
    y, sigma, truth = measured.data, measured.sigma, measured.truth
    fbp, _ = initial_reconstruction(A, y)
    started = time.perf_counter()
    tv = methods.reconstruct("tv", A, y, TV_LAMBDA, x0=fbp, iterations=50)
    f, z = methods.latent_map(A, y, sigma ** 2, G, x0=tv, iterations=args.map_iterations)
    map_seconds = time.perf_counter() - started
    if args.sigma_from == "residual":
        sigma = max(sigma, float((A.direct(f.image(z)) - y).norm()) / np.sqrt(y.as_array().size))
    sampler = LatentPosteriorSampler(initial=z, f=f, sigma=sigma, step=1e-3,
                                     burn_in=args.burn_in, chains=args.chains,
                                     seed=int(rng.integers(1 << 30)))
    sampler.sample(args.samples)
    report = calibration(sampler, truth)
    mean, std = sampler.mean.as_array(), sampler.std.as_array()
    error = np.abs(mean - truth.as_array())
    map_image = f.image(z).as_array()
    report.update(geometry=geometry, sigma=sigma, map_seconds=map_seconds,
                  sampling_seconds=sampler.seconds,
                  map_rmse=float(np.sqrt(np.mean((map_image - truth.as_array()) ** 2))))
    if geometry == "limited":
        report["std_wedge_power"], report["wedge_area"] = wedge_fraction(std, args.limited_span)
        report["fbp_error_wedge_power"], _ = wedge_fraction(
            fbp.as_array() - truth.as_array(), args.limited_span)
    return report, (truth.as_array(), mean, std, error)


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
            report, arrays = one_slice(image, G, geometry, args, rng)
            reports.append(dict(report, slice=k))
            panels.append((f"{k} {geometry}", arrays))
            print(f"slice {k} {geometry:8}: coverage {report['coverage']:.3f}, corr(std, |err|) "
                  f"{report['std_error_correlation']:.3f}, ESS {report['ess']:.1f} "
                  f"({report['seconds_per_effective_sample']:.2f} s each), acceptance "
                  f"{report['acceptance']:.2f}, mean std {report['mean_std']:.4f}, RMSE "
                  f"{report['rmse']:.4f}", flush=True)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, names[0]), "w") as f:
        json.dump({"settings": vars(args), "slices": reports}, f, indent=1)
    np.savez_compressed(os.path.join(args.out, names[2]),
                        **{f"{name.replace(' ', '_')}_{kind}": array for name, arrays in panels
                           for kind, array in zip(("truth", "mean", "std", "error"), arrays)})
    figure(panels[:4], os.path.join(args.out, names[1]),
           f"latent posterior, {args.model}, {args.angles} angles, noise {args.noise:g}")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
