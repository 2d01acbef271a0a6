"""How good is a generator as a prior? The paper's desired properties, measured.

Duff, Campbell & Ehrhardt (2023) ask four things of a generator ``G`` used as a regulariser;
:func:`evaluate_model` measures each on held-out images ``x_1..x_n``:

1. **it generates all feasible images** -- the latent-fit error on held-out images,

   .. math:: z_i^* = argmin_z ||G(z) - x_i||_2^2 + lambda ||z||_2^2,   lambda = 10^{-3},

   solved by Adam from ``z = 0`` for all images as one batch (the best iterate of each image is
   kept); reported as PSNR ``10 log10(1 / mean((G(z*) - x)^2))`` in dB (intensities in [0, 1]),
   mean / median / min / max over the images;
2. **it generates no unfeasible images** -- a grid of ``G(z)``, ``z ~ N(0, I)``, and for each
   sample the PSNR to its nearest held-out image (high = looks like data);
3. **it is smooth in z** -- decoded straight-line interpolations between the codes of pairs of
   held-out images, and the largest step between consecutive frames relative to the total change
   (``1 / (frames - 1)`` for an evenly changing path);
4. **its latent distribution is known** -- the codes of held-out images (the encoder mean of a
   VAE, the code of an AE, the latent fit for a GAN) against N(0, I): mean, per-dimension
   standard deviation, skewness, excess kurtosis, and the Kolmogorov-Smirnov statistic
   ``D = sup_t |F_n(t) - Phi(t)|`` of each dimension (mean and max over dimensions).

Torch only (no CIL); figures are drawn with matplotlib's Agg canvas (no display needed).
"""
import json
import math
import os

import numpy as np
import torch
from tqdm.auto import tqdm

from ..latent import encode_mean, frozen
from ..latent.generator import own_copy
from ..datasets._common import image_batch
from ..utilities.metrics import batch_psnr, hfen
from ..models import VAE


