"""The DataContainer ⇄ torch bridge, and any CIL linear operator as a torch autograd function.

On the CPU a float32 DataContainer and the tensor made from it share memory: no copy is made
either way. :class:`CILOperatorFunction` runs a CIL linear operator inside a torch graph:
forward is ``A.direct``, backward is ``A.adjoint`` (the vector–Jacobian product of a linear
map), so ``torch.autograd`` differentiates through ASTRA or TIGRE projectors.
"""
from ._cil import require_cil

require_cil()
import numpy as np
import torch


def _array_of(x):
    return x.as_array() if hasattr(x, "as_array") else np.asarray(x)


def as_tensor(x, device=None, dtype=torch.float32):
    """A torch tensor holding the values of a DataContainer (or numpy array).

    A C-contiguous float32 array on the CPU is shared, not copied: writing to the tensor
    writes to the container. Anything else (other dtype, other device) is copied.

    Parameters
    ----------
    x : DataContainer or numpy.ndarray
    device : str or torch.device, optional
        default CPU.
    dtype : torch.dtype
        default float32.

    Returns
    -------
    torch.Tensor
        of the shape of ``x``.
    """
    arr = _array_of(x)
    if arr.dtype != np.float32 or not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr, dtype=np.float32)
    t = torch.from_numpy(arr)
    if device is not None or dtype != torch.float32:
        t = t.to(device=device, dtype=dtype)
    return t


def from_tensor(t, out=None, geometry=None):
    """Write a tensor into a DataContainer and return the container.

    Parameters
    ----------
    t : torch.Tensor
        values; reshaped to the container's shape (it must have as many elements).
    out : DataContainer, optional
        filled in place and returned.
    geometry : ImageGeometry or AcquisitionGeometry, optional
        a new container of this geometry when ``out`` is None. For a contiguous float32 CPU
        tensor the new ImageData / AcquisitionData *shares* ``t``'s memory (no copy); other
        tensors and geometries are copied.

    Returns
    -------
    DataContainer
        ``out``, or the new container.

    Raises
    ------
    ValueError
        when neither ``out`` nor ``geometry`` is given, or the number of elements differs.
    """
    if out is None:
        if geometry is None:
            raise ValueError("from_tensor needs `out` or `geometry` to know what to return.")
        shared = _wrap(t, geometry)
        if shared is not None:
            return shared
        out = geometry.allocate(None)
    dest = _array_of(out)
    t = t.detach()
    if t.numel() != dest.size:
        raise ValueError(f"cannot write a tensor of shape {tuple(t.shape)} into a container of "
                         f"shape {dest.shape}.")
    if dest.dtype == np.float32 and dest.flags.c_contiguous and dest.flags.writeable:
        torch.from_numpy(dest).copy_(t.reshape(dest.shape))
    else:
        out.fill(t.reshape(dest.shape).cpu().numpy().astype(dest.dtype, copy=False))
    return out


def _wrap(t, geometry):
    """An ImageData / AcquisitionData of ``geometry`` on ``t``'s memory, or None where that
    cannot be done without a copy."""
    from cil.framework import AcquisitionData, AcquisitionGeometry, ImageData, ImageGeometry
    kinds = ((ImageGeometry, ImageData), (AcquisitionGeometry, AcquisitionData))
    cls = next((c for g, c in kinds if isinstance(geometry, g)), None)
    t = t.detach()
    if cls is None or t.device.type != "cpu" or t.dtype != torch.float32 or \
            not t.is_contiguous() or t.numel() != int(np.prod(geometry.shape)):
        return None
    return cls(t.reshape(geometry.shape).numpy(), deep_copy=False, geometry=geometry)


class CILOperatorFunction(torch.autograd.Function):
    r"""A CIL linear operator :math:`A` as a torch autograd function, called as
    ``CILOperatorFunction.apply(x, A)``:

    .. math:: y = A x, \qquad \frac{\partial L}{\partial x} = A^T \frac{\partial L}{\partial y}

    (forward ``A.direct``, backward ``A.adjoint``). Use through :func:`cil_operator_to_torch`.

    Parameters
    ----------
    x : torch.Tensor
        of the shape of ``A``'s domain, or with leading batch dimensions (and optionally a
        channel of 1) in front of it: ``(B, *domain)`` or ``(B, 1, *domain)``; each element is
        projected in turn.
    operator : cil LinearOperator
        :math:`A`.

    Returns
    -------
    torch.Tensor
        :math:`A x`, of shape ``(*lead, *range)``, on the device and dtype of ``x``.
    """

    @staticmethod
    def forward(ctx, x, operator):
        ctx.operator = operator
        return _apply(operator, x, adjoint=False)

    @staticmethod
    def backward(ctx, grad_output):
        return _apply(ctx.operator, grad_output, adjoint=True), None


def _apply(operator, x, adjoint):
    src_geom = operator.range_geometry() if adjoint else operator.domain_geometry()
    dst_geom = operator.domain_geometry() if adjoint else operator.range_geometry()
    src_shape, dst_shape = tuple(src_geom.shape), tuple(dst_geom.shape)
    shape = tuple(x.shape)
    if shape == src_shape:
        lead = ()
    elif shape[-len(src_shape):] == src_shape:
        lead = shape[:-len(src_shape)]
    else:
        raise ValueError(f"the operator {'adjoint' if adjoint else 'direct'} takes shape "
                         f"{src_shape} (optionally with leading batch dimensions), got {shape}.")
    flat = x.detach().reshape(-1, *src_shape)
    src = src_geom.allocate(None)
    dst = dst_geom.allocate(None)
    results = []
    apply = operator.adjoint if adjoint else operator.direct
    for item in flat:
        from_tensor(item, out=src)
        apply(src, out=dst)
        results.append(as_tensor(dst).clone())
    y = torch.stack(results).reshape(*lead, *dst_shape)
    return y.to(device=x.device, dtype=x.dtype)


class CILOperatorModule(torch.nn.Module):
    """A CIL linear operator as a :class:`torch.nn.Module`: ``module(x) = A x`` with autograd
    (the backward pass is ``A.adjoint``). ``module.adjoint(y)`` applies the adjoint.

    Parameters
    ----------
    operator : cil LinearOperator
    """

    def __init__(self, operator):
        super().__init__()
        self.operator = operator

    def forward(self, x):
        return CILOperatorFunction.apply(x, self.operator)

    def adjoint(self, y):
        return _apply(self.operator, y, adjoint=True)


def cil_operator_to_torch(operator):
    r"""Wrap a CIL linear operator (e.g. ``cil.plugins.astra.ProjectionOperator``) for torch
    graphs: ``A_t = cil_operator_to_torch(A); loss = (A_t(x) - y).square().sum()``,

    .. math:: A_t(x) = A x, \qquad \text{backward: } w \mapsto A^T w .

    Parameters
    ----------
    operator : cil LinearOperator
        :math:`A`.

    Returns
    -------
    CILOperatorModule
        a :class:`torch.nn.Module` applying :math:`A` to batches (see
        :class:`CILOperatorFunction`); its ``adjoint(y)`` applies :math:`A^T`.

    Raises
    ------
    ValueError
        when ``operator.is_linear()`` is False.
    """
    if hasattr(operator, "is_linear") and not operator.is_linear():
        raise ValueError("cil_operator_to_torch needs a linear operator (its backward pass is "
                         "the adjoint); got a nonlinear one.")
    return CILOperatorModule(operator)
