r"""A smooth CIL Function of the latent as a batched torch ``fg`` for the quasi-Newton solver.

The objective :math:`f(z) = \sum_k s_k f_k(z)` is taken apart into its terms (CIL's
``SumFunction`` and ``ScaledFunction`` nest), and each term is evaluated as fast as the package
knows how, value and gradient together:

* :class:`~cil_genreg.LatentLeastSquares` :math:`c\|A\,G(z) - y\|_W^2`, and any
  ``OperatorCompositionFunction(h, GeneratorOperator)`` :math:`h(G(z))`: one batched pass of the
  generator for all the points, the CIL function and its gradient on each generated image, one
  vector–Jacobian product back through the generator;
* ``L2NormSquared`` :math:`\|z - b\|^2` and ``ConstantFunction``: in closed form, in torch;
* any other differentiable CIL Function: its ``__call__`` and ``gradient`` on a VectorData.
"""
import torch
from cil.optimisation.functions import (ConstantFunction, L2NormSquared,
                                        OperatorCompositionFunction, ScaledFunction, SumFunction)

from ..utilities.bridge import as_tensor, from_tensor
from ..functions.latent_least_squares import LatentLeastSquares
from ..operators.generator_operator import GeneratorOperator


def terms_of(f, scale=1.0):
    """``[(scale_k, f_k)]`` with :math:`f = \\sum_k s_k f_k`, through sums and scalings.

    Parameters
    ----------
    f : cil Function
    scale : float
        factor applied to every term.

    Returns
    -------
    list of (float, Function)
    """
    if isinstance(f, SumFunction):
        return [t for g in f.functions for t in terms_of(g, scale)]
    if isinstance(f, ScaledFunction):
        return terms_of(f.function, scale * float(f.scalar))
    return [(scale, f)]


class _ClosedForm:
    """``L2NormSquared`` (:math:`\\|z - b\\|^2`, gradient :math:`2(z - b)`) and constants."""

    def __init__(self, term):
        self.constant = float(term.constant) if isinstance(term, ConstantFunction) else None
        b = getattr(term, "b", None)
        self.b = None if b is None else as_tensor(b).reshape(1, -1)

    def __call__(self, z):
        if self.constant is not None:
            return torch.full((z.shape[0],), self.constant, dtype=z.dtype), torch.zeros_like(z)
        r = z if self.b is None else z - self.b
        return r.square().sum(dim=1), 2.0 * r


class _ThroughGenerator:
    r""":math:`h(G(z))` for a CIL function :math:`h` of the image: the generator runs once for
    all points (as a batch of points × slices), :math:`h` and :math:`\nabla h` per image, and
    one vector–Jacobian product :math:`J_G^T \nabla h` for all."""

    def __init__(self, operator, value_and_gradient):
        self.operator = operator
        self.value_and_gradient = value_and_gradient
        self.image = operator.range_geometry().allocate(None)
        self.back = operator.range_geometry().allocate(None)

    def __call__(self, z):
        adapter, n = self.operator.adapter, self.operator.n_slices
        zt = z.detach().reshape(-1, adapter.latent_dim).to(adapter.device).requires_grad_(True)
        with torch.enable_grad(), adapter.frozen(), adapter.threads(len(zt)):
            images = adapter(zt)
            per_point = images.detach().reshape(z.shape[0], n, *images.shape[1:])
            values, backs = [], []
            for image in per_point:
                from_tensor(image, out=self.image)
                value = self.value_and_gradient(self.image, self.back)
                values.append(float(value))
                backs.append(as_tensor(self.back, device=images.device).reshape(
                    n, *images.shape[1:]).clone())
            (g,) = torch.autograd.grad(images, zt, torch.cat(backs))
        return (torch.tensor(values, dtype=z.dtype),
                g.reshape(z.shape[0], -1).to(z.device, z.dtype))


def _least_squares_term(f):
    """:math:`c\\|Ax - y\\|_W^2` and its gradient :math:`2cA^TW(Ax - y)` on the image, one
    projection each way (:meth:`~cil_genreg.LatentLeastSquares.image_value_and_gradient`)."""
    return _ThroughGenerator(f.generator_operator, f.image_value_and_gradient)


def _composition_term(f):
    """:math:`h(G(z))` for ``OperatorCompositionFunction(h, GeneratorOperator)``."""
    h = f.function

    def value_and_gradient(image, out):
        h.gradient(image, out=out)
        return h(image)

    return _ThroughGenerator(f.operator, value_and_gradient)


class _Generic:
    """Any differentiable CIL Function of the latent: its ``__call__`` and ``gradient``."""

    def __init__(self, term, geometry):
        self.term = term
        self.x = geometry.allocate(None)
        self.grad = geometry.allocate(None)

    def __call__(self, z):
        values, grads = [], []
        for row in z:
            from_tensor(row, out=self.x)
            values.append(float(self.term(self.x)))
            self.term.gradient(self.x, out=self.grad)
            grads.append(as_tensor(self.grad).reshape(-1).clone())
        return torch.tensor(values, dtype=z.dtype), torch.stack(grads).to(z.device, z.dtype)


def evaluator(term, geometry):
    """The fastest evaluator of one term, ``e(z) -> (values (R,), gradients (R, N))`` for
    points ``z`` of shape (R, N).

    Parameters
    ----------
    term : cil Function
    geometry : VectorGeometry
        the latent geometry (used by the generic evaluator).

    Returns
    -------
    callable
    """
    if isinstance(term, LatentLeastSquares):
        return _least_squares_term(term)
    if isinstance(term, OperatorCompositionFunction) and isinstance(term.operator,
                                                                    GeneratorOperator):
        return _composition_term(term)
    if type(term) is L2NormSquared or isinstance(term, ConstantFunction):
        return _ClosedForm(term)
    return _Generic(term, geometry)


class LatentObjective:
    r"""A smooth CIL Function :math:`f(z) = \sum_k s_k f_k(z)` of the latent, evaluated on a
    batch of points: :math:`f` and :math:`\nabla f` together, each term by its fastest
    :func:`evaluator`.

    Parameters
    ----------
    f : cil Function
        smooth (differentiable) in the latent.
    geometry : VectorGeometry
        the latent geometry of length :math:`N`.

    Attributes
    ----------
    kinds : list of str
        how each term is evaluated ("through generator", "closed form", "generic").
    """

    def __init__(self, f, geometry):
        self.terms = [(s, evaluator(t, geometry)) for s, t in terms_of(f)]
        names = {_ThroughGenerator: "through generator", _ClosedForm: "closed form",
                 _Generic: "generic"}
        self.kinds = [names[type(e)] for _, e in self.terms]

    def __call__(self, z, rows=None):
        r"""Values and gradients at the points ``z`` (the ``fg`` of
        :func:`~cil_genreg.latent.batched_quasi_newton`; ``rows`` is not needed).

        Parameters
        ----------
        z : torch.Tensor
            (R, N) points.
        rows : torch.Tensor, optional
            ignored (the problems differ only in their starting points).

        Returns
        -------
        tuple of torch.Tensor
            values (R,), gradients (R, N), and an empty (R, 0) by-product.
        """
        value = torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
        grad = torch.zeros_like(z)
        for scale, term in self.terms:
            v, g = term(z)
            value += scale * v.to(z.device)
            grad += scale * g
        return value, grad, z.new_zeros(z.shape[0], 0)
