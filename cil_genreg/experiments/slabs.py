r"""Slab-parallel reconstruction of a parallel-beam volume: the slices are split into
contiguous slabs, one per process (``torchrun``), each with its own projector and device;
the volume is gathered on rank 0.

A parallel beam maps slice :math:`k` of the volume to detector row :math:`k` only, so
:math:`\|Ax - y\|^2 = \sum_r \|A_r x_r - y_r\|^2` over slabs and every slice-wise regulariser
(2D TV per slice, the generative regularisers with ``latent_coupling = 0``) splits exactly:
each rank solves its own slab's problem. With the latent chain (``latent_coupling > 0``) the
slabs share the pair of latents across each slab edge: after every outer iteration each rank
sends its edge latents to its neighbours (:func:`cil_genreg.utilities.distributed.exchange_boundaries`)
and uses theirs, fixed, as the boundary of its next latent step (a block-Jacobi split of the
chain; at a fixed point it is the whole volume's chain). A cone beam mixes slices along its
rays and does not split: it is refused.
"""
import functools

import numpy as np

from ..utilities import distributed


def _labels(geometry):
    return [str(getattr(lab, "value", lab)) for lab in geometry.dimension_labels]


def check_splittable(ag):
    """Refuse geometries that do not split into independent slabs.

    Parameters
    ----------
    ag : AcquisitionGeometry

    Returns
    -------
    None

    Raises
    ------
    ValueError
        for a cone beam, or data without a ``vertical`` axis.
    """
    kind = str(getattr(ag.geom_type, "name", ag.geom_type)).lower()
    if not ag.geom_type == "parallel":
        raise ValueError(
            f"a {kind}-beam acquisition does not split into slabs (its rays cross "
            "slices): reconstruct it in one process (no torchrun), on a GPU for a 3D cone beam.")
    if "vertical" not in _labels(ag):
        raise ValueError(f"the data have no 'vertical' axis (labels {_labels(ag)}): a 2D "
                         "sinogram has no slices to split; run it in one process.")


def slab(data, ig, start, stop):
    """Slices ``start:stop`` of a parallel-beam 3D problem: their data and geometries.

    Parameters
    ----------
    data : AcquisitionData
        3D parallel beam, with a ``vertical`` axis.
    ig : ImageGeometry
        the volume (vertical, horizontal_y, horizontal_x).
    start, stop : int

    Returns
    -------
    (AcquisitionData, ImageGeometry)
        the slab's data and volume geometry.
    """
    ag = data.geometry
    check_splittable(ag)
    ag_s = ag.copy()
    ag_s.set_panel([ag.pixel_num_h, stop - start], pixel_size=[ag.pixel_size_h, ag.pixel_size_v],
                   origin=ag.config.panel.origin)
    ig_s = ig.copy()
    ig_s.voxel_num_z = stop - start
    y = ag_s.allocate(None)
    y.fill(np.take(data.as_array(), np.arange(start, stop), axis=_labels(ag).index("vertical")))
    return y, ig_s


class BoundaryExchange:
    r"""A CIL callback: after each outer iteration, swap the slab-edge latents with the
    neighbouring ranks and set them as the regulariser's boundary
    (:meth:`~cil_genreg.GenerativeRegulariser.set_latent_boundary`). Every rank must run the
    same number of iterations (the exchange is a collective call).

    Parameters
    ----------
    ctx : cil_genreg.utilities.distributed.Context
    regulariser : GenerativeRegulariser, optional
        default: the algorithm's ``g`` (unwrapping ``lam * R``).
    """

    def __init__(self, ctx, regulariser=None):
        self.ctx = ctx
        self.regulariser = regulariser

    def __call__(self, algorithm):
        R = self.regulariser
        if R is None:
            R = getattr(algorithm.g, "function", algorithm.g)
        z = R.latent
        before, after = distributed.exchange_boundaries(self.ctx, z[0], z[-1])
        R.set_latent_boundary(before, after)


def reconstruct_slab(method, data, ig, lam, generator=None, ctx=None, x0=None, iterations=100,
                     latent_coupling=0.0, callbacks=None, start=None, start_lam=None,
                     backend="astra", **options):
    """Reconstruct this rank's slab of a parallel-beam volume and gather the volume on rank 0.

    Parameters
    ----------
    method : str
        "fbp", "tv" (2D TV per slice) or a generative method of
        :func:`cil_genreg.experiments.methods.reconstruct` ("soft", "range", "sparse").
    data : AcquisitionData
        the whole volume's 3D parallel-beam data (every rank reads it; each uses its slab).
    ig : ImageGeometry
        the whole volume.
    lam : float
    generator : torch.nn.Module, optional
    ctx : cil_genreg.utilities.distributed.Context, optional
        default: a world of one (the whole volume, slice-batched).
    iterations : int
        FISTA iterations (the same on every rank).
    latent_coupling : float
        :math:`\\lambda_z` of the latent chain; > 0 exchanges slab-edge latents every iteration.
    callbacks : list, optional
        more CIL callbacks (e.g. a progress bar, on rank 0).
    start : {None, "tv"}
        the generative methods start from FBP, or from 2D TV per slice with ``start_lam``.
    backend : str
    **options
        passed to the regulariser (e.g. ``mu``, ``device``, ``adaptive_tolerance``).

    Returns
    -------
    (numpy.ndarray or None, float)
        the volume (slices, H, W) on rank 0 (None elsewhere), and :math:`\\|Ax - y\\|` of the
        whole volume (on every rank).
    """
    from ..physics import forward
    from . import methods

    ctx = ctx or distributed.Context()
    if latent_coupling and method not in ("soft", "range", "sparse"):
        raise ValueError(f"latent_coupling is an option of the soft, range and sparse "
                         f"regularisers, not of method {method!r}.")
    slices = ig.shape[_labels(ig).index("vertical")]
    start_stop = distributed.split(slices, ctx.world_size)[ctx.rank]
    y, ig_s = slab(data, ig, *start_stop) if ctx.distributed else (data, ig)
    device = "cpu" if ctx.device.type == "cpu" else str(ctx.device)
    A = forward.make_projector(ig_s, y.geometry, backend, device)
    x, _ = forward.initial_reconstruction(A, y, backend, device)
    if method != "fbp":
        generative = method != "tv"
        if generative and start == "tv":
            x = methods.reconstruct("tv", A, y, start_lam, x0=x, iterations=iterations,
                                        tv_per_slice=True)
        calls = list(callbacks or [])
        if generative:
            if method != "latent":
                options["latent_coupling"] = float(latent_coupling)
                if ctx.distributed:
                    options["split_sum"] = functools.partial(distributed.total, ctx)
            if device != "cpu":
                options["device"] = device
            if latent_coupling > 0 and ctx.distributed:
                calls.append(BoundaryExchange(ctx))
        x = methods.reconstruct(method, A, y, lam, generator, x0=x, iterations=iterations,
                                    callbacks=calls, tv_per_slice=True,
                                    **(options if generative else {}))
    residual = (A.direct(x) - y).norm() ** 2
    residual = distributed.total(ctx, [residual])[0] ** 0.5
    volume = distributed.gather_slabs(ctx, x.as_array())
    return volume, residual
