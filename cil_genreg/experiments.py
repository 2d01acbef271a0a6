r"""The seed's experiment, reusable: sparse-angle tomography of a set of images by FBP, TV and
the generative regularisers, with PSNR/SSIM tables, λ chosen both ways (discrepancy principle
and best against the ground truth), and a figure laid out like the talk.

Used by ``demos/*.py``, ``cil-genreg demo`` and ``cil-genreg reconstruct``.

Every method solves :math:`\min_x \|Ax - y\|^2 + \lambda R(x)` with CIL's FISTA from the FBP
image (or from :math:`z = 0` for the latent range method):

* ``tv``: :math:`R = \mathrm{TV}` (CIL's ``TotalVariation``);
* ``soft``, ``sparse``, ``range``: the generative regularisers of this package;
* ``latent``: the range method in latent space, :math:`\min_z \|A G(z) - y\|^2 + \lambda\|z\|^2`
  (``LatentLeastSquares``), image :math:`G(z)`.
"""
import csv
import json
import math
import os

import numpy as np

from . import SoftGenerativeRegulariser, RangeGenerativeRegulariser, \
    SparseDeviationGenerativeRegulariser, LatentLeastSquares
from .bridge import as_tensor
from .parameter_choice import discrepancy_principle

GEOMETRIES = ("parallel", "limited", "fan")
METHODS = ("fbp", "tv", "latent", "range", "soft", "sparse")
LABELS = {"fbp": "FBP", "tv": "TV", "latent": "range (latent)", "range": "range",
          "soft": "soft", "sparse": "sparse deviations"}
# λ grids per method (5 values each, as for TV in the reference measurements)
LAMBDAS = {"tv": (0.3, 1.0, 2.0, 4.0, 8.0), "latent": (0.1, 0.3, 1.0, 3.0, 10.0),
           "range": (0.03, 0.1, 0.3, 1.0, 3.0), "soft": (10.0, 30.0, 60.0, 100.0, 200.0),
           "sparse": (1.0, 3.0, 10.0, 30.0, 100.0)}
MU = {"soft": 1e-3, "sparse": 1e-2}


# -- the forward problem ---------------------------------------------------------------------
def make_geometry(size, angles, geometry="parallel", panel=None):
    """ImageGeometry and AcquisitionGeometry of a 2D sparse-angle problem.

    Parameters
    ----------
    size : int
        image side (pixels of size 1).
    angles : int
        number of projection angles: over 180° (``parallel``), over 90° (``limited``, a
        limited-angle problem), or over 360° (``fan``: fan beam, source 4 image widths from the
        centre, detector 2 widths on the other side).
    panel : int, optional
        detector pixels; default :math:`\\lceil\\sqrt{2}\\,n\\rceil` (41 for 28×28), magnified for
        the fan beam.
    """
    from cil.framework import AcquisitionGeometry, ImageGeometry
    if geometry not in GEOMETRIES:
        raise ValueError(f"geometry must be one of {GEOMETRIES}, got {geometry!r}")
    ig = ImageGeometry(voxel_num_x=size, voxel_num_y=size)
    panel = int(panel or math.ceil(math.sqrt(2) * size))
    if geometry == "fan":
        source, detector = 4.0 * size, 2.0 * size
        magnification = (source + detector) / source
        ag = AcquisitionGeometry.create_Cone2D(source_position=[0, -source],
                                               detector_position=[0, detector])
        ag.set_angles(np.linspace(0, 360, angles, endpoint=False))
        ag.set_panel(int(math.ceil(panel * magnification)))
    else:
        span = 180 if geometry == "parallel" else 90
        ag = AcquisitionGeometry.create_Parallel2D().set_angles(
            np.linspace(0, span, angles, endpoint=False)).set_panel(panel)
    return ig, ag


def _plugin(backend):
    if backend == "astra":
        import cil.plugins.astra as plugin
        return plugin
    if backend == "tigre":
        try:
            import cil.plugins.tigre as plugin
        except ImportError as err:
            raise RuntimeError(
                "backend='tigre' needs TIGRE, a conda package that runs on an NVIDIA GPU: "
                "`conda install -c ccpi tigre` on a machine with CUDA, or use backend='astra' "
                "(its 2D projectors run on the CPU).") from err
        return plugin
    raise ValueError(f"backend must be 'astra' or 'tigre', got {backend!r}")


def make_projector(ig, ag, backend="astra", device="cpu"):
    """The CIL projector of the chosen backend (ASTRA: 'cpu' or 'gpu'; TIGRE: GPU only)."""
    plugin = _plugin(backend)
    if backend == "astra":
        return plugin.ProjectionOperator(ig, ag, device="gpu" if device.startswith("cuda") else
                                         device)
    return plugin.ProjectionOperator(ig, ag)


