"""Honest ratio accounting for the time-to-equal-PSNR comparisons (bench_soft, bench_range).

Per digit, ``ratio = reference time / our time to the reference's final PSNR`` when we reach
it; a digit we never reach is a *miss*. Over the digits:

* ``reached``: k/n digits reached;
* ``median_misses_zero``: the median with every miss counted as ratio 0 (what the targets use);
* ``geomean_all``: the geometric mean over all digits, a miss counted at the time our method
  stopped (``reference time / our total time``: what a user paid for an answer that is not as
  good);
* ``geomean_reached``, ``median_reached``, ``min_reached``: over the digits reached only.
"""
import math

import numpy as np


def _geomean(values):
    values = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    return float(np.exp(np.mean(np.log(values)))) if values else None


def ratio_summary(ratios, stopped_ratios):
    """The summary of one comparison.

    Parameters
    ----------
    ratios : list of float or None
        per digit, reference time / our time to the reference's PSNR; None for a miss.
    stopped_ratios : list of float
        per digit, reference time / our total time (used for the misses).

    Returns
    -------
    dict
    """
    n = len(ratios)
    reached = [r for r in ratios if r is not None]
    with_zeros = [0.0 if r is None else r for r in ratios]
    at_stop = [s if r is None else r for r, s in zip(ratios, stopped_ratios)]
    return {"reached": f"{len(reached)}/{n}", "reached_count": len(reached), "digits": n,
            "median_misses_zero": float(np.median(with_zeros)) if n else None,
            "geomean_all": _geomean(at_stop),
            "geomean_reached": _geomean(reached),
            "median_reached": float(np.median(reached)) if reached else None,
            "min_reached": min(reached) if reached else None}


def _f(v):
    return "n/a" if v is None else f"x{v:.1f}"


def summary_line(name, s, target=None, min_reached=None):
    """One printed line: reached, the median with misses as 0, the all-digits geomean, the
    reached-only figures, and whether the target (median with misses as 0) is met."""
    line = (f"  {name}: reached {s['reached']}, median (misses = 0) {_f(s['median_misses_zero'])}"
            f", geomean all digits {_f(s['geomean_all'])}; on the digits reached: geomean "
            f"{_f(s['geomean_reached'])}, median {_f(s['median_reached'])}, min "
            f"{_f(s['min_reached'])}")
    if target is not None:
        ok = (s["median_misses_zero"] or 0) >= target and \
            (min_reached is None or s["reached_count"] >= min_reached)
        need = f"median >= {target:g}x" + (f", >= {min_reached}/{s['digits']} reached"
                                           if min_reached is not None else "")
        line += f"  [target {need}: {'met' if ok else 'NOT met'}]"
    return line
