"""The command-line options that ``cil-genreg demo`` and the scripts in ``demos/`` share, built
in one place so that each option has one name, one meaning and one help text."""
import argparse
import json
import sys

from ..utilities.defaults import ALL_METHODS, GEOMETRIES, METHODS
from ..utilities.validation import DeviceUnavailableError


def add_latent_prior_option(p):
    """``--latent-prior`` (:func:`cil_genreg.experiments.methods.load_generator`'s ``latent_prior``)."""
    p.add_argument("--latent-prior", default="auto", choices=("auto", "fitted", "standard"),
                   help="the latent prior of the generative methods: the Gaussian fitted to "
                        "the model's training codes (`cil-genreg fit-prior`), the standard "
                        "N(0, I), or auto: the fitted one when the model carries one")
    return p


#: the methods whose generator pass ``--precision`` sets
PRECISION_METHODS = ("soft", "sparse", "range", "hybrid", "soft-structured")


def add_precision_option(p):
    """``--precision`` (the generative regularisers' ``precision``: the generator's forward
    pass under autocast; :func:`cil_genreg.latent.generator.check_precision`)."""
    p.add_argument("--precision", default="float32", choices=("float32", "bfloat16", "float16"),
                   help="the generator's forward pass in soft, sparse, range and hybrid: "
                        "float32, bfloat16 (CPU or GPU; relative error ~1e-2) or float16 "
                        "(GPU only)")
    return p


def check_precision_option(args, method=None):
    """Refuse, as an :class:`~cil_genreg.utilities.validation.InputError` saying what to do,
    ``args.precision`` on ``args.device`` (float16 off CUDA) or for a ``method`` whose
    generator pass it does not set.

    Parameters
    ----------
    args : argparse.Namespace
        with ``precision`` and ``device``.
    method : str, optional
    """
    import torch
    from ..latent.generator import check_precision
    from ..utilities.validation import InputError
    precision = getattr(args, "precision", "float32")
    cuda = str(getattr(args, "device", "cpu")).startswith(("cuda", "gpu"))
    check_precision(precision, torch.device("cuda" if cuda else "cpu"))
    if precision != "float32" and method is not None and method not in PRECISION_METHODS:
        raise InputError(f"--precision {precision} sets the generator pass of "
                         f"{', '.join(PRECISION_METHODS)}; method {method!r} runs in float32: "
                         "drop --precision.")


def precision_options(args):
    """The regulariser options of ``--precision``: ``{}`` for float32 (the default)."""
    precision = getattr(args, "precision", "float32")
    return {} if precision == "float32" else {"precision": precision}


