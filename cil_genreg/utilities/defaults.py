"""The names and default weights the command line needs before anything imports CIL: the
forward problems, the reconstruction methods and their λ table (:mod:`cil_genreg.experiments.methods` runs
them; :mod:`cil_genreg.physics.forward` builds the problems). Torch- and CIL-free, so that the
``cil-genreg`` parser, and ``cil-genreg train`` with it, work in an environment without CIL."""

#: the forward problems of :func:`cil_genreg.physics.forward.geometry`: parallel beam over 180°,
#: limited angle, fan beam over 360°
GEOMETRIES = ("parallel", "limited", "fan")
METHODS = ("fbp", "tv", "latent", "range", "soft", "sparse")
#: methods a comparison runs when asked (``--methods ... hybrid``): TV + soft together, and the
#: learned peers trained on the same images: Plug-and-Play with a denoiser (PnP-FISTA at a fixed
#: noise level; DPIR, half-quadratic splitting with a decreasing one), FBPConvNet; and soft under
#: a structured-covariance VAE's own precision (its generator must be a StructuredVAE)
EXTRA_METHODS = ("hybrid", "pnp", "dpir", "postprocess", "soft-structured")
#: methods with no weight λ to choose: one run each
NO_LAMBDA = ("fbp", "postprocess")
ALL_METHODS = METHODS + EXTRA_METHODS
LABELS = {"fbp": "FBP", "tv": "TV", "latent": "range (latent)", "range": "range",
          "soft": "soft", "sparse": "sparse deviations", "hybrid": "TV + soft",
          "pnp": "PnP-FISTA (DRUNet)", "dpir": "DPIR (DRUNet)", "postprocess": "FBPConvNet",
          "soft-structured": "soft (structured covariance)"}
#: λ per method, tuned on MNIST at 5 % noise: the grid of a full comparison (5 values), the
#: three of ``cil-genreg demo``, the two of a ``--quick`` run, and the one default of
#: ``cil-genreg reconstruct``
LAMBDAS = {
    "tv": {"grid": (0.3, 1.0, 2.0, 4.0, 8.0), "demo": (1.0, 2.0, 4.0), "quick": (1.0, 4.0),
           "default": 2.0},
    "latent": {"grid": (0.1, 0.3, 1.0, 3.0, 10.0), "demo": (0.3, 1.0, 3.0),
               "quick": (0.3, 3.0), "default": 1.0},
    "range": {"grid": (0.03, 0.1, 0.3, 1.0, 3.0), "demo": (0.1, 0.3, 1.0), "quick": (0.3, 1.0),
              "default": 0.3},
    "soft": {"grid": (10.0, 30.0, 60.0, 100.0, 200.0), "demo": (30.0, 60.0, 100.0),
             "quick": (30.0, 100.0), "default": 60.0},
    "sparse": {"grid": (1.0, 3.0, 10.0, 30.0, 100.0), "demo": (10.0, 30.0, 100.0),
               "quick": (10.0, 30.0), "default": 30.0},
    "hybrid": {"grid": (3.0, 10.0, 30.0), "demo": (10.0, 30.0), "quick": (10.0,),
               "default": 10.0},
    # PnP: the denoiser runs at sigma = sqrt(tau lam), tau = 1 / L = 1 / (2 ||A||^2); on MNIST
    # at 10 angles ||A||^2 = 273, so lam = 0.1 to 10 is sigma = 0.014 to 0.14
    "pnp": {"grid": (0.1, 0.3, 1.0, 3.0, 10.0), "demo": (0.3, 1.0, 3.0), "quick": (0.3, 3.0),
            "default": 1.0},
    # DPIR: mu_k = lam / (2 sigma_k^2); DPIR's own choice is lam = 0.46 sigma_n^2 (sigma_n the
    # data's noise): MNIST at 10 angles and 5 % noise has sigma_n = 0.6 to 1, lam = 0.2 to 0.5
    # (not tuned: no MNIST denoiser is shipped); the CT demo has its own grid
    "dpir": {"grid": (0.03, 0.1, 0.3, 1.0, 3.0), "demo": (0.1, 0.3, 1.0), "quick": (0.1, 1.0),
             "default": 0.3},
    # soft-structured: on soft's scale (the model's reference precision), so soft's λ
    "soft-structured": {"grid": (10.0, 30.0, 60.0, 100.0, 200.0), "demo": (30.0, 60.0, 100.0),
                        "quick": (30.0, 100.0), "default": 60.0},
}
#: DPIR's first noise level (Zhang et al. 2021; deepinv's ``get_DPIR_params``): 49/255
DPIR_SIGMA_MAX = 49.0 / 255.0
#: DPIR's default last noise level here, 2 % of the image range [0, 1] (the choice for CT is
#: argued in :mod:`cil_genreg.algorithms.dpir`)
DPIR_SIGMA_MIN = 0.02
#: DPIR's number of iterations over which the noise level falls
DPIR_ITERATIONS = 8
#: the latent weight μ of soft and sparse (and of the hybrid's soft part)
MU = {"soft": 1e-3, "sparse": 1e-2, "hybrid": 1e-3, "soft-structured": 1e-3}
#: the hybrid's TV weight, as a fraction of the λ the discrepancy principle chose for TV alone
#: on the same data (the hybrid's own λ grid is that of its generative part)
HYBRID_TV_FRACTION = 0.5


def lambda_grids(kind="grid"):
    """The λ of each method from :data:`LAMBDAS`.

    Parameters
    ----------
    kind : str
        "grid", "demo", "quick" (tuples) or "default" (one float).

    Returns
    -------
    dict
        method → its λ (grid).
    """
    return {method: row[kind] for method, row in LAMBDAS.items()}
