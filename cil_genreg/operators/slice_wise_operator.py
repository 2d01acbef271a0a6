"""A 3D problem as independent 2D problems: one 2D CIL operator applied slice by slice."""
import numpy as np
from cil.optimisation.operators import LinearOperator


class SliceWiseOperator(LinearOperator):
    r"""A 3D problem as independent 2D problems: a 2D linear operator applied to every
    slice of a volume (e.g. the ASTRA 2D CPU projector on each slice of a 3D parallel-beam
    volume). Domain: (slices, H, W); range: the 2D range with a ``vertical`` axis added
    (at the position it has in ``range_geometry``).

    Parameters
    ----------
    operator : LinearOperator
        the 2D operator, domain (H, W).
    domain_geometry : ImageGeometry of shape (slices, H, W)
    range_geometry : AcquisitionGeometry (or any geometry) with a ``vertical`` axis of
        length slices, the other axes those of the 2D range.
    """

    def __init__(self, operator, domain_geometry, range_geometry):
        super().__init__(domain_geometry=domain_geometry, range_geometry=range_geometry)
        self.operator = operator
        labels = [str(getattr(lab, "value", lab)) for lab in range_geometry.dimension_labels]
        self.axis = labels.index("vertical")
        self.slices = int(domain_geometry.shape[0])
        if range_geometry.shape[self.axis] != self.slices:
            raise ValueError(f"the volume has {self.slices} slices but the data have "
                             f"{range_geometry.shape[self.axis]} vertical rows.")
        self._x = operator.domain_geometry().allocate(0)
        self._y = operator.range_geometry().allocate(0)

    @classmethod
    def parallel(cls, ig, ag):
        """For a 3D parallel-beam ``ag`` and volume ``ig``: the ASTRA 2D CPU projector of
        one slice, applied to each."""
        from cil.plugins.astra import ProjectionOperator
        ig2 = ig.get_slice(vertical=0)
        ag2 = ag.get_slice(vertical=0)
        return cls(ProjectionOperator(ig2, ag2, device="cpu"), ig, ag)

    def _loop(self, x, out, forward):
        src, dst = (self._x, self._y) if forward else (self._y, self._x)
        geometry = self.range_geometry() if forward else self.domain_geometry()
        ret = out if out is not None else geometry.allocate(None)
        xs, rs = x.as_array(), ret.as_array()
        apply = self.operator.direct if forward else self.operator.adjoint
        for k in range(self.slices):
            src.fill(np.take(xs, k, axis=0 if forward else self.axis))
            apply(src, out=dst)
            index = [slice(None)] * rs.ndim
            index[self.axis if forward else 0] = k
            rs[tuple(index)] = dst.as_array()
        return ret

    def direct(self, x, out=None):
        return self._loop(x, out, True)

    def adjoint(self, x, out=None):
        return self._loop(x, out, False)

    def calculate_norm(self):
        # block diagonal with equal blocks: the norm of one block
        return self.operator.norm()


