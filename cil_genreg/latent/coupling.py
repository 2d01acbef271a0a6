r"""The latent chain of a volume: neighbouring slices' latents pulled together,

.. math:: C(z_0, \dots, z_{S-1}) = \lambda_z \Big( \|z_0 - z_{\text{before}}\|^2
   + \sum_{k=0}^{S-2} \|z_{k+1} - z_k\|^2 + \|z_{\text{after}} - z_{S-1}\|^2 \Big),

where the boundary terms are present only when a boundary latent is given (a slab of a larger
volume, whose neighbouring slices live elsewhere, e.g. on another rank). Added to the latent
step of all slices at once, it makes the slices' problems one problem of dimension
:math:`S d`; with :math:`\lambda_z = 0` they separate again. Torch only.
"""
import torch


class LatentChain:
    r"""The coupling :math:`C` above, for a stack of ``chains`` independent volumes (random
    restarts of the same volume) of ``slices`` latents each.

    Parameters
    ----------
    weight : float
        :math:`\lambda_z > 0`.
    before, after : torch.Tensor, optional
        (d,) fixed latents of the slice just before the first and just after the last.

    Raises
    ------
    ValueError
        for a negative or non-finite weight, or a boundary latent that is not a (d,) vector.
    """

    def __init__(self, weight, before=None, after=None):
        weight = float(weight)
        if not weight >= 0 or weight == float("inf"):
            raise ValueError(f"the latent coupling must be a finite number >= 0, got {weight}")
        self.weight = weight
        self.before = None if before is None else torch.as_tensor(before, dtype=torch.float32)
        self.after = None if after is None else torch.as_tensor(after, dtype=torch.float32)
        for name, b in (("before", self.before), ("after", self.after)):
            if b is not None and b.dim() != 1:
                raise ValueError(f"the boundary latent {name!r} must be a (d,) vector, got "
                                 f"shape {tuple(b.shape)}")

    def per_slice(self, z):
        r"""Each slice's share of the pairs: slice :math:`k` carries the pair
        :math:`\lambda_z\|z_{k+1} - z_k\|^2` above it, the last slice the pair with
        ``after``. The pair with ``before`` is left out: it is the lower neighbouring slab's
        ``after`` pair, so that the shares of the slabs of a split volume add up to the
        volume's :math:`C`, each pair counted once.

        Parameters
        ----------
        z : torch.Tensor
            (chains, slices, d).

        Returns
        -------
        torch.Tensor
            (chains, slices).
        """
        share = torch.zeros(z.shape[:2], dtype=z.dtype, device=z.device)
        if z.shape[1] > 1:
            share[:, :-1] = (z[:, 1:] - z[:, :-1]).square().sum(dim=2)
        if self.after is not None:
            share[:, -1] += (self.after.to(z.device) - z[:, -1]).square().sum(dim=1)
        return self.weight * share

    def total(self, z):
        """:math:`C` of each chain, the ``before`` pair included (what the latent step of this
        slab minimises).

        Parameters
        ----------
        z : torch.Tensor
            (chains, slices, d).

        Returns
        -------
        torch.Tensor
            (chains,).
        """
        value = self.per_slice(z).sum(dim=1)
        if self.before is not None:
            value = value + self.weight * (z[:, 0] - self.before.to(z.device)).square().sum(dim=1)
        return value
