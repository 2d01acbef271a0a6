r"""The potential of the latent given an image (torch only): the latent block of the soft
posterior's Gibbs sampler,

.. math:: U(w) = \frac{1}{2\tau^2}\|x - G(w)\|^2 + \frac12\|w\|^2, \qquad
          \nabla U(w) = -\frac{1}{\tau^2} J_G(w)^T (x - G(w)) + w,

with one image :math:`x` per chain (row of :math:`w`), for
:class:`~cil_genreg.latent.LangevinChain`.
"""
import torch

from .generator import GeneratorAdapter
from .misfits import SquaredMisfit


class ImageMisfitPotential:
    r""":math:`U(w)` and :math:`\nabla U(w)` (module docstring) for a batch of latents, each
    against its own target image.

    Parameters
    ----------
    generator : torch.nn.Module or GeneratorAdapter
        :math:`G: (B, d) \to (B, 1, H, W)`.
    targets : torch.Tensor
        (R, H, W) or (R, 1, H, W): the images :math:`x`, one per chain.
    tau : float
        :math:`\tau > 0`.
    """

    def __init__(self, generator, targets, tau):
        self.adapter = generator if isinstance(generator, GeneratorAdapter) \
            else GeneratorAdapter(generator)
        self.misfit = SquaredMisfit(1.0 / (2.0 * float(tau) ** 2))
        self.set_targets(targets)

    def set_targets(self, targets):
        """Condition on new images (R, H, W) or (R, 1, H, W)."""
        h, w = self.adapter.image_shape
        self.targets = torch.as_tensor(targets, dtype=torch.float32).reshape(-1, 1, h, w) \
            .to(self.adapter.device)

    def images(self, w):
        """:math:`G(w)` of latent rows (R, d), (R, 1, H, W), without gradients."""
        a = self.adapter
        with torch.inference_mode(), a.threads(len(w)):
            return a(w.detach().to(a.device, torch.float32)).cpu()

    def __call__(self, w):
        """Values (R,) and gradients (R, d) at the latents ``w`` (R, d)."""
        a = self.adapter
        if w.shape[0] != self.targets.shape[0]:
            raise ValueError(f"{w.shape[0]} latents against {self.targets.shape[0]} target "
                             "images: one image per chain.")
        wt = w.detach().to(a.device, torch.float32).requires_grad_(True)
        with torch.enable_grad(), a.frozen(), a.threads(len(wt)):
            value = self.misfit(a(wt), self.targets) + 0.5 * wt.square().sum(1)
            (grad,) = torch.autograd.grad(value.sum(), wt)
        return value.detach().to(w.device, w.dtype), grad.to(w.device, w.dtype)
