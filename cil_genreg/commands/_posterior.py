r"""``cil-genreg reconstruct --samples N``: the posterior's mean and pixel standard deviation
written beside the reconstruction (``OUT_mean.EXT``, ``OUT_std.EXT``), with the noise level
``--sigma``:

* ``--method latent``: :class:`~cil_genreg.algorithms.LatentPosteriorSampler` (MALA) started from
  the latent method's solution, on

  .. math:: p(w \mid y) \propto \exp\big(-\|A G(w) - y\|^2 / 2\sigma^2 - \|w\|^2 / 2\big);

* ``--method soft``: :class:`~cil_genreg.algorithms.JointPosteriorSampler` (Gibbs: the image
  exactly, the latent by MALA) started from the soft reconstruction and its latent, on

  .. math:: p(x, w \mid y) \propto \exp\big(-\|Ax - y\|^2 / 2\sigma^2
            - \|x - G(w)\|^2 / 2\tau^2 - \|w\|^2 / 2\big),

  :math:`\tau = \sigma/\sqrt\lambda` (``--tau`` to set it).
"""
import os

#: the methods whose posterior ``--samples`` draws
SAMPLED_METHODS = ("latent", "soft")


def add_options(p):
    """The sampling options of ``reconstruct``."""
    p.add_argument("--samples", type=int, metavar="N",
                   help="also draw N posterior samples (2D data, needs --sigma) and write the "
                   "posterior mean and pixel std next to --out as OUT_mean.EXT and OUT_std.EXT: "
                   "--method latent samples p(w | y) by MALA on the latent, --method soft the "
                   "joint p(x, w | y) by Gibbs (x exactly, w by MALA)")
    p.add_argument("--burn-in", type=int, default=200,
                   help="Langevin steps discarded first (the step adapts during them)")
    p.add_argument("--chains", type=int, default=1, help="chains run as one batch")
    p.add_argument("--tau", type=float,
                   help="--method soft: the image's deviation scale from G(w) per pixel "
                   "(default σ/√λ, the soft method's λ read as a posterior)")


def output_paths(args):
    """The files ``--samples`` writes: ``(OUT_mean.EXT, OUT_std.EXT)``, or () without it.

    Raises
    ------
    ValueError
        for a method without a posterior sampler, or without ``--sigma``.
    """
    if getattr(args, "tau", None) is not None and (args.samples is None
                                                    or args.method != "soft"):
        raise ValueError("--tau is the deviation scale of the soft method's joint posterior: "
                         "it needs --method soft --samples N.")
    if args.samples is None:
        return ()
    if args.method not in SAMPLED_METHODS:
        raise ValueError(f"--samples draws the posterior of --method latent (p(w | y)) or "
                         f"--method soft (p(x, w | y)), not of {args.method!r}: the other "
                         "methods have no sampler yet.")
    if args.sigma is None:
        raise ValueError("--samples needs --sigma, the noise's standard deviation per datum "
                         "(the posterior's likelihood is exp(-||A G(w) - y||^2 / 2 sigma^2)).")
    stem, ext = os.path.splitext(args.out)
    return stem + "_mean" + ext, stem + "_std" + ext


def sample_and_write(args, A, y, lam, generator, image, write_image):
    """Draw ``--samples`` from the method's posterior (:func:`latent_sampler` or
    :func:`joint_sampler`) and write the mean and the std.

    Returns
    -------
    PosteriorSampler
    """
    from ..experiments.methods import generator_for
    from ..latent import ChainDivergedError

    generator = generator_for(generator, A.domain_geometry())
    make = joint_sampler if args.method == "soft" else latent_sampler
    sampler, what = make(args, A, y, lam, generator, image)
    try:
        sampler.sample(args.samples)
    except ChainDivergedError as err:
        raise ValueError(str(err)) from None
    mean_path, std_path = output_paths(args)
    write_image(sampler.mean.as_array(), mean_path)
    write_image(sampler.std.as_array(), std_path)
    print(f"posterior ({what}): {args.samples} x {args.chains} draws after {args.burn_in} "
          f"burn-in steps (MALA acceptance {sampler.acceptance:.2f}, step {sampler.step:.3g}, "
          f"effective sample size {sampler.ess:.1f}); mean written to {mean_path}, std to "
          f"{std_path}")
    return sampler


def latent_sampler(args, A, y, lam, generator, image):
    """The range method's latent posterior, started from the latent method's solution at
    ``lam`` (re-found from the encoding of its ``image``): (sampler, description)."""
    from ..algorithms import LatentPosteriorSampler
    from ..experiments.methods import latent_map

    f, z = latent_map(A, y, lam, generator, x0=image, iterations=args.iterations)
    sampler = LatentPosteriorSampler(initial=z, f=f, sigma=args.sigma, step=1e-3,
                                     burn_in=args.burn_in, chains=args.chains, seed=0)
    return sampler, "p(w | y), MALA"


def joint_sampler(args, A, y, lam, generator, image):
    """The soft method's joint posterior, started from its reconstruction ``image`` and the
    latent of p(w | image): (sampler, description)."""
    from ..algorithms import JointPosteriorSampler, latent_given_image, soft_posterior_scales

    scales = soft_posterior_scales(args.sigma, lam)
    tau = scales["tau"] if args.tau is None else args.tau
    w = latent_given_image(generator, image, tau, iterations=min(args.iterations, 50))
    sampler = JointPosteriorSampler(initial=image, A=A, y=y, generator=generator,
                                    sigma=args.sigma, tau=tau, latent=w, step=1e-3,
                                    burn_in=args.burn_in, chains=args.chains, seed=0)
    return sampler, (f"p(x, w | y), Gibbs, τ = {tau:.3g}; the soft MAP is its mode for "
                     f"μ = σ²/λ = {scales['mu_consistent']:.3g}")