def add_noise(y, level=0.05, rng=None):
    """``y + level * max(y) * N(0, 1)``; returns the noisy data and the noise's σ."""
    rng = np.random.default_rng(rng)
    sigma = float(level * y.max())
    noisy = y.copy()
    noisy += (sigma * rng.standard_normal(y.shape)).astype(np.float32)
    return noisy, sigma


def initial_reconstruction(A, y, backend="astra", device="cpu"):
    """FBP, where the backend has one for the geometry; else 10 CGLS iterations (ASTRA's CPU
    FBP is parallel-beam only). Returns the image and its label."""
    ig, ag = A.domain_geometry(), A.range_geometry()
    if ag.geom_type == "parallel" or device != "cpu" or backend == "tigre":
        fbp = _plugin(backend).FBP(ig, ag, **({"device": device} if backend == "astra" else {}))
        return fbp(y), "FBP"
    from cil.optimisation.algorithms import CGLS
    cgls = CGLS(initial=ig.allocate(0), operator=A, data=y, update_objective_interval=1000)
    cgls.run(10, verbose=0)
    return cgls.solution, "CGLS"


# -- quality -------------------------------------------------------------------------------
def psnr(x, truth, data_range=1.0):
    """:math:`10 \\log_{10}(r^2 / \\text{MSE})`."""
    x, truth = _arr(x), _arr(truth)
    return float(10 * np.log10(data_range ** 2 / max(np.mean((x - truth) ** 2), 1e-30)))


def ssim(x, truth, data_range=1.0, sigma=1.5):
    """Structural similarity (Wang et al. 2004) with an 11-tap Gaussian window of width σ."""
    from scipy.ndimage import gaussian_filter
    x, truth = _arr(x).astype(np.float64), _arr(truth).astype(np.float64)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    blur = lambda a: gaussian_filter(a, sigma, truncate=3.5)  # noqa: E731
    mx, my = blur(x), blur(truth)
    vx, vy, cxy = blur(x * x) - mx ** 2, blur(truth * truth) - my ** 2, blur(x * truth) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return float(s.mean())


def _arr(x):
    return np.asarray(x.as_array() if hasattr(x, "as_array") else x)


# -- the methods ----------------------------------------------------------------------------
def reconstruct(method, A, y, lam, generator=None, x0=None, iterations=100, mu=None,
                callbacks=None, **solver_options):
    """One reconstruction by ``method`` (see :data:`METHODS`) with weight ``lam``.

    Parameters
    ----------
    method : str
        "tv", "soft", "sparse", "range" (the regulariser, under FISTA) or "latent"
        (``LatentLeastSquares`` + :math:`\\lambda\\|z\\|^2` under FISTA).
    A, y : the projector and the data.
    lam : float
    generator : torch.nn.Module, for the generative methods.
    x0 : DataContainer, the start (default: zeros).
    iterations : int, FISTA iterations.
    mu : float, the latent weight of soft / sparse (default :data:`MU`).
    callbacks : list, CIL callbacks (e.g. a progress bar).
    """
    from cil.optimisation.algorithms import FISTA
    from cil.optimisation.functions import L2NormSquared, LeastSquares, TotalVariation
    if method not in METHODS or method == "fbp":
        raise ValueError(f"method must be one of {METHODS[1:]}, got {method!r}")
    if method != "tv" and generator is None:
        raise ValueError(f"method {method!r} needs a generator")
    ig = A.domain_geometry()
    if method == "latent":
        f = LatentLeastSquares(A, generator, y, **solver_options)
        algo = FISTA(initial=_encoded(generator, x0, f), f=f, g=lam * L2NormSquared(),
                     update_objective_interval=iterations)
        algo.run(iterations, verbose=0, callbacks=callbacks)
        return f.image(algo.solution)
    if method == "tv":
        g = TotalVariation(max_iteration=10, warm_start=True)
    elif method == "soft":
        g = SoftGenerativeRegulariser(generator, mu=MU["soft"] if mu is None else mu,
                                      **solver_options)
    elif method == "sparse":
        g = SparseDeviationGenerativeRegulariser(generator, mu=MU["sparse"] if mu is None else mu,
                                                 **solver_options)
    else:
        g = RangeGenerativeRegulariser(generator, **solver_options)
    algo = FISTA(initial=x0 if x0 is not None else ig.allocate(0), f=LeastSquares(A, y),
                 g=lam * g, update_objective_interval=iterations)
    algo.run(iterations, verbose=0, callbacks=callbacks)
    return algo.solution


