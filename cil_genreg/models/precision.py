r"""A sparse image precision through its triangular factor on a local neighbourhood
(Duff, Simpson, Ehrhardt & Campbell, arXiv:2210.14586): torch only, batched.

For a residual image :math:`r` (H × W, zero outside the image) the factor :math:`B` is

.. math:: (B r)_i = d_i \Big(r_i + \sum_{k \in N^+} u_{i,k}\, r_{i+k}\Big),

with :math:`N^+` the offsets of the :math:`(2\rho + 1)^2` window that come *after* pixel
:math:`i` in raster order (:func:`offsets`: 4 for :math:`\rho = 1`, 12 for :math:`\rho = 2`),
:math:`d_i > 0` and :math:`|u_{i,k}| < 1`. :math:`B` is upper triangular in raster order with
diagonal :math:`d`, so the precision :math:`P = B^T B` is symmetric positive definite and

.. math:: \log\det P = 2 \sum_i \log d_i

exactly. :math:`B` and :math:`B^T` are shifts and multiplications (:func:`apply_factor`,
:func:`apply_factor_transpose`), :math:`O(|N^+|)` per pixel; the Gaussian's negative
log-likelihood is :func:`gaussian_nll`, and the linear system of a proximal map,
:math:`(I + c P) e = b`, is solved by :func:`solve_shifted` (Jacobi-preconditioned conjugate
gradients in float64).

Shapes: residuals (B, 1, H, W) or (B, H, W); ``log_d`` like them; ``u`` (B, K, H, W) with
``K = len(offsets(rho))``, channel k for offset k.
"""
import math

import torch
from torch.nn import functional as F


def offsets(rho):
    r"""The offsets :math:`(\delta y, \delta x)` of :math:`N^+`: the pixels of the
    :math:`(2\rho + 1)^2` window after the centre in raster order (row by row), e.g. for
    :math:`\rho = 1` ``[(0, 1), (1, -1), (1, 0), (1, 1)]``.

    Parameters
    ----------
    rho : int
        the window's radius, >= 1.

    Returns
    -------
    list of (int, int)
        :math:`2\rho(\rho + 1)` offsets.
    """
    rho = int(rho)
    if rho < 1:
        raise ValueError(f"the neighbourhood radius rho must be >= 1, got {rho}.")
    return [(dy, dx) for dy in range(0, rho + 1) for dx in range(-rho, rho + 1)
            if dy > 0 or dx > 0]


def shift(a, dy, dx):
    r"""``b[..., y, x] = a[..., y + dy, x + dx]``, zero where that is outside the image."""
    h, w = a.shape[-2:]
    p = F.pad(a, (max(-dx, 0), max(dx, 0), max(-dy, 0), max(dy, 0)))
    y0, x0 = max(dy, 0), max(dx, 0)
    return p[..., y0:y0 + h, x0:x0 + w]


def _as4d(t):
    return t if t.dim() == 4 else t.unsqueeze(1)


def _check(r, log_d, u, rho):
    if u.shape[1] != len(offsets(rho)) or u.shape[-2:] != r.shape[-2:] or \
            log_d.shape[-2:] != r.shape[-2:]:
        raise ValueError(f"the factor does not fit the residual: residual {tuple(r.shape)}, "
                         f"log d {tuple(log_d.shape)}, u {tuple(u.shape)} (needs "
                         f"{len(offsets(rho))} channels for rho = {rho}).")


def apply_factor(r, log_d, u, rho=1):
    r""":math:`B r`: :math:`(B r)_i = d_i (r_i + \sum_k u_{i,k} r_{i+k})`.

    Parameters
    ----------
    r, log_d : torch.Tensor
        (B, 1, H, W); :math:`d = e^{\log d}`.
    u : torch.Tensor
        (B, K, H, W).
    rho : int

    Returns
    -------
    torch.Tensor
        (B, 1, H, W).
    """
    r, log_d = _as4d(r), _as4d(log_d)
    _check(r, log_d, u, rho)
    acc = r
    for k, (dy, dx) in enumerate(offsets(rho)):
        acc = acc + u[:, k:k + 1] * shift(r, dy, dx)
    return log_d.exp() * acc


def apply_factor_transpose(s, log_d, u, rho=1):
    r""":math:`B^T s`: :math:`(B^T s)_j = t_j + \sum_k u_{j-k,k}\, t_{j-k}` with
    :math:`t = d \odot s` (terms with :math:`j - k` outside the image dropped).

    Parameters
    ----------
    s, log_d : torch.Tensor
        (B, 1, H, W).
    u : torch.Tensor
        (B, K, H, W).
    rho : int

    Returns
    -------
    torch.Tensor
        (B, 1, H, W).
    """
    s, log_d = _as4d(s), _as4d(log_d)
    _check(s, log_d, u, rho)
    t = log_d.exp() * s
    acc = t
    for k, (dy, dx) in enumerate(offsets(rho)):
        acc = acc + shift(u[:, k:k + 1] * t, -dy, -dx)
    return acc


