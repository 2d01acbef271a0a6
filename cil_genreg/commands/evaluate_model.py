"""``cil-genreg evaluate-model``: the paper's desired properties of a generator, as JSON + PNG."""
import json
import os

from ..utilities.output_safety import check_output_files

NAME = "evaluate-model"
HELP = "measure a generator on held-out images: latent fit, samples, interpolation, latents"
#: what it writes into --out
REPORT_FILES = ("report.json", "evaluation.png")


def add_parser(subparsers):
    p = subparsers.add_parser(
        NAME, help=HELP, description=HELP + ". Writes DIR/report.json and DIR/evaluation.png.")
    p.add_argument("checkpoint", help="a .safetensors checkpoint or a pretrained name "
                                      "(e.g. mnist-vae)")
    p.add_argument("--data", required=True,
                   help="mnist (the held-out test split) | shapes | ellipses (fresh seeds) | PATH")
    p.add_argument("--mnist-path", default=None, help="MNIST files (default: shipped test split)")
    p.add_argument("--n", type=int, default=100, help="number of held-out images")
    p.add_argument("--steps", type=int, default=500, help="Adam steps of the latent fit")
    p.add_argument("--lr", type=float, default=0.05, help="Adam step of the latent fit")
    p.add_argument("--reg", type=float, default=1e-3, help="lambda in ||G(z)-x||^2 + lambda||z||^2")
    p.add_argument("--start", choices=("zero", "encoder"), default="zero",
                   help="where the latent fit starts: z = 0, or the encoder's code of each "
                        "image (a VAE / AE; what latent-grid models need: they stall at z = 0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--overwrite", action="store_true",
                   help="replace report.json / evaluation.png of an earlier run in --out")
    return p


def run(args):
    import numpy as np
    import torch

    from .. import models
    from ..experiments.evaluation import evaluate_model
    from ..latent import resolve_device
    from ._data import load_data

    check_output_files(args.out, REPORT_FILES, overwrite=args.overwrite,
                       inputs=[args.checkpoint, args.data])
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if os.path.exists(args.checkpoint):
        generator = models.load(args.checkpoint, map_location=device)
    elif args.checkpoint in models.available_pretrained():
        generator = models.pretrained(args.checkpoint, map_location=device)
    else:
        raise FileNotFoundError(f"{args.checkpoint!r} is neither a checkpoint file nor one of the "
                                f"pretrained models {models.available_pretrained()}.")
    size = generator.image_shape[0]
    if args.data == "mnist":
        images, info = load_data("mnist", "test", size=size, mnist_path=args.mnist_path)
        rng = np.random.default_rng(args.seed)
        images = images[rng.permutation(len(images))[:args.n]]  # a class mix
        info["subset"] = f"{len(images)} of the test split, seed {args.seed}"
    else:
        patch = getattr(generator, "metadata", {}).get("patch") or None  # a patch model
        images, info = load_data(args.data, "test", n=args.n, size=size, seed=args.seed,
                                 patch=patch and int(patch))
    info["checkpoint"] = args.checkpoint
    info["model_metadata"] = getattr(generator, "metadata", {})
    report = evaluate_model(generator, images, n=args.n, out_dir=args.out, reg=args.reg,
                            steps=args.steps, lr=args.lr, seed=args.seed,
                            progress=not args.quiet, info=info, start=args.start)
    lf = report["latent_fit"]
    print(json.dumps({"latent_fit_psnr_mean_db": round(lf["psnr_mean_db"], 2),
                      "latent_fit_psnr_median_db": round(lf["psnr_median_db"], 2),
                      "latent_fit_hfen_mean": round(lf["hfen_mean"], 3),
                      "n": report["n_images"], "report": os.path.join(args.out, "report.json"),
                      "figure": report["figure"]}))
    return 0