def _encoded(generator, x0, f):
    """The start of the latent method: the encoder's mean of the initial image when the
    generator has an encoder (a VAE / AE), else z = 0 (the prior's mean)."""
    import torch
    z = f.latent_geometry.allocate(0)
    encode = getattr(generator, "encode", None)
    if x0 is None or encode is None:
        return z
    spec = f.generator_operator.spec
    with torch.no_grad():
        image = as_tensor(x0, device=spec.device)
        code = encode(image.reshape(-1, 1, *spec.image_shape))
    code = code[0] if isinstance(code, (tuple, list)) else code
    z.fill(code.reshape(-1).cpu().numpy())
    return z


def compare(images, generator, angles=10, geometry="parallel", noise=0.05, methods=METHODS,
            lambdas=None, iterations=100, backend="astra", device="cpu", seed=0,
            progress=True):
    """Reconstruct each image by each method over its λ grid; keep, per method, the λ of the
    discrepancy principle and the best λ against the ground truth.

    Returns
    -------
    dict with ``rows`` (one per image × method × choice: image, angles, geometry, method,
    choice ("discrepancy" or "best"), lam, psnr, ssim), ``summary`` (mean PSNR/SSIM per method
    and choice) and ``examples`` (the first image's truth, data and reconstructions, for the
    figure).
    """
    from tqdm.auto import tqdm
    lambdas = dict(LAMBDAS, **(lambdas or {}))
    rng = np.random.default_rng(seed)
    size = images.shape[-1]
    ig, ag = make_geometry(size, angles, geometry)
    A = make_projector(ig, ag, backend, device)
    gen_opts = {} if device == "cpu" else {"device": device}
    rows, examples = [], None
    work = [(k, m) for k in range(len(images)) for m in methods]
    bar = tqdm(total=sum(1 if m == "fbp" else len(lambdas[m]) for _, m in work),
               desc=f"{geometry} {angles} angles", disable=not progress)
    for k, image in enumerate(images):
        truth = ig.allocate(None)
        truth.fill(np.asarray(image, dtype=np.float32))
        y, sigma = add_noise(A.direct(truth), noise, rng)
        x0, x0_label = initial_reconstruction(A, y, backend, device)
        recons = {}
        for method in methods:
            if method == "fbp":
                recons[method] = ("initial", None, x0)
                bar.update()
                continue
            found = {}

            def run(lam, method=method):
                x = reconstruct(method, A, y, lam, generator, x0=x0, iterations=iterations,
                                **(gen_opts if method != "tv" else {}))
                found[lam] = x
                bar.update()
                return x

            choice = discrepancy_principle(run, A, y, sigma, lambdas[method])
            for lam in lambdas[method]:  # the rest of the grid, for the best against truth
                if lam not in found:
                    run(lam)
            best = max(found, key=lambda lam: psnr(found[lam], truth))
            recons[method] = ("discrepancy", choice.lam, choice.x)
            recons[method + "*"] = ("best", best, found[best])
        for key, (choice, lam, x) in recons.items():
            rows.append({"image": k, "angles": angles, "geometry": geometry,
                         "method": key.rstrip("*") if key != "fbp" else x0_label.lower(),
                         "choice": choice, "lam": lam, "psnr": psnr(x, truth),
                         "ssim": ssim(x, truth)})
        if examples is None:
            examples = {"truth": truth.as_array().copy(), "data": y.as_array().copy(),
                        "recons": {key: x.as_array().copy() for key, (_, _, x) in recons.items()},
                        "initial_label": x0_label}
    bar.close()
    return {"rows": rows, "summary": summarise(rows), "examples": examples}


def summarise(rows):
    """Mean PSNR and SSIM per (geometry, angles, method, choice)."""
    groups = {}
    for r in rows:
        groups.setdefault((r["geometry"], r["angles"], r["method"], r["choice"]), []).append(r)
    return [{"geometry": g, "angles": a, "method": m, "choice": c, "images": len(rs),
             "psnr": float(np.mean([r["psnr"] for r in rs])),
             "ssim": float(np.mean([r["ssim"] for r in rs])),
             "lam": (float(np.median([r["lam"] for r in rs])) if rs[0]["lam"] is not None
                     else None)}
            for (g, a, m, c), rs in groups.items()]


# -- the MNIST experiment --------------------------------------------------------------------
SOFT_OVER_TV_TARGET = {10: 2.0, 30: 0.5}  # dB by which soft should beat TV (both at best λ)
QUICK_LAMBDAS = {"tv": (1.0, 4.0), "latent": (0.3, 3.0), "range": (0.3, 1.0),
                 "soft": (30.0, 100.0), "sparse": (10.0, 30.0)}


def load_generator(name_or_path):
    """A shipped model by name (``models.available_pretrained()``) or a checkpoint path."""
    from . import models
    if name_or_path in models.available_pretrained():
        return models.pretrained(name_or_path)
    return models.load(name_or_path)


