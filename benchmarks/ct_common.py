"""Shared parts of the CT speed benchmarks (``bench_ct_speed.py``, ``bench_ct_slab.py``): the
held-out chest CT at a size, the model that regularises it, and one timed reconstruction by
:func:`cil_genreg.experiments.methods.reconstruct` (the defaults a user gets) with its PSNR."""
import time

import numpy as np

import common

#: the shipped generator that regularises a chest slice of each side: ct-vae-128 at its own
#: 128², the fully convolutional ct-patch-vae-64 run whole at any other multiple of 64
#: (``methods.generator_for``)
CT_MODELS = {128: "ct-vae-128"}
PATCH_MODEL = "ct-patch-vae-64"
#: λ grids per side (TV, soft): the demos' (``demos/ct_tomography.py``: LAMBDAS at 128²,
#: FULL_LAMBDAS at 512²); other sides take the nearest's grid scaled by the side ratio
TV_LAMBDAS = {128: (3.0, 10.0, 30.0), 512: (100.0, 150.0, 200.0)}
SOFT_LAMBDAS = {128: (300.0, 1000.0, 3000.0), 512: (3000.0, 10000.0, 30000.0)}
#: the CT demo's soft settings (μ and its 3 warm-started inner iterations per proximal map)
SOFT_MU = 1e-3
DEMO_INNER = {"max_iteration": 3}


def model_for(size, model=None):
    """The model name for slices of side ``size`` (``model`` when given)."""
    return model or CT_MODELS.get(size, PATCH_MODEL)


def grid_for(grids, size):
    """The λ grid of ``size``: its own, or the nearest side's scaled by the side ratio."""
    if size in grids:
        return tuple(grids[size])
    near = min(grids, key=lambda s: abs(s - size))
    return tuple(v * size / near for v in grids[near])


def chest_slab(size=512, depth=64, start=None):
    """(slices (depth, size, size) float32 in [0, 1], first index, held-out indices within it):
    consecutive axial slices of the chest CT (wide window), centred on its held-out block
    (``datasets.ct_blocks``) unless ``start`` is given; slices outside that block were seen in
    training by the shipped models."""
    from cil_genreg.datasets import ct
    from cil_genreg.datasets._common import resize
    vol, _ = ct.ct_volume("chest")
    test = ct.ct_blocks(len(vol), ct.VOLUMES["chest"]["held_out"])["test"][0]
    depth = min(int(depth), len(vol))
    if start is None:
        start = max(0, min(len(vol) - depth, (test[0] + test[1] - depth) // 2))
    slab = ct.apply_window(vol[start:start + depth])
    if size != slab.shape[-1]:
        slab = np.stack([resize(s[None], size)[0] for s in slab])
    held = [i for i in range(depth) if test[0] <= start + i < test[1]]
    return np.ascontiguousarray(np.clip(slab, 0, 1), dtype=np.float32), start, held


def held_out_slice(size, index=0):
    """A held-out chest slice ``(size, size)`` (``datasets.ct_slices('chest', 'test')``)."""
    from cil_genreg import datasets
    return datasets.ct_slices("chest", "test", size=size)[index]


def timed(method, A, y, lam, generator, x0, iterations, truth, **options):
    """One reconstruction by ``methods.reconstruct``: its seconds and PSNR (data range 1)."""
    from cil_genreg.experiments import methods
    t = time.perf_counter()
    x = methods.reconstruct(method, A, y, lam, generator, x0=x0, iterations=iterations,
                            **options)
    seconds = time.perf_counter() - t
    return {"lam": lam, "seconds": seconds, "psnr": common.psnr(x, truth)}


def best_of(method, lams, A, y, generator, x0, iterations, truth, **options):
    """Every λ of ``lams`` (:func:`timed`): the rows and the one of highest PSNR."""
    rows = [timed(method, A, y, lam, generator, x0, iterations, truth, **options)
            for lam in lams]
    return rows, max(rows, key=lambda r: r["psnr"])
