r"""Plug-and-Play: a trained denoiser as the proximal map of a CIL Function.

For a prior :math:`p(x) \propto e^{-R(x)}`, the proximal map of :math:`\tau R`,

.. math:: \mathrm{prox}_{\tau R}(v) = \underset{x}{\mathrm{argmin}}\;
          \tfrac{1}{2}\|x - v\|_2^2 + \tau R(x)
          = \underset{x}{\mathrm{argmax}}\; p(x)\, e^{-\|x - v\|^2 / (2\sigma^2)}
          \quad (\sigma^2 = \tau),

is the MAP denoiser of :math:`v = x + \sigma n`, :math:`n \sim N(0, I)`, at the noise
variance :math:`\sigma^2 = \tau`. Plug-and-Play (Venkatakrishnan, Bouman & Wohlberg 2013;
Zhang et al. 2021) replaces that MAP denoiser by a trained one, :math:`D_\sigma`. With CIL's
``lam * DenoiserPrior(D)`` (a ``ScaledFunction``, whose proximal map is the Function's at
:math:`\tau\lambda`) the denoiser runs at :math:`\sigma = \sqrt{\tau\lambda}`: FISTA and
ISTA with step :math:`\tau = 1/L` become PnP-FISTA / PnP-PGD,
:math:`x_{k+1} = D_{\sqrt{\tau\lambda}}(x_k - \tau \nabla f(x_k))`, and PDHG becomes PnP-PDHG,
unchanged. ``sigma=`` fixes :math:`\sigma` instead (the denoiser strength as the parameter,
as deepinv's PnP does).

**No objective.** A trained denoiser is in general not the proximal map of any function
(its Jacobian is not symmetric), so :math:`R` has no value: ``__call__`` returns NaN (CIL's
algorithms then log NaN for the objective; nothing in them stops on it) and the convex
conjugate and gradient raise. PDHG evaluates the conjugate when it logs its primal-dual gap:
run it with ``update_objective_interval=0``. **Fixed points, not minimisers.** PnP-PGD and
PnP-PDHG converge to a fixed point :math:`x = D_\sigma(x - \tau\nabla f(x))` when
:math:`D_\sigma` is (close to) averaged (Ryu et al. 2019, who bound its Lipschitz constant by
spectral normalisation); the network trained here is not constrained, so, as for the
nonconvex generative regularisers, the algorithms run without a guarantee. An iteration that
needs a gradient of :math:`R` rather than a prox (gradient descent, L-BFGS) would need RED
(Romano, Elad & Milanfar 2017: :math:`\nabla R(x) = x - D_\sigma(x)`, a fixed point of
:math:`\nabla f(x) + \lambda(x - D_\sigma(x)) = 0`, a true gradient only for a denoiser with a
symmetric Jacobian): not provided.
"""
import math
import warnings

import torch
from cil.optimisation.functions import Function

from ..models.denoiser import require_kind
from ..utilities.bridge import as_tensor, from_tensor
from ..utilities.validation import check_image, check_out, check_positive


