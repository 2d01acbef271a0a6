"""The outputs of a comparison: a plain-text table, CSV / JSON files, and a figure of the
ground truth, the data and each method's reconstruction.
"""
import csv
import json
import os

import numpy as np

from ..utilities.defaults import ALL_METHODS, LABELS
from ..utilities.metrics import psnr

#: how the figures name each forward problem
GEOMETRY_TITLES = {"parallel": "parallel beam (180°)", "limited": "limited angle (90°)",
                   "fan": "fan beam (360°)"}


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


def comparison_figure(examples, path, title=""):
    """A row of panels: the ground truth, the data, then one per method (λ best against the
    truth) with its PSNR in the title; written as PNG."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    truth = examples["truth"]
    order = ["fbp"] + [m + "*" for m in ALL_METHODS[1:] if m + "*" in examples["recons"]]
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
    return save_figure(fig, path, title, dpi=120)


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

