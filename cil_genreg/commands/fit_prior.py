"""``cil-genreg fit-prior``: fit the latent Gaussian of a VAE / AE to its training images and
write a checkpoint that carries it (:mod:`cil_genreg.models.latent_prior`)."""
import json
import shlex
import sys

from ..utilities.output_safety import check_output_file

NAME = "fit-prior"
HELP = ("fit a Gaussian latent prior to a model's codes of its training images (the "
        "regularisers then penalise (z-m)^T Sigma^-1 (z-m) instead of ||z||^2)")


def add_parser(subparsers):
    p = subparsers.add_parser(
        NAME, help=HELP, description=HELP + ". Writes OUT: the model's weights and the prior. "
        "Use the training data of the model, never the images it will reconstruct.")
    p.add_argument("checkpoint", help="a .safetensors checkpoint (VAE or AE) or a pretrained name")
    p.add_argument("--data", required=True,
                   help="the model's training data: mnist | shapes | ellipses | ct-chest | "
                        "ct-head | PATH (as for `cil-genreg train`)")
    p.add_argument("--mnist-path", default=None, help="MNIST training files (as for train)")
    p.add_argument("--n", type=int, default=None, help="use N training images at most")
    p.add_argument("--augment", type=int, default=0,
                   help="ct-*: augmented copies of every slice (more codes, a broader prior)")
    p.add_argument("--shrinkage", type=float, default=None,
                   help="the covariance's floor delta (default "
                        "cil_genreg.models.latent_prior.SHRINKAGE)")
    p.add_argument("--rank", type=int, default=None,
                   help="eigenpairs kept (default: all the codes span, min(N-1, d))")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", required=True, help="the new checkpoint (.safetensors)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    return p


def run(args):
    from .. import models
    from ..latent import resolve_device
    from ..models.latent_prior import SHRINKAGE
    from ._data import load_data

    path = (args.checkpoint if args.checkpoint not in models.available_pretrained()
            else models.pretrained_path(args.checkpoint))
    check_output_file(args.out, overwrite=args.overwrite, inputs=[path],
                      suffixes=(".safetensors",))
    device = resolve_device(args.device)
    model = models.load(path, map_location=device)
    size = model.image_shape[0]
    images, info = load_data(args.data, "train", n=args.n, size=size, seed=args.seed,
                             mnist_path=args.mnist_path, augment=args.augment)
    if len(images) < 2:
        raise ValueError(f"--data {args.data!r} gave {len(images)} image(s): a prior needs at "
                         "least 2 (and many more than a few to be of use).")
    shrinkage = SHRINKAGE if args.shrinkage is None else args.shrinkage
    prior = models.fit_latent_prior(model, images, shrinkage=shrinkage, rank=args.rank)
    models.attach_prior(model, prior)
    metadata = dict(model.metadata)
    metadata["latent_prior"] = {
        "codes": len(images), "rank": prior.rank, "shrinkage": shrinkage,
        "data": dict(info, split="train"),
        "command": "cil-genreg " + shlex.join(getattr(args, "_argv", sys.argv[1:]))}
    models.save(model, args.out, metadata=metadata)
    print(json.dumps({"out": args.out, "codes": len(images), "rank": prior.rank,
                      "shrinkage": shrinkage, "largest_variance": float(prior.variances.max()),
                      "latent_dim": prior.latent_dim}))
    return 0
