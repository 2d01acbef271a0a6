r"""Cutting an image into patches: a CIL LinearOperator and its adjoint.

.. math:: P x = (P_1 x, \dots, P_n x), \qquad P^T (u_1, \dots, u_n) = \sum_i P_i^T u_i

where :math:`P_i` copies the :math:`p \times p` patch :math:`i` of :math:`x` out of the image.
The patches are stacked as a volume of shape (n, p, p), so a generator trained on
:math:`p \times p` images regularises all of them as one batch (the slice-batching of the
generative regularisers). With ``stride = patch_size`` the tiles do not overlap and :math:`P`
is a permutation of the pixels it covers (:math:`P P^T = I`), which makes the proximal map of
:math:`R_G(Px)` exact (:class:`~cil_genreg.PatchGenerativeRegulariser`); with a smaller stride
the patches overlap and :math:`P^T P` counts how many patches hold each pixel.
"""
import numpy as np
from cil.framework import ImageGeometry
from cil.optimisation.operators import LinearOperator

#: how tiles meet the image border: "wrap" (periodic: a tile leaving one edge continues at the
#: opposite one, every pixel is covered) or "skip" (only tiles lying inside the image).
BORDERS = ("wrap", "skip")


def _starts(n, p, stride, offset, border):
    """First rows (or columns) of the tiles along one axis of length ``n``."""
    if border == "wrap":
        return [(offset + k * stride) % n for k in range(n // stride)]
    first = offset % stride
    return list(range(first, n - p + 1, stride))


class PatchOperator(LinearOperator):
    r"""The patches of an image (or of each slice of a volume) as one stacked volume,

    .. math:: (P x)_i = x[r_i : r_i + p,\; c_i : c_i + p], \qquad
       P^T u = \sum_i P_i^T u_i ,

    with tile corners :math:`r_i, c_i` on the grid ``offset + k * stride``. The range is an
    :class:`~cil.framework.ImageGeometry` of shape (n, p, p) (n patches, over all slices of a
    volume, slice-major then row-major); the adjoint adds each patch back where it came from.

    Borders: ``"wrap"`` treats the image as periodic (a tile crossing the right edge continues at
    the left one; with ``stride = p`` and :math:`p` dividing the image size every pixel is in
    exactly one tile, otherwise a strip narrower than :math:`p` is left out); ``"skip"`` keeps
    only tiles inside the image (the pixels of the partial tiles at the borders are in no patch).

    Parameters
    ----------
    domain_geometry : ImageGeometry
        2D (H, W) or 3D (slices, H, W).
    patch_size : int
        :math:`p`.
    stride : int, optional
        distance between tile corners; default ``patch_size`` (non-overlapping tiles).
    offset : (int, int), optional
        corner of the tiling (rows, columns); default (0, 0).
    border : {"wrap", "skip"}

    Raises
    ------
    ValueError
        for a patch larger than the image, a stride outside ``1..patch_size``, an unknown border
        or a domain with no patch in it.
    """

    def __init__(self, domain_geometry, patch_size, stride=None, offset=(0, 0), border="wrap"):
        shape = tuple(domain_geometry.shape)
        if len(shape) not in (2, 3):
            raise ValueError(f"PatchOperator takes a 2D or 3D ImageGeometry, got shape {shape}.")
        p = int(patch_size)
        stride = p if stride is None else int(stride)
        if border not in BORDERS:
            raise ValueError(f"border must be one of {BORDERS}, got {border!r}.")
        if p < 1 or p > min(shape[-2:]):
            raise ValueError(f"patch_size={p} must be between 1 and the image side "
                             f"{min(shape[-2:])}.")
        if not 1 <= stride <= p:
            raise ValueError(f"stride={stride} must be between 1 and patch_size={p} (a larger "
                             "stride leaves pixels out of every patch).")
        self.patch_size, self.stride, self.border = p, stride, border
        self.offset = (int(offset[0]) % p, int(offset[1]) % p)
        h, w = shape[-2:]
        rows = _starts(h, p, stride, self.offset[0], border)
        cols = _starts(w, p, stride, self.offset[1], border)
        if not rows or not cols:
            raise ValueError(f"no {p}x{p} tile fits an image of {h}x{w} with offset "
                             f"{self.offset} and border={border!r}.")
        k = np.arange(p)
        r = (np.asarray(rows)[:, None] + k) % h             # (n_rows, p)
        c = (np.asarray(cols)[:, None] + k) % w             # (n_cols, p)
        flat = r[:, None, :, None] * w + c[None, :, None, :]  # (n_rows, n_cols, p, p)
        flat = flat.reshape(-1, p, p)
        slices = 1 if len(shape) == 2 else shape[0]
        #: flat pixel index of every patch pixel, (n, p, p)
        self.index = (np.arange(slices)[:, None, None, None] * (h * w) + flat).reshape(-1, p, p)
        self.n_patches = self.index.shape[0]
        self.overlapping = stride < p or len(np.unique(self.index)) < self.index.size
        range_geometry = ImageGeometry(voxel_num_x=p, voxel_num_y=p, voxel_num_z=self.n_patches)
        super().__init__(domain_geometry=domain_geometry, range_geometry=range_geometry)

    def covered(self):
        """Which pixels lie in at least one patch.

        Returns
        -------
        numpy.ndarray
            bool, of the domain's shape.
        """
        mask = np.zeros(int(np.prod(self.domain_geometry().shape)), bool)
        mask[self.index.ravel()] = True
        return mask.reshape(self.domain_geometry().shape)

    def direct(self, x, out=None):
        r"""The patches :math:`(P_1 x, \dots, P_n x)`.

        Parameters
        ----------
        x : ImageData
            in the domain geometry.
        out : ImageData, optional
            in the range geometry, filled in place.

        Returns
        -------
        ImageData
            (n, p, p), or ``out``.
        """
        patches = x.as_array().ravel()[self.index]
        if out is None:
            out = self.range_geometry().allocate(None)
        out.fill(patches.reshape(out.shape))
        return out

    def adjoint(self, x, out=None):
        r""":math:`P^T u = \sum_i P_i^T u_i`: each patch added back where it came from (pixels in
        no patch are 0).

        Parameters
        ----------
        x : ImageData
            (n, p, p), in the range geometry.
        out : ImageData, optional
            in the domain geometry, filled in place.

        Returns
        -------
        ImageData
            in the domain geometry, or ``out``.
        """
        size = int(np.prod(self.domain_geometry().shape))
        values = np.asarray(x.as_array(), dtype=np.float64).ravel()
        image = np.bincount(self.index.ravel(), weights=values, minlength=size)
        if out is None:
            out = self.domain_geometry().allocate(None)
        out.fill(image.reshape(self.domain_geometry().shape).astype(np.float32))
        return out

    def calculate_norm(self):
        r""":math:`\|P\| = \sqrt{\max_j m_j}`, with :math:`m_j` the number of patches holding
        pixel :math:`j` (:math:`P^T P` is the diagonal of these counts).

        Returns
        -------
        float
        """
        counts = np.bincount(self.index.ravel())
        return float(np.sqrt(counts.max()))
