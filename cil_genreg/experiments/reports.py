"""The outputs of a comparison: a plain-text table, CSV / JSON files, and a figure of the
ground truth, the data and each method's reconstruction, with a zoomed crop of the fine detail
(the lung, on CT) under each whole image.
"""
import csv
import json
import os

import numpy as np

from ..utilities.defaults import ALL_METHODS, LABELS
from ..utilities.metrics import hfen, lung_mask, psnr

#: how the figures name each forward problem
GEOMETRY_TITLES = {"parallel": "parallel beam (180°)", "limited": "limited angle (90°)",
                   "fan": "fan beam (360°)"}


def format_table(summary):
    """The summary as a plain-text table: PSNR, SSIM, HFEN (lower is better) and the SSIM
    inside the lungs ("lung SSIM", NaN without lungs)."""
    lines = [f"{'geometry':9} {'angles':>6} {'method':18} {'λ choice':12} {'λ':>7} "
             f"{'PSNR':>7} {'SSIM':>6} {'HFEN':>6} {'lung SSIM':>9}"]
    nan = float("nan")
    for s in summary:
        lam = "" if s["lam"] is None else f"{s['lam']:.3g}"
        lines.append(f"{s['geometry']:9} {s['angles']:>6} {LABELS.get(s['method'], s['method'].upper()):18} "
                     f"{s['choice']:12} {lam:>7} {s['psnr']:7.2f} {s['ssim']:6.3f} "
                     f"{s.get('hfen', nan):6.3f} {s.get('lung_ssim', nan):9.3f}")
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


def comparison_figure(examples, path, title=""):
    """Two rows of panels: the ground truth, the data, then one per method (λ best against
    the truth) with its PSNR and HFEN in the title; under each image its zoomed crop
    (:func:`zoom_region`, framed in the truth's panel), shown in the display window of the
    truth's crop (its 1st to 99th percentile, the same for every panel); written as PNG."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle
    truth = examples["truth"]
    order = ["fbp"] + [m + "*" for m in ALL_METHODS[1:] if m + "*" in examples["recons"]]
    panels = [("Ground truth", truth, "gray"), ("Data", examples["data"], "viridis")]
    for key in order:
        if key in examples["recons"]:
            x = examples["recons"][key]
            label = examples["initial_label"] if key == "fbp" else LABELS[key.rstrip("*")]
            panels.append((f"{label}\nPSNR={psnr(x, truth):.2f} HFEN={hfen(x, truth):.2f}",
                           x, "gray"))
    (r0, r1, c0, c1), where = zoom_region(truth)
    low, high = np.percentile(truth[r0:r1, c0:c1], [1, 99])  # the crop's own display window
    high = max(high, low + 1e-3)
    fig, axes = plt.subplots(2, len(panels), figsize=(2.2 * len(panels), 4.9),
                             gridspec_kw={"height_ratios": [1, 1]}, squeeze=False)
    for top, bottom, (name, img, cmap) in zip(axes[0], axes[1], panels):
        gray = cmap == "gray"
        shown = dict(cmap=cmap, vmin=0 if gray else None, vmax=1 if gray else None)
        top.imshow(img, aspect=None if gray else "auto", **shown)
        top.set_title(name, fontsize=8)
        top.axis("off")
        bottom.axis("off")
        if gray:
            bottom.imshow(img[r0:r1, c0:c1], cmap="gray", vmin=low, vmax=high,
                          interpolation="nearest")
            bottom.set_title(f"zoom ({where}), [{low:.2f}, {high:.2f}]", fontsize=7)
    axes[0][0].add_patch(Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0, r1 - r0, fill=False,
                                   edgecolor="red", linewidth=1))
    return save_figure(fig, path, title, dpi=120)


#: the side of :func:`zoom_region`'s square, as a fraction of the image's side
ZOOM_FRACTION = 0.25


def zoom_region(truth, fraction=ZOOM_FRACTION):
    """The square crop a figure zooms into: of side ``fraction`` of the image's, centred on
    the largest lung of the truth (:func:`~cil_genreg.utilities.metrics.lung_mask`, where
    the vessels are), else (no lungs: MNIST, shapes, a head) on the image's centre.

    Parameters
    ----------
    truth : numpy.ndarray
        (H, W).
    fraction : float

    Returns
    -------
    ((int, int, int, int), str)
        the rows r0:r1 and columns c0:c1, and "lung" or "centre".
    """
    from scipy import ndimage
    truth = np.asarray(truth)
    h, w = truth.shape[-2:]
    side = max(4, int(round(fraction * min(h, w))))
    mask = lung_mask(truth) if truth.ndim == 2 else None
    where, (cy, cx) = "centre", (h / 2, w / 2)
    if mask is not None:
        labels, count = ndimage.label(mask)
        largest = 1 + int(np.argmax(ndimage.sum(mask, labels, range(1, count + 1))))
        where, (cy, cx) = "lung", ndimage.center_of_mass(labels == largest)
    r0 = int(np.clip(round(cy - side / 2), 0, h - side))
    c0 = int(np.clip(round(cx - side / 2), 0, w - side))
    return (r0, r0 + side, c0, c0 + side), where


def save_figure(fig, path, title="", dpi=110):
    """Title, lay out, write (making its folder) and close a matplotlib figure.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : str
    title : str
        the figure's suptitle (none when empty).
    dpi : int

    Returns
    -------
    str
        ``path``.
    """
    import matplotlib.pyplot as plt

    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path

