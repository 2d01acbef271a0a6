r"""The generator as a (nonlinear) CIL Operator from latent space to image space."""
from ..utilities._cil import require_cil

require_cil()
import torch
from cil.framework import ImageGeometry, VectorGeometry
from cil.optimisation.operators import Operator

from ..utilities.bridge import as_tensor, from_tensor
from ..latent import GeneratorAdapter, encode_mean


class GeneratorOperator(Operator):
    r"""The generator :math:`z \mapsto G(z)` as a nonlinear CIL Operator.

    The domain is a :class:`~cil.framework.VectorGeometry` of length :math:`n d` holding the
    latents of the :math:`n` slices one after another (:math:`n = 1` for a 2D image); the range
    is an :class:`~cil.framework.ImageGeometry` of the generator's image size, 2D, or 3D with
    :math:`n` slices (each slice generated from its own latent, all in one batch).

    Parameters
    ----------
    generator : torch.nn.Module
        :math:`G: (B, d) \to (B, 1, H, W)`.
    latent_dim : int, optional
        :math:`d`, for a module without a ``latent_dim`` attribute.
    range_geometry : ImageGeometry, optional
        default: a 2D ImageGeometry of the generator's image shape.
    device : str, optional
        where the generator runs.
    threads : int, "auto" or None
        CPU threads torch uses for the generator's passes (see :class:`GeneratorAdapter`).
    """

    def __init__(self, generator, latent_dim=None, range_geometry=None, device=None, threads="auto"):
        self.adapter = GeneratorAdapter(generator, latent_dim, device=device, threads=threads)
        h, w = self.adapter.image_shape
        if range_geometry is None:
            range_geometry = ImageGeometry(voxel_num_x=w, voxel_num_y=h)
        self.adapter.check_image_shape(range_geometry.shape, "range_geometry")
        self.n_slices = 1 if len(range_geometry.shape) == 2 else int(range_geometry.shape[0])
        domain = VectorGeometry(self.n_slices * self.adapter.latent_dim)
        super().__init__(domain_geometry=domain, range_geometry=range_geometry)

    @property
    def latent_dim(self):
        return self.adapter.latent_dim

    def is_linear(self):
        return False

    def encode(self, x):
        """The encoder's latent of an image (each slice's, for a volume): the mean of a VAE's
        encoder or an AE's code; None when the generator has no encoder.

        Parameters
        ----------
        x : DataContainer or numpy.ndarray
            an image of the range geometry's shape.

        Returns
        -------
        VectorData or None
            in the domain geometry.
        """
        h, w = self.adapter.image_shape
        code = encode_mean(self.adapter.module, as_tensor(x, device=self.adapter.device)
                           .reshape(-1, 1, h, w))
        if code is None:
            return None
        z = self.domain_geometry().allocate(None)
        z.fill(code.reshape(-1).cpu().numpy())
        return z

    def latent_batch(self, z):
        """The latent VectorData (or array) as a (slices, d) tensor on the generator's device.

        Parameters
        ----------
        z : VectorData or numpy.ndarray
            of ``slices * d`` entries.

        Returns
        -------
        torch.Tensor
            (slices, d), float32.

        Raises
        ------
        ValueError
            for the wrong number of entries, or NaN or Inf values.
        """
        t = as_tensor(z, device=self.adapter.device)
        expected = self.n_slices * self.adapter.latent_dim
        if t.numel() != expected:
            raise ValueError(f"the latent has {t.numel()} entries but this operator takes "
                             f"{self.n_slices} slice(s) x latent_dim {self.adapter.latent_dim} "
                             f"= {expected}.")
        if not bool(torch.isfinite(t).all()):
            raise ValueError("the latent contains NaN or Inf values: check the step size of "
                             "the algorithm (a diverging iteration gives these).")
        return t.reshape(self.n_slices, self.adapter.latent_dim)

    def direct(self, x, out=None):
        r"""The generated image :math:`x = G(z)` (each slice from its own latent).

        Parameters
        ----------
        x : VectorData
            the latent :math:`z`, in the domain geometry.
        out : ImageData, optional
            filled in place and returned.

        Returns
        -------
        ImageData
            in the range geometry.
        """
        z = self.latent_batch(x)
        with torch.inference_mode(), self.adapter.threads(len(z)):
            image = self.adapter(z)
        return from_tensor(image, out=out, geometry=self.range_geometry())

    def linearise(self, z):
        r"""Linearise :math:`G` at :math:`z` from one forward pass:

        .. math:: G(z), \qquad w \mapsto J_G(z)^T w .

        The vector–Jacobian product runs backward through the generator only.

        Parameters
        ----------
        z : VectorData or numpy.ndarray
            the latent, in the domain geometry.

        Returns
        -------
        image : torch.Tensor
            :math:`G(z)`, (slices, 1, H, W).
        pullback : callable
            maps a tensor ``w`` of that shape to :math:`J_G(z)^T w`, (slices, d).
        """
        zt = self.latent_batch(z).clone().requires_grad_(True)
        with torch.enable_grad(), self.adapter.frozen(), self.adapter.threads(len(zt)):
            image = self.adapter(zt)

        def pullback(w):
            with self.adapter.threads(len(zt)):
                (g,) = torch.autograd.grad(image, zt, w.reshape(image.shape).to(image))
            return g

        return image.detach(), pullback

    def adjoint_jacobian(self, z, w, out=None):
        r"""The adjoint of the Jacobian, :math:`J_G(z)^T w`, applied to an image ``w``.

        Parameters
        ----------
        z : VectorData
            where :math:`G` is linearised, in the domain geometry.
        w : ImageData
            in the range geometry.
        out : VectorData, optional
            filled in place and returned.

        Returns
        -------
        VectorData
            in the domain geometry.
        """
        _, pullback = self.linearise(z)
        g = pullback(as_tensor(w, device=self.adapter.device))
        return from_tensor(g, out=out, geometry=self.domain_geometry())
