r"""A patch prior: a generator trained on :math:`p \times p` patches regularises an image of any
size, all patches through the generator as one batch."""
import math

import numpy as np
from cil.optimisation.functions import Function

from ..operators.patch_operator import PatchOperator
from .generative_regulariser import GenerativeRegulariser, weighted


def default_offsets(patch_size):
    """The tiling corners a :class:`PatchGenerativeRegulariser` cycles through by default:
    :math:`(0, 0), (p/2, p/2), (p/4, 3p/4), (3p/4, p/4)` (every seam moves by at least
    :math:`p/4` from one call to the next).

    Parameters
    ----------
    patch_size : int

    Returns
    -------
    list of (int, int)
    """
    p = int(patch_size)
    return list(dict.fromkeys([(0, 0), (p // 2, p // 2), (p // 4, 3 * p // 4),
                               (3 * p // 4, p // 4)]))


def patch_prior_for(regulariser, geometry):
    """The regulariser itself when its generator makes images of ``geometry``'s size (or of its
    slices), else its patch prior on that geometry (a generator of smaller, square images).

    Parameters
    ----------
    regulariser : GenerativeRegulariser
    geometry : ImageGeometry

    Returns
    -------
    GenerativeRegulariser or PatchGenerativeRegulariser
    """
    if tuple(geometry.shape[-2:]) == tuple(regulariser.image_shape):
        return regulariser
    return PatchGenerativeRegulariser(regulariser)


class PatchGenerativeRegulariser(Function):
    r"""A generative regulariser on the non-overlapping :math:`p \times p` tiles of an image,

    .. math:: R(x) = \sum_i R_G(P_i x) = R_G^{\text{batch}}(P x),

    with :math:`R_G` one of the generative regularisers (soft, range, sparse deviations) for a
    generator of :math:`p \times p` images and :math:`P` the tiling
    (:class:`~cil_genreg.PatchOperator` with ``stride = p``). On the pixels it covers
    :math:`P` is a permutation (:math:`P P^T = I`), so everything is exact:

    * value: :math:`R_G^{\text{batch}}(P x)`, all tiles as one batch through the generator;
    * proximal map: :math:`\text{prox}_{\tau R}(x) = P^T \text{prox}_{\tau R_G^{\text{batch}}}(P x)`
      on the covered pixels, :math:`x` unchanged on the others;
    * gradient (where :math:`R_G` has one, e.g. soft):
      :math:`\nabla R(x) = P^T \nabla R_G^{\text{batch}}(P x)`
      :math:`= \sum_i P_i^T\, 2(P_i x - G(z_i^*))` for soft;
    * convex conjugate: :math:`R^*(s) = (R_G^{\text{batch}})^*(P s)` when :math:`s` vanishes off
      the tiles, :math:`+\infty` otherwise.

    **Moving seams.** Each proximal map or gradient uses the next tiling corner of ``offsets``
    (cycled), so no seam between tiles stays in one place; the latent warm start is kept per
    corner (the tiles of a corner are the same image regions from one visit to the next). The
    value uses the corner of the last proximal map or gradient (the tiling that made the
    current iterate). An algorithm thus regularises with a slowly alternating family of exact
    patch priors, like the shifted tilings of cycle spinning.

    **Borders** (``border``): ``"wrap"`` (default) treats the image as periodic, so a tile
    crossing an edge continues at the opposite one and, for an image side divisible by
    :math:`p`, every pixel is in exactly one tile at every corner (CT slices are air at their
    borders, so the wrapped tiles join air to air); ``"skip"`` keeps only the tiles inside the
    image and leaves the pixels of the partial border tiles unregularised for that call
    (identity prox, zero gradient), which moves with the corner.

    **Overlapping patches** have no separable proximal map; use the patch operator instead: in
    PDHG as a row of the operator, ``K = BlockOperator(A, PatchOperator(ig, p, stride))`` with
    ``f = BlockFunction(L2NormSquared(b=y), lam * R_G)`` (PDHG only calls the proximal map of
    the conjugate, from :math:`R_G`'s by Moreau's identity: exact), or for soft in FISTA's
    smooth part as ``OperatorCompositionFunction(lam * R_G, PatchOperator(ig, p, stride))``,
    whose gradient is :math:`\sum_i P_i^T 2(P_i x - G(z_i^*))`
    (:func:`cil_genreg.algorithms.hybrid.hybrid_pdhg` builds the first).

    Parameters
    ----------
    regulariser : GenerativeRegulariser
        :math:`R_G` for the generator of patches, e.g.
        ``SoftGenerativeRegulariser(G, mu=1e-3)``; its latent solver options apply to the
        batch of tiles.
    offsets : list of (int, int), optional
        tiling corners (rows, columns) cycled through; default :func:`default_offsets`;
        ``[(0, 0)]`` fixes the tiling.
    border : {"wrap", "skip"}

    Attributes
    ----------
    offset : (int, int)
        the corner the next proximal map or gradient uses.

    Raises
    ------
    TypeError
        when ``regulariser`` is not a :class:`GenerativeRegulariser`.
    """

    def __init__(self, regulariser, offsets=None, border="wrap"):
        if not isinstance(regulariser, GenerativeRegulariser):
            raise TypeError("regulariser must be a cil_genreg generative regulariser (soft, "
                            "range or sparse deviations) for the generator of patches, got "
                            f"{type(regulariser).__name__}.")
        h, w = regulariser.image_shape
        if h != w:
            raise ValueError(f"the patch generator must make square images, got {h}x{w}.")
        super().__init__()
        self.regulariser = regulariser
        self.patch_size = int(h)
        self.offsets = [tuple(int(v) % h for v in o)
                        for o in (offsets or default_offsets(h))]
        self.border = border
        self._next = 0
        self._used = self.offsets[0]
        self._operators = {}
        self._states = {}

    @property
    def offset(self):
        return self.offsets[self._next]

    def operator(self, geometry, offset=None):
        """The tiling :math:`P` of ``geometry`` at a corner.

        Parameters
        ----------
        geometry : ImageGeometry
        offset : (int, int), optional
            default :attr:`offset`.

        Returns
        -------
        PatchOperator
        """
        offset = self.offset if offset is None else tuple(offset)
        key = (tuple(geometry.shape), offset)
        if key not in self._operators:
            self._operators[key] = PatchOperator(geometry, self.patch_size, offset=offset,
                                                 border=self.border)
        return self._operators[key]

    def reset(self):
        """Forget every latent found (all corners) and start the tiling cycle again.

        Returns
        -------
        None
        """
        self.regulariser.reset()
        self._states.clear()
        self._next, self._used = 0, self.offsets[0]

    def __rmul__(self, scalar):
        """``lam * R``: CIL's scaled function, λ checked (see ``weighted``)."""
        return weighted(self, scalar)

    def _step(self, x):
        """The operator of this call's corner, with that corner's warm start loaded."""
        offset = self.offset
        P = self.operator(x.geometry, offset)
        if offset != self._used:
            self._states[self._used] = self.regulariser.warm_state()
            self.regulariser.set_warm_state(self._states.get(offset))
        self._used = offset
        self._next = (self._next + 1) % len(self.offsets)
        return P

    def _uncovered(self, P):
        return None if P.border == "wrap" and P.covered().all() else ~P.covered()

    def __call__(self, x):
        r"""The value :math:`R_G^{\text{batch}}(P x)` at the corner of the last proximal map or
        gradient.

        Parameters
        ----------
        x : ImageData
            2D, or 3D (slices, H, W).

        Returns
        -------
        float
        """
        return self.regulariser(self.operator(x.geometry, self._used).direct(x))

    def gradient(self, x, out=None):
        r"""The gradient :math:`P^T \nabla R_G^{\text{batch}}(P x)` (zero off the tiles), for a
        regulariser that has one (soft).

        Parameters
        ----------
        x : ImageData
        out : ImageData, optional
            filled in place and returned.

        Returns
        -------
        ImageData
        """
        P = self._step(x)
        return P.adjoint(self.regulariser.gradient(P.direct(x)), out=out)

    def proximal(self, x, tau, out=None):
        r"""The proximal map, exact for the tiling of this call's corner:

        .. math:: \text{prox}_{\tau R}(x) = P^T \text{prox}_{\tau R_G^{\text{batch}}}(P x)
           + (I - P^T P)\, x .

        Parameters
        ----------
        x : ImageData
        tau : float
            step size :math:`\tau > 0`.
        out : ImageData, optional
            filled in place and returned (may be ``x``).

        Returns
        -------
        ImageData
        """
        P = self._step(x)
        prox = P.adjoint(self.regulariser.proximal(P.direct(x), tau))
        uncovered = self._uncovered(P)
        if uncovered is not None:
            arr = prox.as_array()
            arr[uncovered] = x.as_array()[uncovered]
            prox.fill(arr)
        if out is None:
            return prox
        out.fill(prox)
        return out

    def convex_conjugate(self, x):
        r"""The convex conjugate :math:`(R_G^{\text{batch}})^*(P s)`, or :math:`+\infty` when
        :math:`s` is not zero off the tiles.

        Parameters
        ----------
        x : ImageData
            :math:`s`.

        Returns
        -------
        float
        """
        P = self.operator(x.geometry, self._used)
        uncovered = self._uncovered(P)
        if uncovered is not None and np.any(x.as_array()[uncovered] != 0):
            return math.inf
        return self.regulariser.convex_conjugate(P.direct(x))
