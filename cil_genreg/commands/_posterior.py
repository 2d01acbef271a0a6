r"""``cil-genreg reconstruct --samples N``: the latent posterior's mean and pixel standard
deviation written beside the reconstruction (``OUT_mean.EXT``, ``OUT_std.EXT``), by
:class:`~cil_genreg.algorithms.LatentPosteriorSampler` (MALA) started from the latent method's
solution, with the noise level ``--sigma`` in

.. math:: p(w \mid y) \propto \exp\big(-\|A G(w) - y\|^2 / 2\sigma^2 - \|w\|^2 / 2\big).
"""
import os

#: the methods whose posterior ``--samples`` draws
SAMPLED_METHODS = ("latent",)


def add_options(p):
    """The sampling options of ``reconstruct``."""
    p.add_argument("--samples", type=int, metavar="N",
                   help="also draw N posterior samples (MALA on the latent; --method latent, "
                   "2D data, needs --sigma) and write the posterior mean and pixel std next "
                   "to --out as OUT_mean.EXT and OUT_std.EXT")
    p.add_argument("--burn-in", type=int, default=200,
                   help="Langevin steps discarded first (the step adapts during them)")
    p.add_argument("--chains", type=int, default=1, help="chains run as one batch")


def output_paths(args):
    """The files ``--samples`` writes: ``(OUT_mean.EXT, OUT_std.EXT)``, or () without it.

    Raises
    ------
    ValueError
        for a method without a posterior sampler, or without ``--sigma``.
    """
    if args.samples is None:
        return ()
    if args.method not in SAMPLED_METHODS:
        raise ValueError(f"--samples draws the latent posterior p(w | y) of the range method: "
                         f"use --method latent (not {args.method!r}); the other methods have "
                         "no sampler yet.")
    if args.sigma is None:
        raise ValueError("--samples needs --sigma, the noise's standard deviation per datum "
                         "(the posterior's likelihood is exp(-||A G(w) - y||^2 / 2 sigma^2)).")
    stem, ext = os.path.splitext(args.out)
    return stem + "_mean" + ext, stem + "_std" + ext


def sample_and_write(args, A, y, lam, generator, image, write_image):
    """Draw ``--samples`` from the posterior, started from the latent method's solution at
    ``lam`` (re-found from the encoding of its ``image``), and write the mean and the std.

    Returns
    -------
    LatentPosteriorSampler
    """
    from ..algorithms import LatentPosteriorSampler
    from ..experiments.methods import generator_for, latent_map
    from ..latent import ChainDivergedError

    generator = generator_for(generator, A.domain_geometry())
    f, z = latent_map(A, y, lam, generator, x0=image, iterations=args.iterations)
    sampler = LatentPosteriorSampler(initial=z, f=f, sigma=args.sigma, step=1e-3,
                                     burn_in=args.burn_in, chains=args.chains, seed=0)
    try:
        sampler.sample(args.samples)
    except ChainDivergedError as err:
        raise ValueError(str(err)) from None
    mean_path, std_path = output_paths(args)
    write_image(sampler.mean.as_array(), mean_path)
    write_image(sampler.std.as_array(), std_path)
    print(f"posterior: {args.samples} x {args.chains} draws after {args.burn_in} burn-in steps "
          f"(MALA acceptance {sampler.acceptance:.2f}, step {sampler.step:.3g}, effective "
          f"sample size {sampler.ess:.1f}); mean written to {mean_path}, std to {std_path}")
    return sampler
