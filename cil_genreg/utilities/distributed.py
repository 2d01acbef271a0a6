"""Running under ``torchrun``: process group, rank and world size, and the few collectives the
package needs (mean of metrics, gathering a split volume, exchanging slab-boundary latents).

``torchrun --nproc_per_node N [--nnodes M ...] -m cil_genreg.cli ...`` starts N processes per
node and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`init` reads them and joins the process group (``nccl`` for CUDA devices, ``gloo`` on
the CPU). Without them (a plain ``python`` or ``cil-genreg`` run) everything here works as a
world of one process and calls no collective. Torch only (no CIL import).
"""
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass
class Context:
    """Where this process stands in the job.

    Parameters
    ----------
    rank : int
        0 .. world_size - 1; rank 0 writes files and shows progress.
    world_size : int
        number of processes (1 without torchrun).
    local_rank : int
        the process's index on its node (picks its GPU).
    device : torch.device
        this process's device (``cuda:LOCAL_RANK`` when CUDA was asked for).
    backend : str or None
        "nccl" or "gloo"; None in a world of one.
    """
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str = None

    @property
    def is_main(self):
        """True on rank 0 (the process that writes and reports)."""
        return self.rank == 0

    @property
    def distributed(self):
        """True when more than one process takes part."""
        return self.world_size > 1


def launched():
    """True when this process was started by ``torchrun`` with more than one process.

    Returns
    -------
    bool
    """
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device="cpu"):
    """Join the process group ``torchrun`` set up (once; later calls return the same context).

    Parameters
    ----------
    device : str or torch.device
        "cpu" (backend gloo) or "cuda" (backend nccl, this process's GPU ``cuda:LOCAL_RANK``).

    Returns
    -------
    Context

    Raises
    ------
    RuntimeError
        when CUDA is asked for and is missing, or there are fewer GPUs on the node than
        processes.
    """
    device = torch.device(device or "cpu")
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' was asked for but torch.cuda.is_available() is "
                               "False: run with --device cpu (backend gloo).")
        if world > 1:
            if local >= torch.cuda.device_count():
                raise RuntimeError(
                    f"local rank {local} has no GPU: this node has {torch.cuda.device_count()} "
                    "GPU(s); start at most that many processes per node (--nproc_per_node).")
            device = torch.device("cuda", local)
            torch.cuda.set_device(device)
    if world == 1:
        return Context(device=device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return Context(rank=rank, world_size=world, local_rank=local, device=device,
                   backend=backend)


def shutdown(ctx):
    """Leave the process group (after a final barrier), if one was joined.

    Parameters
    ----------
    ctx : Context

    Returns
    -------
    None
    """
    if ctx.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _comm_device(ctx):
    return ctx.device if ctx.backend == "nccl" else torch.device("cpu")


def total(ctx, values):
    """The sum over ranks of each number in ``values`` (the same result on every rank).

    Parameters
    ----------
    ctx : Context
    values : sequence of float

    Returns
    -------
    list of float
    """
    if not ctx.distributed:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=_comm_device(ctx))
    dist.all_reduce(t)
    return t.tolist()


def mean(ctx, values):
    """The mean over ranks of each number in ``values`` (each rank one vote); the same result
    on every rank.

    Parameters
    ----------
    ctx : Context
    values : sequence of float

    Returns
    -------
    list of float
    """
    return [v / ctx.world_size for v in total(ctx, values)]