def add_run_options(p, model, out, seed_help="seed of the image choice and the noise"):
    """``--model``, ``--latent-prior``, ``--out``, ``--backend``, ``--device``, ``--precision``,
    ``--seed``, ``--quiet`` (no
    progress bars) and ``--overwrite`` (replace an earlier run's outputs in ``--out``).

    Parameters
    ----------
    p : argparse.ArgumentParser
    model : str
        the default model (a shipped name or a checkpoint).
    out : str
        the default output folder.
    seed_help : str

    Returns
    -------
    argparse.ArgumentParser
        ``p``.
    """
    p.add_argument("--model", default=model,
                   help="a shipped model name or a checkpoint written by `cil-genreg train`")
    add_latent_prior_option(p)
    p.add_argument("--out", default=out, help="output folder")
    p.add_argument("--backend", default="astra", choices=("astra", "tigre"),
                   help="projector: ASTRA (2D on CPU or GPU) or TIGRE (GPU only)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                   help="projector and generator device")
    add_precision_option(p)
    p.add_argument("--seed", type=int, default=0, help=seed_help)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the outputs of an earlier run in --out (refused without it)")
    return p


def add_comparison_options(p, n, angles=(10, 30), iterations=100, methods=METHODS,
                           geometries=GEOMETRIES):
    """``--n``, ``--angles``, ``--geometry``, ``--iterations``, ``--methods`` and ``--start``
    of a comparison of methods on held-out images.

    Parameters
    ----------
    p : argparse.ArgumentParser
    n : int
        default number of images.
    angles : tuple of int
        default numbers of projection angles.
    iterations : int
        default FISTA iterations.
    methods : tuple of str
        the default methods.
    geometries : tuple of str
        the forward problems offered.

    Returns
    -------
    argparse.ArgumentParser
        ``p``.
    """
    p.add_argument("--n", type=int, default=n, help="number of held-out test images")
    p.add_argument("--angles", type=int, nargs="+", default=list(angles),
                   help="numbers of projection angles")
    p.add_argument("--geometry", nargs="+", default=["parallel"], choices=geometries,
                   help="forward problems: parallel beam over 180°, limited angle (parallel "
                   "over 90°), fan beam over 360° (same generator: no retraining)")
    p.add_argument("--iterations", type=int, default=iterations,
                   help="FISTA iterations per method")
    p.add_argument("--methods", nargs="+", default=list(methods), choices=ALL_METHODS,
                   help="fbp, tv, latent (range in latent space), range, soft, sparse; hybrid "
                        "(TV + soft); pnp (PnP-FISTA), dpir (DPIR) and postprocess (the learned "
                        "peers: need --denoiser / --postprocess where the demo has them)")
    p.add_argument("--start", default="tv", choices=("fbp", "tv"),
                   help="start of the generative methods: the TV image at the discrepancy "
                   "principle's λ (no ground truth; its encoding for the latent range method), "
                   "or the FBP image (as good in parallel beam, poor in limited angle)")
    return p


def comparison_parser(description, n, out, model, angles=(10, 30), geometries=GEOMETRIES):
    """The parser of a comparison demo (``demos/*_tomography.py``): the comparison and run
    options, with ``--noise``, ``--lambdas`` and ``--quick``.

    Parameters
    ----------
    description : str
    n : int
        default number of images.
    out : str
        default output folder.
    model : str
        default model.
    angles : tuple of int
    geometries : tuple of str
        the forward problems offered.

    Returns
    -------
    argparse.ArgumentParser
    """
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_comparison_options(p, n, angles, geometries=geometries)
    p.add_argument("--noise", type=float, default=0.05,
                   help="Gaussian noise σ as a fraction of the sinogram maximum")
    p.add_argument("--lambdas", type=json.loads, default=None,
                   help='λ grids per method as JSON, e.g. \'{"soft": [30, 100]}\'')
    p.add_argument("--quick", action="store_true",
                   help="at most 2 images, 30 iterations, 2 λ per method: a smoke run")
    return add_run_options(p, model, out)


def chosen_lambdas(args, grids, quick_grids):
    """The λ grids of a demo run: ``grids`` (or ``quick_grids`` with ``--quick``, which also
    caps images and iterations) updated by ``--lambdas``.

    Parameters
    ----------
    args : argparse.Namespace
        parsed by :func:`comparison_parser` (``n`` and ``iterations`` capped with ``--quick``).
    grids, quick_grids : dict
        method → λ grid.

    Returns
    -------
    dict
    """
    lambdas = dict(quick_grids if args.quick else grids)
    if args.quick:
        args.n, args.iterations = min(args.n, 2), min(args.iterations, 30)
    lambdas.update({k: tuple(v) for k, v in (args.lambdas or {}).items()})
    return lambdas


def backend_refusal(args):
    """For a demo's ``main``: None when ``args.backend`` / ``args.device`` (and
    ``args.precision``) can run here, else
    print ``error: ...`` (what to do instead) and return the exit status 1.

    Parameters
    ----------
    args : argparse.Namespace
        with ``backend`` and ``device``.

    Returns
    -------
    None or int
    """
    from ..utilities.validation import InputError
    try:
        from ..physics.forward import check_backend
        check_backend(args.backend, args.device)
        check_precision_option(args)
    except (DeviceUnavailableError, InputError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return None