class DenoiserPrior(Function):
    r"""A trained denoiser :math:`D_\sigma` as a CIL Function for Plug-and-Play,

    .. math:: \mathrm{prox}_{\tau R}(v) := D_{\sigma}(v), \qquad
              \sigma = \sqrt{\tau}\ \text{(default) or}\ \sigma = \texttt{sigma},

    see the module docstring for the MAP link (:math:`\sigma^2 = \tau`), what runs it (FISTA,
    ISTA, PDHG) and why it has no value. A 3D volume (slices, H, W) is denoised slice by slice
    in one batch.

    Parameters
    ----------
    denoiser : torch.nn.Module
        :math:`D`: ``denoiser(v, sigma)`` with v (B, 1, H, W) and sigma a number, e.g. a
        :class:`~cil_genreg.models.DRUNetDenoiser` from ``cil_genreg.models.load(path,
        kind="denoiser")``; a generator is refused with a TypeError saying what it is.
    sigma : float, optional
        a fixed noise level (> 0) for every proximal map; default None: tied to the step,
        :math:`\sigma = \sqrt{\tau}`.
    device : str, optional
        default the denoiser's.

    Raises
    ------
    TypeError
        for a module that is not a denoiser (a generator, a post-processing network).
    ValueError
        for ``sigma <= 0``.
    """

    def __init__(self, denoiser, sigma=None, device=None):
        super().__init__()
        if not isinstance(denoiser, torch.nn.Module):
            raise TypeError(f"denoiser must be a torch.nn.Module D(v, sigma), got "
                            f"{type(denoiser).__name__}.")
        # a module without a kind is the user's denoiser, unless it takes latents (a generator)
        if getattr(denoiser, "kind", None) is not None or hasattr(denoiser, "latent_dim"):
            require_kind(denoiser, "denoiser", "DenoiserPrior")
        self.sigma = None if sigma is None else check_positive(sigma, "sigma")
        p = next(denoiser.parameters(), None)
        self.device = torch.device(device) if device is not None else (
            p.device if p is not None else torch.device("cpu"))
        self.denoiser = denoiser.to(self.device).eval()
        trained = (getattr(denoiser, "metadata", None) or {}).get("sigma_range")
        self.trained_sigma = tuple(trained) if trained else None
        self._warned = False
        #: the noise level of the last proximal map
        self.last_sigma = None

    def noise_level(self, tau):
        r"""The :math:`\sigma` of a proximal map of step ``tau``: ``sigma`` when fixed, else
        :math:`\sqrt{\tau}`.

        Parameters
        ----------
        tau : float
            > 0.

        Returns
        -------
        float

        Raises
        ------
        ValueError
            for ``tau <= 0`` (PnP needs a positive noise level).
        """
        tau = check_positive(tau, "the step size tau (PnP's noise level is sqrt(tau))")
        return self.sigma if self.sigma is not None else math.sqrt(tau)

    def proximal(self, x, tau, out=None):
        r"""The denoiser at the step's noise level, :math:`D_\sigma(x)`, with
        :math:`\sigma = \sqrt{\tau}` (or the fixed ``sigma``).

        Parameters
        ----------
        x : DataContainer
            an image (H, W) or a volume (slices, H, W).
        tau : float
            the step size (> 0); under ``lam * R``, CIL passes :math:`\tau\lambda`.
        out : DataContainer, optional
            filled in place and returned.

        Returns
        -------
        DataContainer
        """
        sigma = self.noise_level(tau)
        check_image(x, "x")
        check_out(out, x)
        v = as_tensor(x, device=self.device)
        if not bool(torch.isfinite(v).all()):
            raise ValueError("x contains NaN or Inf values: check the data and the step sizes "
                             "of the algorithm.")
        denoised = self.denoise(v.reshape(-1, 1, *v.shape[-2:]), sigma)
        if out is None:
            out = x.geometry.allocate(None) if getattr(x, "geometry", None) is not None \
                else x.copy()
        return from_tensor(denoised, out=out)

    def denoise(self, batch, sigma):
        r""":math:`D_\sigma` of a batch of images (B, 1, H, W), a tensor, on the prior's device
        and without gradients (what :meth:`proximal` and the samplers call); warns once when
        :math:`\sigma` is above the denoiser's training range.

        Parameters
        ----------
        batch : torch.Tensor
        sigma : float

        Returns
        -------
        torch.Tensor
            on the prior's device.
        """
        self._warn_outside_training(sigma)
        with torch.inference_mode():
            denoised = self.denoiser(batch.to(self.device), sigma)
        self.last_sigma = sigma
        return denoised

    def _warn_outside_training(self, sigma):
        if self._warned or self.trained_sigma is None:
            return
        lo, hi = self.trained_sigma
        if sigma > 1.5 * hi:
            self._warned = True
            warnings.warn(f"PnP noise level sigma = {sigma:.3g} is above the denoiser's "
                          f"training range [{lo:g}, {hi:g}]: lower lam (sigma = sqrt(tau lam)) "
                          "or the fixed sigma (DPIR, PlugAndPlayHQS: sigma_max).", stacklevel=4)

    def __call__(self, x):
        r"""NaN: a Plug-and-Play prior has no explicit :math:`R(x)` (a trained denoiser is in
        general no function's proximal map), so CIL's logged objective :math:`f(x) + R(x)` is
        NaN; watch the PSNR or the data term instead.

        Parameters
        ----------
        x : DataContainer

        Returns
        -------
        float
            ``nan``.
        """
        return float("nan")

    def gradient(self, x, out=None):
        r"""Not available: :math:`R` is implicit (RED's :math:`x - D_\sigma(x)` is not its
        gradient unless the denoiser's Jacobian is symmetric).

        Parameters
        ----------
        x : DataContainer
        out : DataContainer, optional

        Raises
        ------
        NotImplementedError
            always; use a proximal algorithm (FISTA, ISTA, PDHG).
        """
        raise NotImplementedError(
            "DenoiserPrior has no gradient: Plug-and-Play uses the denoiser as a proximal map. "
            "Run it with a proximal algorithm (FISTA, ISTA, PDHG).")

    def convex_conjugate(self, x):
        r"""Not available: :math:`R^*` of an implicit prior has no value.

        Parameters
        ----------
        x : DataContainer

        Raises
        ------
        NotImplementedError
            always; PDHG calls it to log its primal-dual gap: run PDHG with
            ``update_objective_interval=0``.
        """
        raise NotImplementedError(
            "DenoiserPrior has no convex conjugate (Plug-and-Play has no explicit objective). "
            "PDHG evaluates it only to log the primal-dual gap: run PDHG with "
            "update_objective_interval=0.")