def apply_precision(r, log_d, u, rho=1):
    r""":math:`P r = B^T B r`."""
    return apply_factor_transpose(apply_factor(r, log_d, u, rho), log_d, u, rho)


def precision_diagonal(log_d, u, rho=1):
    r"""The diagonal of :math:`P = B^T B`:
    :math:`P_{jj} = d_j^2 + \sum_k (d_{j-k} u_{j-k,k})^2`, the Jacobi preconditioner of
    :func:`solve_shifted`."""
    log_d = _as4d(log_d)
    d = log_d.exp()
    diag = d.square()
    for k, (dy, dx) in enumerate(offsets(rho)):
        diag = diag + shift((d * u[:, k:k + 1]).square(), -dy, -dx)
    return diag


def log_det_precision(log_d):
    r""":math:`\log\det P = 2 \sum_i \log d_i` per image, (B,)."""
    return 2.0 * _as4d(log_d).flatten(1).sum(1)


def gaussian_nll(x, mean, log_d, u, rho=1):
    r"""The negative log-likelihood of images ``x`` under :math:`N(\text{mean}, P^{-1})`,
    per image (B,):

    .. math:: -\log p(x) = \tfrac12 \|B (x - m)\|_2^2 - \sum_i \log d_i
              + \tfrac{N}{2} \log 2\pi,

    :math:`N` the pixels per image (divide by it for nats per pixel).
    """
    r = _as4d(x) - _as4d(mean)
    br = apply_factor(r, log_d, u, rho).flatten(1)
    n = r[0].numel()
    return 0.5 * torch.linalg.vecdot(br, br) - 0.5 * log_det_precision(log_d) \
        + 0.5 * n * math.log(2.0 * math.pi)


def solve_shifted(b, c, log_d, u, rho=1, tol=1e-8, max_iter=500, x0=None):
    r"""Solve :math:`(I + c\,P)\, e = b` per image by conjugate gradients with the Jacobi
    preconditioner :math:`1 + c\,\mathrm{diag}(P)`, in float64 (:math:`P = B^T B` SPD, so the
    system is SPD and CG converges). Stops when every image has
    :math:`\|b - (I + cP)e\|_2 \le \text{tol}\,\|b\|_2` (the residual recomputed from
    scratch at the end), or after ``max_iter`` iterations.

    Parameters
    ----------
    b : torch.Tensor
        (B, 1, H, W).
    c : float
        :math:`c \ge 0`.
    log_d, u : torch.Tensor
        the factor (detached: no gradient flows through the solve).
    rho : int
    tol : float
        relative residual.
    max_iter : int
    x0 : torch.Tensor, optional
        a start (e.g. the previous solution).

    Returns
    -------
    (torch.Tensor, int, torch.Tensor)
        :math:`e` (B, 1, H, W) in ``b``'s dtype, the iterations run and the relative residual
        per image (B,).
    """
    dtype = b.dtype
    b, log_d, u = (_as4d(t).detach().to(torch.float64) for t in (b, log_d, u))
    c = float(c)

    def op(v):
        return v + c * apply_precision(v, log_d, u, rho)

    def dot(p, q):
        return torch.linalg.vecdot(p.flatten(1), q.flatten(1)).view(-1, 1, 1, 1)

    inv_m = 1.0 / (1.0 + c * precision_diagonal(log_d, u, rho))
    x = torch.zeros_like(b) if x0 is None else _as4d(x0).detach().to(torch.float64).clone()
    r = b - op(x) if x0 is not None else b.clone()
    b_norm = dot(b, b).sqrt().clamp_min(1e-300)
    z = inv_m * r
    p = z.clone()
    rz = dot(r, z)
    iterations = 0
    while iterations < max_iter and bool((dot(r, r).sqrt() > tol * b_norm).any()):
        q = op(p)
        alpha = rz / dot(p, q).clamp_min(1e-300)
        x = x + alpha * p
        r = r - alpha * q
        z = inv_m * r
        rz_new = dot(r, z)
        p = z + (rz_new / rz.clamp_min(1e-300)) * p
        rz = rz_new
        iterations += 1
    final = b - op(x)
    residual = (dot(final, final).sqrt() / b_norm).flatten()
    return x.to(dtype), iterations, residual


def dense_factor(log_d, u, rho=1):
    r"""The dense matrix :math:`B` (N × N, N = H W, raster order) of one image's factor, for
    tests and small images: column j is :math:`B e_j`.

    Parameters
    ----------
    log_d : torch.Tensor
        (1, 1, H, W) or (1, H, W).
    u : torch.Tensor
        (1, K, H, W).
    rho : int

    Returns
    -------
    torch.Tensor
        (N, N), in the dtype of ``log_d``.
    """
    log_d = _as4d(log_d)
    h, w = log_d.shape[-2:]
    n = h * w
    eye = torch.eye(n, dtype=log_d.dtype, device=log_d.device).reshape(n, 1, h, w)
    cols = apply_factor(eye, log_d.expand(n, -1, -1, -1), u.expand(n, -1, -1, -1), rho)
    return cols.reshape(n, n).T
