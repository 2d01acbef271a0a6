"""Run by tests/test_slabs.py under ``torchrun --nproc_per_node 2``: the slab-parallel
reconstruction of a small volume, with and without the latent chain; rank 0 saves both."""
import sys

import numpy as np

from cil_genreg.utilities import distributed
from cil_genreg.experiments import slabs
from slab_problem import OPTIONS, problem


def main(out):
    ctx = distributed.init("cpu")
    data, ig, generator = problem()
    volumes = {}
    for coupling in (0.0, 0.5):
        volumes[f"coupling_{coupling:g}"], _ = slabs.reconstruct_slab(
            "soft", data, ig, 60.0, generator, ctx, latent_coupling=coupling, **OPTIONS)
    if ctx.is_main:
        np.savez(out, world_size=ctx.world_size, **volumes)
    distributed.shutdown(ctx)


if __name__ == "__main__":
    main(sys.argv[1])