def split(n, world_size):
    """Contiguous, balanced ranges of ``n`` items over ``world_size`` ranks (the first
    ``n % world_size`` ranks get one more).

    Parameters
    ----------
    n, world_size : int

    Returns
    -------
    list of (int, int)
        (start, stop) per rank.

    Raises
    ------
    ValueError
        when there are fewer items than ranks.
    """
    if n < world_size:
        raise ValueError(f"{n} slices cannot be split over {world_size} processes: start at "
                         f"most {n} (--nproc_per_node), or reconstruct in one process.")
    base, extra = divmod(n, world_size)
    bounds, start = [], 0
    for r in range(world_size):
        stop = start + base + (1 if r < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def gather_slabs(ctx, slab, root=0):
    """The volume on rank ``root``: each rank's slab (its slices, along axis 0) concatenated in
    rank order; None on the other ranks.

    Parameters
    ----------
    ctx : Context
    slab : numpy.ndarray
        (slices_r, ...) float32; every rank the same trailing shape.
    root : int

    Returns
    -------
    numpy.ndarray or None
    """
    slab = np.ascontiguousarray(slab, dtype=np.float32)
    if not ctx.distributed:
        return slab
    dev = _comm_device(ctx)
    counts = torch.zeros(ctx.world_size, dtype=torch.int64, device=dev)
    counts[ctx.rank] = slab.shape[0]
    dist.all_reduce(counts)
    most = int(counts.max())
    padded = torch.zeros((most,) + slab.shape[1:], dtype=torch.float32, device=dev)
    padded[:slab.shape[0]] = torch.from_numpy(slab).to(dev)
    parts = [torch.empty_like(padded) for _ in range(ctx.world_size)]
    dist.all_gather(parts, padded)
    if ctx.rank != root:
        return None
    return torch.cat([p[:int(c)] for p, c in zip(parts, counts)]).cpu().numpy()


def exchange_boundaries(ctx, first, last):
    """Each rank's neighbours' edge latents: the last latent of rank r - 1 and the first of
    rank r + 1 (None at the ends of the volume).

    Parameters
    ----------
    ctx : Context
    first, last : array_like
        (d,) this rank's first and last slice latents.

    Returns
    -------
    (numpy.ndarray or None, numpy.ndarray or None)
        ``(before, after)`` for :meth:`GenerativeRegulariser.set_latent_boundary`.
    """
    if not ctx.distributed:
        return None, None
    dev = _comm_device(ctx)
    mine = torch.stack([torch.as_tensor(np.asarray(first, np.float32)),
                        torch.as_tensor(np.asarray(last, np.float32))]).to(dev)
    everyone = [torch.empty_like(mine) for _ in range(ctx.world_size)]
    dist.all_gather(everyone, mine)
    before = everyone[ctx.rank - 1][1].cpu().numpy() if ctx.rank > 0 else None
    after = everyone[ctx.rank + 1][0].cpu().numpy() if ctx.rank < ctx.world_size - 1 else None
    return before, after


def rank_rows(ctx, count):
    """This rank's rows of a global batch of ``count`` items: every ``world_size``-th,
    starting at ``rank`` (the round-robin of torch's ``DistributedSampler``, applied to each
    global batch rather than to the epoch, and without its padding). The ranks' rows of one
    step are then exactly the one-process batch, so that with the loss scaled by
    :func:`loss_scale` the averaged DDP gradient is the one-process gradient.

    Parameters
    ----------
    ctx : Context
    count : int
        items in the global batch.

    Returns
    -------
    slice
    """
    return slice(ctx.rank, count, ctx.world_size)


def loss_scale(ctx, count):
    r"""Factor of a rank's summed per-item losses: :math:`N / B` for :math:`N` ranks and a
    global batch of :math:`B` items. DDP averages gradients over ranks, so
    :math:`\frac{1}{N}\sum_r \nabla \frac{N}{B}\sum_{i \in r} \ell_i = \nabla \frac{1}{B}
    \sum_i \ell_i`, the one-process mean, also when :math:`B` is not a multiple of :math:`N`.

    Parameters
    ----------
    ctx : Context
    count : int

    Returns
    -------
    float
    """
    return ctx.world_size / count


def wrap(ctx, module):
    """``module`` in :class:`torch.nn.parallel.DistributedDataParallel` when several processes
    take part (on this rank's GPU for CUDA); else ``module`` itself.

    Parameters
    ----------
    ctx : Context
    module : torch.nn.Module

    Returns
    -------
    torch.nn.Module
    """
    if not ctx.distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)


def average_gradients(ctx, module):
    """Replace each parameter's gradient by its mean over the ranks (an explicit all-reduce,
    for steps DDP cannot wrap, such as WGAN-GP's double backward); a parameter without a
    gradient on some rank counts as zero there. No-op in a world of one.

    Parameters
    ----------
    ctx : Context
    module : torch.nn.Module

    Returns
    -------
    None
    """
    if not ctx.distributed:
        return
    for p in module.parameters():
        if not p.requires_grad:
            continue
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad)
        p.grad /= ctx.world_size