def held_out_digits(n, seed=0):
    """``n`` MNIST test digits (the split no shipped model has seen), chosen with ``seed``."""
    from . import datasets
    digits = datasets.mnist(split="test")
    rng = np.random.default_rng(seed)
    return digits[np.sort(rng.choice(len(digits), size=min(n, len(digits)), replace=False))]


def mnist_comparison(n=20, angles=(10, 30), geometries=("parallel",), noise=0.05,
                     iterations=100, methods=METHODS, model="mnist-vae", lambdas=None,
                     out=os.path.join("outputs", "mnist"), backend="astra", device="cpu",
                     seed=0, progress=True, echo=print):
    """The talk's comparison on held-out MNIST digits, for each geometry and angle count:
    tables (``mnist_GEOMETRY_ANGLES.csv/.json``), figures (``.png``) and ``summary.json`` in
    ``out``; the tables and soft's margin over TV are printed. Returns the summary rows."""
    generator = load_generator(model)
    images = held_out_digits(n, seed)
    summary = []
    for geometry in geometries:
        for count in angles:
            results = compare(images, generator, angles=count, geometry=geometry, noise=noise,
                              methods=methods, lambdas=lambdas, iterations=iterations,
                              backend=backend, device=device, seed=seed, progress=progress)
            name = f"mnist_{geometry}_{count}"
            save_results(results, out, name)
            talk_figure(results["examples"], os.path.join(out, name + ".png"),
                        f"MNIST, {geometry} beam, {count} angles, {100 * noise:g}% noise")
            echo(f"\n{len(images)} held-out digits, {geometry}, {count} angles:")
            echo(format_table(results["summary"]))
            margin = soft_over_tv(results["summary"])
            if margin is not None:
                target = SOFT_OVER_TV_TARGET.get(count)
                verdict = "" if target is None or geometry != "parallel" else \
                    f" (target ≥ +{target:.1f} dB: {'met' if margin >= target else 'NOT met'})"
                echo(f"soft − TV (best λ each) = {margin:+.2f} dB{verdict}")
            summary += results["summary"]
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump({"n": len(images), "noise": noise, "iterations": iterations, "model": model,
                   "seed": seed, "summary": summary}, f, indent=1)
    echo(f"\ntables, figures and summary.json written to {out}")
    return summary


def soft_over_tv(summary):
    """PSNR of soft minus that of TV, both at their best λ (None if either is missing)."""
    best = {s["method"]: s["psnr"] for s in summary if s["choice"] == "best"}
    return best["soft"] - best["tv"] if "soft" in best and "tv" in best else None


# -- output ---------------------------------------------------------------------------------
def format_table(summary):
    """The summary as a plain-text table."""
    lines = [f"{'geometry':9} {'angles':>6} {'method':18} {'λ choice':12} {'λ':>7} "
             f"{'PSNR':>7} {'SSIM':>6}"]
    for s in summary:
        lam = "" if s["lam"] is None else f"{s['lam']:.3g}"
        lines.append(f"{s['geometry']:9} {s['angles']:>6} {LABELS.get(s['method'], s['method'].upper()):18} "
                     f"{s['choice']:12} {lam:>7} {s['psnr']:7.2f} {s['ssim']:6.3f}")
    return "\n".join(lines)


def save_results(results, out_dir, name="results"):
    """Write ``NAME.csv`` (every row), ``NAME.json`` (rows and summary); return the paths."""
    os.makedirs(out_dir, exist_ok=True)
    csv_path = os.path.join(out_dir, f"{name}.csv")
    json_path = os.path.join(out_dir, f"{name}.json")
    rows = results["rows"]
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(json_path, "w") as f:
        json.dump({"rows": rows, "summary": results["summary"]}, f, indent=1)
    return csv_path, json_path


def talk_figure(examples, path, title=""):
    """Ground truth, data, then one panel per method (λ best against the truth) with its PSNR
    in the title, as in the talk's slides; written as PNG."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    truth = examples["truth"]
    order = ["fbp"] + [m + "*" for m in METHODS[1:] if m + "*" in examples["recons"]]
    panels = [("Ground truth", truth, "gray"), ("Data", examples["data"], "viridis")]
    for key in order:
        if key in examples["recons"]:
            x = examples["recons"][key]
            label = examples["initial_label"] if key == "fbp" else LABELS[key.rstrip("*")]
            panels.append((f"{label}\nPSNR={psnr(x, truth):.2f}", x, "gray"))
    fig, axes = plt.subplots(1, len(panels), figsize=(2.2 * len(panels), 2.6))
    for ax, (name, img, cmap) in zip(np.atleast_1d(axes), panels):
        ax.imshow(img, cmap=cmap, vmin=0 if cmap == "gray" else None,
                  vmax=1 if cmap == "gray" else None, aspect="auto" if cmap != "gray" else None)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
