r"""Data misfits :math:`\varphi(v - G(z))` of the latent step, one value per batch element.

Every proximal map of a generative regulariser solves

.. math:: z^* = \underset{z}{\text{argmin}}\; \varphi(v - G(z)) + c\|z\|_2^2

for a batch of targets :math:`v`. A misfit is a callable ``misfit(image, target)`` taking
``image = G(z)`` and ``target = v`` (both of shape (B, 1, H, W)) and returning the (B,) values
:math:`\varphi(v - G(z))`, one per batch element, so that the elements stay independent.
"""
import torch


def _per_sample_sum(t):
    return t.flatten(1).sum(dim=1)


class SquaredMisfit:
    r""":math:`\varphi(r) = w\,\|r\|_2^2` with :math:`r = v - G(z)`.

    Parameters
    ----------
    weight : float
        :math:`w > 0`, e.g. :math:`1/(1+2\tau)` in the soft regulariser's prox.
    """

    def __init__(self, weight=1.0):
        self.weight = float(weight)

    def __call__(self, image, target):
        r = (target - image).flatten(1)
        return torch.linalg.vecdot(r, r).mul_(self.weight)


class HuberMisfit:
    r""":math:`\varphi(r) = \sum_i h_\delta(r_i)`, the Moreau envelope of :math:`|\cdot|`:

    .. math:: h_\delta(r) = \begin{cases} r^2/(2\delta) & |r| \le \delta \\ |r| - \delta/2 & |r| > \delta \end{cases}

    Parameters
    ----------
    delta : float
        :math:`\delta > 0` (the prox step :math:`\tau` in the sparse-deviation prox).
    """

    def __init__(self, delta):
        self.delta = float(delta)

    def __call__(self, image, target):
        a = (target - image).abs()
        d = self.delta
        return _per_sample_sum(torch.where(a <= d, a.square() / (2 * d), a - d / 2))


class NegatedInnerProduct:
    r"""Not a misfit but the term of the same slot for a conjugate:
    :math:`\varphi = -\langle G(z), s\rangle`, the latent maximisation
    :math:`\sup_z \langle G(z), s\rangle - c\|z\|^2` of a convex conjugate, written as a
    minimisation. The ``target`` passed to it is :math:`s`."""

    def __call__(self, image, target):
        return -_per_sample_sum(image * target)
