r"""(Weighted) least squares in latent space: the range method solved directly for :math:`z`."""
import numpy as np
from cil.optimisation.functions import Function

from ..utilities.bridge import as_tensor, from_tensor
from ..operators.generator_operator import GeneratorOperator
from ..latent import jacobian_norm_squared
from ..utilities.validation import check_non_negative
from ..physics.weights import check_weights


class LatentLeastSquares(Function):
    r"""Least squares through the generator, a function of the latent :math:`z`:

    .. math:: f(z) = c\,\|A\,G(z) - y\|_{2,W}^2 = c \sum_i w_i\, (A\,G(z) - y)_i^2

    with gradient (a vector–Jacobian product through :math:`G` by autograd, and the adjoint of
    :math:`A`)

    .. math:: \nabla f(z) = 2c\, J_G(z)^T A^T W (A\,G(z) - y),

    :math:`W = \mathrm{diag}(w) = I` unless ``weight`` is given (CIL's ``LeastSquares``
    convention; the Poisson weights of :mod:`cil_genreg.physics.weights`).

    With a prior on :math:`z` (e.g. ``alpha * L2NormSquared()``) CIL's FISTA, GD or APGD solve
    the range method :math:`\min_z \|A G(z) - y\|^2 + \alpha\|z\|^2` (as in the paper and in
    CSGM, Bora et al. 2017); the image is ``f.image(z)``. The objective is nonconvex for a
    nonlinear :math:`G`.

    Parameters
    ----------
    A : cil LinearOperator
        forward operator from image space (2D, or 3D slices × H × W) to data space.
    generator : torch.nn.Module
        :math:`G: (B, d) \to (B, 1, H, W)` of ``A``'s image size.
    y : DataContainer
        data, in ``A``'s range geometry.
    c : float
        scale (CIL's LeastSquares convention), finite and :math:`\ge 0`.
    weight : DataContainer, optional
        :math:`w \ge 0`, finite, in ``A``'s range geometry (CIL's LeastSquares ``weight``);
        default None, :math:`W = I`.
    latent_dim : int, optional
        for a module without a ``latent_dim`` attribute.
    L : float, optional
        Lipschitz constant of the gradient; by default estimated as
        :math:`2c\|A\|^2 \max_i w_i \max_k \|J_G(z_k)\|^2` over a few latents :math:`z_k \sim N(0, I)`
        and :math:`z = 0` (an estimate: :math:`f` is not globally Lipschitz-smooth).
    device : str, optional
        where the generator runs.
    threads : int, "auto" or None
        CPU threads torch uses for the generator's passes (default ``"auto"``, see
        :class:`~cil_genreg.latent.GeneratorAdapter`; None: torch's).

    Attributes
    ----------
    latent_geometry : VectorGeometry
        where :math:`z` lives (length slices × d); ``latent_geometry.allocate(0)`` is the
        usual start.
    generator_operator : GeneratorOperator
        :math:`z \mapsto G(z)`.
    """

    def __init__(self, A, generator, y, c=1.0, latent_dim=None, L=None, device=None,
                 threads="auto", weight=None):
        c = check_non_negative(c, "c")
        if not hasattr(y, "as_array") or not hasattr(y, "geometry"):
            raise TypeError(f"y must be a CIL DataContainer in A's range geometry (e.g. "
                            f"AcquisitionData), got {type(y).__name__}: wrap an array with "
                            "A.range_geometry().allocate() and .fill(array).")
        self.generator_operator = GeneratorOperator(generator, latent_dim,
                                                    range_geometry=A.domain_geometry(),
                                                    device=device, threads=threads)
        if tuple(y.shape) != tuple(A.range_geometry().shape):
            raise ValueError(f"y has shape {tuple(y.shape)} but A's range has shape "
                             f"{tuple(A.range_geometry().shape)}.")
        if y.geometry is not None and y.geometry != A.range_geometry():
            raise ValueError("y's geometry is not A's range geometry (same shape, other "
                             "angles, panel or beam): pass data acquired with A's geometry, "
                             "or build A from y.geometry.")
        if not np.isfinite(y.as_array()).all():
            raise ValueError("y contains NaN or Inf values.")
        self.A = A
        self.y = y
        self.c = float(c)
        self.weight = check_weights(weight, A.range_geometry(), "weight")
        self._weighted = A.range_geometry().allocate(None) if weight is not None else None
        self._image = A.domain_geometry().allocate(None)
        self._residual = A.range_geometry().allocate(None)
        super().__init__(L=L)

    @property
    def latent_geometry(self):
        return self.generator_operator.domain_geometry()

    def image(self, z, out=None):
        r"""The image :math:`x = G(z)` of a latent.

        Parameters
        ----------
        z : VectorData
            in :attr:`latent_geometry`.
        out : ImageData, optional
            filled in place and returned.

        Returns
        -------
        ImageData
            in ``A``'s domain geometry.
        """
        return self.generator_operator.direct(z, out=out)

    def _data_residual(self):
        """:math:`A x - y` for the image held in ``self._image``."""
        self.A.direct(self._image, out=self._residual)
        self._residual.subtract(self.y, out=self._residual)
        return self._residual

    def image_value_and_gradient(self, image, out):
        r"""The data term of an image and its gradient in the image, one projection each way:
        :math:`c\|Ax - y\|_W^2` and :math:`2cA^TW(Ax - y)`.

        Parameters
        ----------
        image : ImageData
            :math:`x`, in ``A``'s domain geometry.
        out : ImageData
            filled with the gradient.

        Returns
        -------
        float
        """
        self.A.direct(image, out=self._residual)
        self._residual.subtract(self.y, out=self._residual)
        weighted = self._weigh(self._residual)
        self.A.adjoint(weighted, out=out)
        out *= 2.0 * self.c
        return self._value(self._residual, weighted)

    def _weigh(self, residual):
        """:math:`W r` (``residual`` itself when unweighted)."""
        if self.weight is None:
            return residual
        return residual.multiply(self.weight, out=self._weighted)

    def _value(self, residual, weighted=None):
        """:math:`c\\, r^T W r` (``weighted``: :math:`W r` when already at hand)."""
        if self.weight is None:
            return self.c * residual.squared_norm()
        return self.c * residual.dot(self._weigh(residual) if weighted is None else weighted)

    def __call__(self, z):
        r"""The value

        .. math:: f(z) = c\,\|A\,G(z) - y\|_{2,W}^2 .

        Parameters
        ----------
        z : VectorData
            in :attr:`latent_geometry`.

        Returns
        -------
        float

        Raises
        ------
        ValueError
            when ``z`` has the wrong length or contains NaN or Inf.
        """
        self.generator_operator.direct(z, out=self._image)
        return self._value(self._data_residual())

    def gradient(self, z, out=None):
        r"""The gradient, a vector–Jacobian product through :math:`G` (autograd):

        .. math:: \nabla f(z) = 2c\, J_G(z)^T A^T W (A\,G(z) - y) .

        Parameters
        ----------
        z : VectorData
            in :attr:`latent_geometry`.
        out : VectorData, optional
            filled in place and returned.

        Returns
        -------
        VectorData
            in :attr:`latent_geometry`.
        """
        image, pullback = self.generator_operator.linearise(z)
        from_tensor(image, out=self._image)
        back = self.A.adjoint(self._weigh(self._data_residual()), out=self._image)
        g = pullback(as_tensor(back, device=image.device).mul_(2.0 * self.c))
        return from_tensor(g, out=out, geometry=self.latent_geometry)

    @property
    def L(self):
        """Lipschitz constant of the gradient: the given ``L``, else :meth:`estimate_L` (once)."""
        if self._L is None:
            self._L = self.estimate_L()
        return self._L

    @L.setter
    def L(self, value):
        self._L = value

    def estimate_L(self, samples=4, iterations=10, seed=0):
        r"""Estimate the Lipschitz constant of :math:`\nabla f`,

        .. math:: L \approx 2|c|\,\|A\|^2 \max_i w_i \max_k \|J_G(z_k)\|_2^2 ,

        by power iteration on :math:`J_G^T J_G` at :math:`z_0 = 0` and ``samples`` draws
        :math:`z_k \sim N(0, I)` (a lower estimate: :math:`f` is not globally Lipschitz-smooth).

        Parameters
        ----------
        samples : int
            random latents besides :math:`z = 0`.
        iterations : int
            power iterations per latent.
        seed : int
            seeds the draws.

        Returns
        -------
        float
        """
        largest = jacobian_norm_squared(self.generator_operator.adapter, samples, iterations,
                                        seed)
        most = 1.0 if self.weight is None else float(self.weight.max())
        return 2.0 * abs(self.c) * self.A.norm() ** 2 * most * max(largest, 1e-12)
