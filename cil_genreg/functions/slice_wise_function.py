"""A sum of 2D CIL functions over the slices of a volume (e.g. 2D TV of each slice)."""
from cil.framework import ImageGeometry
from cil.optimisation.functions import Function


class SliceWiseFunction(Function):
    """:math:`F(x) = \\sum_k f_k(x_k)` over the slices :math:`x_k` of a volume, each
    :math:`f_k` a 2D CIL function made by ``make()`` (e.g. a 2D TotalVariation per slice,
    whose proximal maps are computed slice by slice)."""

    def __init__(self, make, slices):
        super().__init__()
        self.functions = [make() for _ in range(int(slices))]
        self._slice = None

    def _slices(self, x):
        if self._slice is None:
            self._slice = ImageGeometry(voxel_num_x=x.shape[2], voxel_num_y=x.shape[1])
        for k, f in enumerate(self.functions):
            s = self._slice.allocate(None)
            s.fill(x.as_array()[k])
            yield k, f, s

    def __call__(self, x):
        return sum(f(s) for _, f, s in self._slices(x))

    def proximal(self, x, tau, out=None):
        ret = out if out is not None else x.geometry.allocate(None)
        arr = ret.as_array()
        for k, f, s in self._slices(x):
            arr[k] = f.proximal(s, tau).as_array()
        return ret


