"""The DataContainer <-> torch bridge and CIL operators inside torch graphs."""
import numpy as np
import pytest
import torch
from cil.framework import AcquisitionGeometry, ImageGeometry
from cil.plugins.astra import ProjectionOperator

from cil_genreg import as_tensor, cil_operator_to_torch, from_tensor


def test_cpu_float32_container_and_tensor_share_memory():
    x = ImageGeometry(5, 4).allocate(0)
    t = as_tensor(x)
    t[1, 2] = 7.0
    assert x.as_array()[1, 2] == 7.0
    assert t.data_ptr() == x.as_array().ctypes.data
    out = from_tensor(torch.full((4, 5), 3.0), out=x)
    assert out is x and np.all(x.as_array() == 3.0)
    new = from_tensor(torch.ones(20), geometry=ImageGeometry(5, 4))
    assert new.shape == (4, 5) and new.geometry == ImageGeometry(5, 4)
    # a new container from a contiguous float32 CPU tensor wraps its memory: no copy either way
    t = torch.arange(20, dtype=torch.float32)
    wrapped = from_tensor(t, geometry=ImageGeometry(5, 4))
    assert wrapped.as_array().ctypes.data == t.data_ptr()
    ag = AcquisitionGeometry.create_Parallel2D().set_angles([0, 90]).set_panel(10)
    sino = torch.ones(20)
    assert from_tensor(sino, geometry=ag).as_array().ctypes.data == sino.data_ptr()
    # other dtypes are converted into a fresh float32 container
    converted = from_tensor(torch.arange(20, dtype=torch.float64), geometry=ImageGeometry(5, 4))
    assert converted.dtype == np.float32 and converted.as_array()[3, 4] == 19.0
    with pytest.raises(ValueError, match="shape"):
        from_tensor(torch.ones(3), out=x)


def test_operator_forward_is_direct_and_backward_is_adjoint():
    ig = ImageGeometry(12, 12)
    ag = AcquisitionGeometry.create_Parallel2D().set_angles([0, 30, 60, 90, 120, 150]).set_panel(17)
    A = ProjectionOperator(ig, ag, device="cpu")
    At = cil_operator_to_torch(A)
    x = ig.allocate("random", seed=0)
    w = ag.allocate("random", seed=1)
    xt = as_tensor(x).clone().requires_grad_(True)
    yt = At(xt)
    np.testing.assert_allclose(yt.detach().numpy(), A.direct(x).as_array(), rtol=1e-5)
    (grad,) = torch.autograd.grad(yt, xt, as_tensor(w))
    np.testing.assert_allclose(grad.numpy(), A.adjoint(w).as_array(), rtol=1e-4, atol=1e-5)
    # batches (B, 1, H, W): each element projected; a loss through the projector trains
    xb = torch.rand(3, 1, 12, 12, requires_grad=True)
    yb = At(xb)
    assert yb.shape == (3, 1, 6, 17)
    yb.square().sum().backward()
    single = At(xb[1, 0].detach())
    np.testing.assert_allclose(yb[1, 0].detach().numpy(), single.numpy(), rtol=1e-5)
    assert xb.grad.shape == xb.shape
    with pytest.raises(ValueError, match="shape"):
        At(torch.rand(11, 12))
