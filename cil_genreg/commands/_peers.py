r"""``cil-genreg reconstruct --method pnp | dpir | postprocess``: the learned peers of the
generative methods on a user's sinogram, with the networks ``cil-genreg train --model denoiser |
postprocess`` writes:

* ``pnp`` (``--denoiser FILE``): Plug-and-Play FISTA,
  :math:`x_{k+1} = D_{\sqrt{\tau\lambda}}(x_k - \tau\nabla\|Ax_k - y\|^2)`, over ``--lam``;
* ``dpir`` (``--denoiser FILE``): DPIR, Plug-and-Play half-quadratic splitting with the noise
  level falling over 8 iterations (:class:`~cil_genreg.algorithms.PlugAndPlayHQS`), over
  ``--lam``;
* ``postprocess`` (``--postprocess FILE``): FBPConvNet, :math:`P(\mathrm{FBP}(y))`, no λ; a
  network trained for another geometry warns, naming both, and its image is still written.
"""
from ..models.denoiser import DESCRIPTIONS
from ..utilities.validation import InputError

#: method -> (the kind of network it needs, the option giving it, the command that makes one)
PEERS = {"pnp": ("denoiser", "--denoiser", "`cil-genreg train --model denoiser`"),
         "dpir": ("denoiser", "--denoiser", "`cil-genreg train --model denoiser`"),
         "postprocess": ("postprocess", "--postprocess",
                         "`cil-genreg train --model postprocess` for this geometry")}


def add_options(p):
    """``--denoiser`` and ``--postprocess``."""
    p.add_argument("--denoiser", metavar="FILE",
                   help="--method pnp or dpir: a Plug-and-Play denoiser, a checkpoint of `cil-genreg "
                   "train --model denoiser`")
    p.add_argument("--postprocess", metavar="FILE",
                   help="--method postprocess: a post-processing network, a checkpoint of "
                   "`cil-genreg train --model postprocess` for this geometry")


def check_options(args):
    """Refuse, before any data are read, a peer method without its network, a network given
    to another method, and what ``postprocess`` (one network pass on the FBP image) cannot
    take: ``--lam``, ``--start tv``.

    Raises
    ------
    InputError
        saying what to pass or drop.
    """
    for method, (kind, option, command) in PEERS.items():
        given = getattr(args, option[2:])
        if args.method == method and given is None:
            raise InputError(f"--method {method} needs {DESCRIPTIONS[kind]}: pass {option} "
                             f"FILE, a checkpoint written by {command}.")
        users = [m for m, (_, o, _) in PEERS.items() if o == option]
        if given is not None and args.method not in users:
            raise InputError(f"{option} gives the network of --method {' or '.join(users)}, "
                             f"not of --method {args.method}: drop it, or use --method "
                             f"{' or '.join(users)}.")
    if args.method == "postprocess" and (args.lam or args.start != "fbp"):
        raise InputError("--method postprocess is one network pass on the FBP image: it takes "
                         "no --lam and no --start tv.")


def network(args):
    """The network of ``args.method``, loaded once (kept as ``args._peer``).

    Raises
    ------
    CheckpointError
        for a file of another kind, naming what it is and where it is used.
    """
    if getattr(args, "_peer", None) is None:
        from ..experiments.methods import load_model
        from ..models import CheckpointError
        kind, option, _ = PEERS[args.method]
        path = getattr(args, option[2:])
        try:
            args._peer = load_model(path, kind)
        except CheckpointError as err:
            raise CheckpointError(f"{option}: {err}") from None
    return args._peer


def check_size(args, size):
    """Refuse an image side the network's scales do not divide (it runs at any other)."""
    factor = network(args).unet.factor
    if size % factor:
        raise InputError(f"--image-size {size}: the {PEERS[args.method][1]} network's scales "
                         f"need a multiple of {factor}; pass --image-size "
                         f"{size - size % factor or factor}.")


def refuse_volume(args):
    """The peers reconstruct 2D sinograms only."""
    if args.method in PEERS:
        raise InputError(f"--method {args.method} reconstructs a 2D sinogram (angles × detector "
                         "pixels), not a volume: reconstruct the slices one by one.")