def _module_device(generator):
    p = next(generator.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


#: where :func:`latent_fit` starts
FIT_STARTS = ("zero", "encoder")


def latent_fit(generator, images, reg=1e-3, steps=500, lr=0.05, batch_size=256, progress=True,
               start="zero"):
    """Fit ``z_i* = argmin_z ||G(z) - x_i||^2 + reg ||z||^2`` by Adam, batched.

    Parameters
    ----------
    generator : torch.nn.Module
        (B, d) -> (B, 1, H, W); needs ``latent_dim``.
    images : array (N, H, W) in [0, 1]
    reg : float
        ``lambda`` (1e-3 as in the paper's latent-fit test).
    steps, lr : int, float
        Adam iterations and step size; the best iterate of each image is kept.
    batch_size : int
        images fitted together (each image's problem is independent; the objective summed over
        the batch has the per-image gradients).
    start : {"zero", "encoder"}
        Adam starts at ``z = 0`` (the prior's mean), or at the encoder's code of each image
        (a VAE's mean; needs a generator with ``encode``). A fully convolutional latent-grid
        model stalls near ``z = 0``: fit it from the encoder, as the regularisers start.

    Returns
    -------
    z : torch.Tensor (N, d)
    fitted : torch.Tensor (N, 1, H, W), ``G(z*)``
    psnr_db : torch.Tensor (N,)
    """
    if start not in FIT_STARTS:
        raise ValueError(f"start must be one of {FIT_STARTS}, got {start!r}")
    if start == "encoder" and not hasattr(generator, "encode"):
        raise ValueError("start='encoder' needs a generator with an encoder (a VAE or AE); "
                         "this one has none: use start='zero'.")
    device = _module_device(generator)
    x_all = image_batch(images, device=device)
    d = int(generator.latent_dim)
    was = generator.training
    generator.eval()
    zs, fits = [], []
    batches = range(0, len(x_all), batch_size)
    bar = tqdm(total=len(batches) * steps, disable=not progress, desc="latent fit",
               unit="step", mininterval=1.0)
    try:
        with frozen(generator):
            for i in batches:
                x = x_all[i:i + batch_size]
                if start == "encoder":
                    z = encode_mean(generator, x).detach().clone().requires_grad_(True)
                else:
                    z = torch.zeros(len(x), d, device=device, requires_grad=True)
                opt = torch.optim.Adam([z], lr=lr)
                best = torch.full((len(x),), float("inf"), device=device)
                best_z = z.detach().clone()
                for _ in range(steps):
                    per = (generator(z) - x).pow(2).flatten(1).sum(1) + reg * z.pow(2).sum(1)
                    with torch.no_grad():
                        better = per < best
                        best = torch.where(better, per, best)
                        best_z[better] = z[better]
                    opt.zero_grad(set_to_none=True)
                    per.sum().backward()
                    opt.step()
                    bar.update(1)
                with torch.no_grad():
                    per = (generator(z) - x).pow(2).flatten(1).sum(1) + reg * z.pow(2).sum(1)
                    best_z[per < best] = z[per < best]
                    zs.append(best_z)
                    fits.append(generator(best_z))
                bar.set_postfix(psnr=f"{float(batch_psnr(fits[-1], x).mean()):.2f}")
    finally:
        bar.close()
        generator.train(was)
    z, fitted = torch.cat(zs), torch.cat(fits)
    return z, fitted, batch_psnr(fitted, x_all)


def _mean_hfen(fitted, x):
    """The mean HFEN (:func:`~cil_genreg.utilities.metrics.hfen`) of the fits against the
    images: how much fine detail the generator's range loses, where PSNR rewards blur."""
    f, t = fitted.detach().cpu().numpy()[:, 0], x.detach().cpu().numpy()[:, 0]
    return float(sum(hfen(a, b) for a, b in zip(f, t)) / len(t))


def _phi(t):
    return 0.5 * (1.0 + torch.erf(t / math.sqrt(2.0)))


def ks_statistic(samples):
    """Kolmogorov-Smirnov distance of each column of ``samples`` (n, d) to N(0, 1), shape (d,)."""
    s, _ = torch.sort(samples.double(), dim=0)
    n = s.shape[0]
    cdf = _phi(s)
    i = torch.arange(1, n + 1, dtype=torch.float64, device=s.device)[:, None]
    return torch.maximum((i / n - cdf).max(0).values, (cdf - (i - 1) / n).max(0).values).float()


def latent_statistics(codes):
    """Moments and KS statistics of codes (n, d) against N(0, I) (see the module docstring)."""
    c = codes.double()
    mean, std = c.mean(0), c.std(0, unbiased=True).clamp_min(1e-12)
    u = (c - mean) / std
    skew, kurt = u.pow(3).mean(0), u.pow(4).mean(0) - 3.0
    ks = ks_statistic(codes)
    n = codes.shape[0]
    return {
        "n": int(n), "latent_dim": int(codes.shape[1]),
        "mean_abs_mean": float(mean.abs().mean()), "max_abs_mean": float(mean.abs().max()),
        "std_per_dim": [round(float(v), 4) for v in std],
        "std_min": float(std.min()), "std_median": float(std.median()), "std_max": float(std.max()),
        "mean_skewness": float(skew.mean()), "mean_excess_kurtosis": float(kurt.mean()),
        "mean_norm": float(c.norm(dim=1).mean()), "expected_norm_n01": math.sqrt(codes.shape[1]),
        "ks_mean": float(ks.mean()), "ks_max": float(ks.max()),
        "ks_critical_5pct": 1.358 / math.sqrt(n),
        "reference": "N(0, I): mean 0, std 1, skewness 0, excess kurtosis 0, KS small",
    }


def _codes(generator, x, z_fit):
    code = encode_mean(generator, x)
    if code is None:
        return z_fit, "latent fit"
    return code, "encoder mean" if isinstance(generator, VAE) else "encoder"


def evaluate_model(generator, images, n=100, out_dir=None, reg=1e-3, steps=500, lr=0.05,
                   n_samples=64, n_interpolations=6, frames=9, seed=0, progress=True,
                   info=None, start="zero"):
    """Measure the paper's desired properties of ``generator`` on held-out ``images``.

    Parameters
    ----------
    generator : torch.nn.Module
        (B, d) -> (B, 1, H, W) in [0, 1], with ``latent_dim`` (``encode`` is used when present).
    images : array (N, H, W) in [0, 1]
        held-out images (never seen in training); the first ``n`` are used.
    n : int
    out_dir : str, optional
        writes ``report.json`` and ``evaluation.png`` there.
    reg, steps, lr : float, int, float
        latent-fit problem and Adam settings (:func:`latent_fit`).
    start : {"zero", "encoder"}
        where the latent fit starts (:func:`latent_fit`).
    n_samples, n_interpolations, frames : int
        samples from N(0, I); interpolated pairs and frames per interpolation.
    seed : int
    info : dict, optional
        extra entries for the report (model and data description).

    Returns
    -------
    dict
        the report (also ``report.json``); keys ``latent_fit``, ``samples``, ``interpolation``,
        ``latent_distribution``, ``figure``.
    """
    device = _module_device(generator)
    gen = torch.Generator().manual_seed(int(seed))
    x = image_batch(images, device=device)[:n]
    if tuple(x.shape[2:]) != tuple(getattr(generator, "image_shape", x.shape[2:])):
        raise ValueError(f"images are {tuple(x.shape[2:])} but the generator makes "
                         f"{tuple(generator.image_shape)}; resize them first.")
    generator = own_copy(generator, device)  # in eval mode; the caller's module is unchanged
    z_fit, fitted, p = latent_fit(generator, x[:, 0], reg=reg, steps=steps, lr=lr,
                                  progress=progress, start=start)
    origin = "z = 0" if start == "zero" else "the encoder's code"
    report = {"info": dict(info or {}), "n_images": int(len(x)),
              "latent_fit": {
                  "objective": f"min_z ||G(z) - x||^2 + reg ||z||^2, Adam from {origin}",
                  "start": start, "reg": reg, "steps": steps, "lr": lr,
                  "psnr_mean_db": float(p.mean()), "psnr_median_db": float(p.median()),
                  "psnr_min_db": float(p.min()), "psnr_max_db": float(p.max()),
                  "hfen_mean": _mean_hfen(fitted, x),
                  "mse_mean": float(((fitted - x) ** 2).mean()),
                  "z_norm_mean": float(z_fit.norm(dim=1).mean())}}
    codes, code_kind = _codes(generator, x, z_fit)
    if hasattr(generator, "encode"):
        with torch.no_grad():
            report["latent_fit"]["encoder_psnr_mean_db"] = float(batch_psnr(generator(codes), x).mean())
    with torch.no_grad():
        zs = torch.randn(n_samples, generator.latent_dim, generator=gen).to(device)
        samples = generator(zs)
        # nearest held-out image of each sample
        dist = torch.cdist(samples.flatten(1), x.flatten(1)) ** 2 / x[0].numel()
        nn_psnr = 10 * torch.log10(1.0 / dist.min(1).values.clamp_min(1e-12))
    report["samples"] = {"n": n_samples, "nearest_held_out_psnr_mean_db": float(nn_psnr.mean()),
                         "nearest_held_out_psnr_median_db": float(nn_psnr.median()),
                         "intensity_min": float(samples.min()),
                         "intensity_max": float(samples.max())}
    k = min(n_interpolations, len(x) // 2)
    t = torch.linspace(0, 1, frames, device=device)[:, None]
    rows, ratios = [], []
    with torch.no_grad():
        for j in range(k):
            a, b = codes[2 * j], codes[2 * j + 1]
            path = generator((1 - t) * a + t * b)
            steps_ = (path[1:] - path[:-1]).flatten(1).norm(dim=1)
            ratios.append(float(steps_.max() / steps_.sum().clamp_min(1e-12)))
            rows.append(path)
    report["interpolation"] = {"pairs": k, "frames": frames, "codes": code_kind,
                               "max_step_ratio_mean": float(np.mean(ratios)) if ratios else None,
                               "even_path_ratio": 1.0 / (frames - 1)}
    report["latent_distribution"] = dict(latent_statistics(codes.detach().cpu()),
                                         codes=code_kind)
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
        fig_path = os.path.join(out_dir, "evaluation.png")
        _figure(fig_path, x, fitted, p, samples, rows, codes.detach().cpu(), report)
        report["figure"] = fig_path
        with open(os.path.join(out_dir, "report.json"), "w") as f:
            json.dump(report, f, indent=2)
    return report


def _tile(images, ncol):
    """(B, 1, H, W) tensor -> one (rows*H, ncol*W) numpy mosaic with 1-pixel gaps."""
    a = images.detach().cpu().numpy()[:, 0]
    b, h, w = a.shape
    nrow = math.ceil(b / ncol)
    out = np.ones((nrow * (h + 1) - 1, ncol * (w + 1) - 1), np.float32)
    for i in range(b):
        r, c = divmod(i, ncol)
        out[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = a[i]
    return out


def _figure(path, x, fitted, p, samples, rows, codes, report):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(14, 10))
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2)
    m = min(10, len(x))
    ax = axes[0, 0]
    ax.imshow(_tile(torch.cat([x[:m], fitted[:m]]), m), cmap="gray", vmin=0, vmax=1)
    lf = report["latent_fit"]
    ax.set_title(f"held-out (top) and latent fits (bottom)\nmean PSNR {lf['psnr_mean_db']:.2f} dB, "
                 f"median {lf['psnr_median_db']:.2f} dB over {len(x)} images")
    ax.axis("off")
    ax = axes[0, 1]
    ax.imshow(_tile(samples, int(math.ceil(math.sqrt(len(samples))))), cmap="gray", vmin=0, vmax=1)
    ax.set_title("samples G(z), z ~ N(0, I)")
    ax.axis("off")
    ax = axes[1, 0]
    if rows:
        ax.imshow(_tile(torch.cat(rows), rows[0].shape[0]), cmap="gray", vmin=0, vmax=1)
    ax.set_title(f"interpolations between {report['interpolation']['codes']} codes")
    ax.axis("off")
    ax = axes[1, 1]
    u = codes.flatten().numpy()
    ax.hist(u, bins=60, density=True, alpha=0.6, label="codes (all dimensions)")
    t = np.linspace(min(-4, u.min()), max(4, u.max()), 200)
    ax.plot(t, np.exp(-t ** 2 / 2) / np.sqrt(2 * np.pi), "k", label="N(0, 1)")
    ld = report["latent_distribution"]
    ax.set_title(f"held-out codes vs N(0, I): std median {ld['std_median']:.2f}, "
                 f"KS mean {ld['ks_mean']:.2f}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
