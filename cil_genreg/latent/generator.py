"""What the package needs to know about a generator ``G: (B, d) -> (B, 1, H, W)``."""
import contextlib
import copy

import torch

from ..utilities.validation import InputError, check_device


#: output pixels per batch from which ``threads="auto"`` keeps torch's thread count (all cores
#: by default) instead of one thread: measured in benchmarks/bench_threads.py.
AUTO_THREADS_PIXELS = 16384

#: a :class:`torch.device` from ``None`` (CPU), a name or a device, checked to exist
#: (:func:`cil_genreg.utilities.validation.check_device`).
resolve_device = check_device

#: the ``precision`` choices of :class:`GeneratorAdapter`: the generator's forward pass in
#: float32, or under :func:`torch.autocast` in bfloat16 (CPU or CUDA) or float16 (CUDA only)
PRECISIONS = ("float32", "bfloat16", "float16")


def check_precision(precision, device):
    """The autocast dtype of ``precision`` on ``device`` (None for float32).

    Parameters
    ----------
    precision : {"float32", "bfloat16", "float16"}
    device : torch.device

    Returns
    -------
    torch.dtype or None

    Raises
    ------
    InputError
        for another value, or float16 on the CPU (torch's CPU half kernels are slow or
        missing: bfloat16 is the CPU's reduced precision).
    """
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
    if precision == "float16" and device.type != "cuda":
        raise InputError(f"precision='float16' needs a CUDA device (the generator is on "
                         f"{device.type}): on the CPU use precision='bfloat16' (--precision "
                         "bfloat16) or 'float32'.")
    return None if precision == "float32" else getattr(torch, precision)


class GeneratorAdapter:
    """A generator module with its latent dimension and image shape, on one device.

    The package's own models carry ``latent_dim`` and ``image_shape``; for a plain
    :class:`torch.nn.Module` pass ``latent_dim`` and the image shape is found by one forward
    pass of a zero latent. The generator runs in eval mode on ``device`` (batch norm and dropout
    must not change between inner iterations); the caller's module is never changed for
    that: where it is in training mode or on another device, a copy is used
    (:func:`own_copy`).

    Parameters
    ----------
    generator : torch.nn.Module
        maps a float32 latent batch (B, d) to an image batch (B, 1, H, W) (or (B, C, H, W)
        when it declares ``output_channels = C``: channel 0 is the image, the others what a
        misfit needs besides, e.g. a precision factor).
    latent_dim : int, optional
        ``d``; required when the module has no ``latent_dim`` attribute.
    device : str or torch.device, optional
        where the generator runs; default: where its parameters are (CPU if it has none).
    threads : int, "auto" or None
        CPU threads torch uses while this package runs the generator (restored afterwards);
        None leaves torch's setting. ``"auto"`` (default): one thread for a batch of fewer
        than :data:`AUTO_THREADS_PIXELS` output pixels (a few small images: a latent step is
        many small passes, where the threads' synchronisation costs more than they save) and
        torch's setting for larger batches (a volume's slices, a 128² image), where the work
        splits well (benchmarks/README.md has the timings).
    precision : {"float32", "bfloat16", "float16"}
        the generator's forward pass (and so its backward) in float32 (default) or under
        :func:`torch.autocast` in bfloat16 (CPU or CUDA) or float16 (CUDA only); the image
        comes back as float32 and the solver's own arithmetic stays float32
        (:func:`check_precision`).

    Raises
    ------
    TypeError
        when ``generator`` is not a :class:`torch.nn.Module`.
    ValueError
        when ``latent_dim`` is missing or disagrees with the module's, the output is not
        (B, 1, H, W) (or not its declared ``image_shape``) or holds NaN or Inf.
    """

    def __init__(self, generator, latent_dim=None, device=None, threads="auto",
                 precision="float32"):
        if isinstance(generator, GeneratorAdapter):
            latent_dim = latent_dim or generator.latent_dim
            generator = generator.module
        if threads is not None and threads != "auto" and (
                isinstance(threads, str) or int(threads) < 1):
            raise ValueError(f"threads must be a positive integer, 'auto' or None, got "
                             f"{threads!r}")
        self.num_threads = threads if threads in (None, "auto") else int(threads)
        if getattr(generator, "kind", "generator") != "generator":
            from ..models.denoiser import require_kind
            require_kind(generator, "generator", "a generative regulariser")
        if not isinstance(generator, torch.nn.Module):
            raise TypeError(
                f"generator must be a torch.nn.Module mapping (B, d) latents to (B, 1, H, W) "
                f"images, got {type(generator).__name__}. Load one with "
                "cil_genreg.models.load(path) or cil_genreg.models.pretrained('mnist-vae').")
        own = getattr(generator, "latent_dim", None)
        if latent_dim is None:
            latent_dim = own
        if latent_dim is None:
            raise ValueError(
                f"{type(generator).__name__} has no `latent_dim` attribute: pass latent_dim= "
                "(the size d of the latent vectors it takes).")
        if own is not None and int(own) != int(latent_dim):
            raise ValueError(f"latent_dim={latent_dim} disagrees with the generator's own "
                             f"latent_dim={own}.")
        self.latent_dim = int(latent_dim)
        if device is None:
            p = next(generator.parameters(), None)
            device = p.device if p is not None else None
        self.device = resolve_device(device)
        self.precision = precision
        self.autocast_dtype = check_precision(precision, self.device)
        #: the relative rounding of the generator's output (for the solver's line search)
        self.value_eps = None if self.autocast_dtype is None else \
            torch.finfo(self.autocast_dtype).eps
        self.module = own_copy(generator, self.device)
        #: the module's parameters, for :func:`frozen` (its weights are loaded in place, never
        #: replaced, while the package uses it)
        self.parameters = tuple(self.module.parameters())
        self.dtype = torch.float32
        with torch.no_grad(), frozen(self.module):
            probe = self.module(torch.zeros(1, self.latent_dim, device=self.device))
        if probe.device.type != "meta" and not bool(torch.isfinite(probe).all()):
            raise ValueError(
                "the generator returns NaN or Inf for z = 0: its weights are broken (a "
                "diverged training?). Train it again (lower --lr) or load another checkpoint.")
        #: channels of the output: 1 for an image, more for a generator that declares
        #: ``output_channels`` (a structured model's mean and precision factor, channel 0 the
        #: image: :class:`cil_genreg.models.FactorGenerator`)
        self.output_channels = int(getattr(generator, "output_channels", 1))
        if probe.dim() != 4 or probe.shape[0] != 1 or probe.shape[1] != self.output_channels:
            raise ValueError(
                f"the generator must return images of shape (B, {self.output_channels}, H, W); "
                f"for a latent batch of shape (1, {self.latent_dim}) it returned "
                f"{tuple(probe.shape)}.")
        self.image_shape = tuple(int(s) for s in probe.shape[2:])
        declared = getattr(generator, "image_shape", None)
        if declared is not None and tuple(declared) != self.image_shape:
            raise ValueError(f"the generator declares image_shape={tuple(declared)} but returns "
                             f"images of shape {self.image_shape}.")

    def __call__(self, z):
        """:math:`G(z)` as float32, the forward pass in the adapter's ``precision``."""
        if self.autocast_dtype is None:
            return self.module(z)
        with torch.autocast(self.device.type, dtype=self.autocast_dtype):
            image = self.module(z)
        return image.float()

    def frozen(self):
        """:func:`frozen` of the module, from its kept parameter list."""
        return frozen(self.module, self.parameters)

    def thread_count(self, images=1):
        """The CPU threads for a batch of ``images`` images (None: leave torch's setting)."""
        if self.num_threads != "auto":
            return self.num_threads
        pixels = int(images) * self.image_shape[0] * self.image_shape[1]
        return None if pixels >= AUTO_THREADS_PIXELS else 1

    @contextlib.contextmanager
    def threads(self, images=1):
        """Run the block with this generator's CPU thread count for batches of ``images``
        images (see ``threads``)."""
        count = self.thread_count(images)
        if count is None or self.device.type != "cpu":
            yield
            return
        before = torch.get_num_threads()
        torch.set_num_threads(count)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def check_image_shape(self, shape, what="image"):
        """Raise a ValueError naming both shapes unless ``shape[-2:]`` is the generator's."""
        shape = tuple(shape)
        if shape[-2:] != self.image_shape or len(shape) not in (2, 3):
            raise ValueError(
                f"the generator makes {self.image_shape[0]}x{self.image_shape[1]} images but the "
                f"{what} has shape {shape}. Use an ImageGeometry of {self.image_shape} (2D) or "
                f"(slices, {self.image_shape[0]}, {self.image_shape[1]}) (3D, regularised slice "
                "by slice), or a generator trained on images of your size.")


def own_copy(module, device):
    """``module`` itself when it is in eval mode with every parameter and buffer on
    ``device``; otherwise a deep copy moved there and put in eval mode. The caller's module
    (its device, weights, ``requires_grad`` flags and training mode) is never changed, so two
    users of one module on different devices do not disturb each other.

    Parameters
    ----------
    module : torch.nn.Module
    device : torch.device

    Returns
    -------
    torch.nn.Module
    """
    tensors = list(module.parameters()) + list(module.buffers())
    if not any(m.training for m in module.modules()) and \
            all(t.device == device for t in tensors):
        return module
    return copy.deepcopy(module).to(device).eval()


@contextlib.contextmanager
def frozen(module, parameters=None):
    """Switch off ``requires_grad`` of the module's parameters for the duration of the block,
    so that autograd differentiates with respect to the latent only (no weight gradients are
    computed or accumulated). The flags are restored afterwards.

    Parameters
    ----------
    module : torch.nn.Module
    parameters : sequence of torch.nn.Parameter, optional
        the module's parameters, when the caller keeps them (saves walking the module).

    Returns
    -------
    contextlib.AbstractContextManager
        a context manager (``with frozen(G): ...``) that yields ``module``.
    """
    parameters = module.parameters() if parameters is None else parameters
    params = [p for p in parameters if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p in params:
            p.requires_grad_(True)


def encode_mean(module, images):
    """The encoder's code of ``images``: the mean of ``encode``'s ``(mu, logvar)`` (a VAE) or
    its code (an AE), without gradients; None when the module has no encoder (a GAN).

    Parameters
    ----------
    module : torch.nn.Module
        a generator, with or without an ``encode`` method.
    images : torch.Tensor
        (B, 1, H, W) on the module's device.

    Returns
    -------
    torch.Tensor or None
        (B, d).
    """
    encode = getattr(module, "encode", None)
    if encode is None:
        return None
    with torch.no_grad():
        code = encode(images)
    return code[0] if isinstance(code, (tuple, list)) else code


def jacobian_norm_squared(adapter, samples=4, iterations=10, seed=0):
    r"""A lower estimate of :math:`\max_z \|J_G(z)\|_2^2`: power iteration on
    :math:`J_G^T J_G` (``torch.func`` jvp and vjp) at :math:`z_0 = 0` and ``samples`` draws
    :math:`z_k \sim N(0, I)`.

    Parameters
    ----------
    adapter : GeneratorAdapter
    samples : int
        random latents besides :math:`z = 0`.
    iterations : int
        power iterations per latent.
    seed : int
        seeds the draws.

    Returns
    -------
    float
        the largest estimate (0 when :math:`G` is constant).
    """
    rng = torch.Generator().manual_seed(seed)
    d = adapter.latent_dim
    points = [torch.zeros(1, d)] + [torch.randn(1, d, generator=rng) for _ in range(samples)]
    largest = 0.0
    with frozen(adapter.module), adapter.threads():
        for z in points:
            z = z.to(adapter.device)
            u = torch.randn(1, d, generator=rng).to(adapter.device)
            u /= u.norm()
            value = 0.0
            for _ in range(iterations):
                _, ju = torch.func.jvp(adapter.module, (z,), (u,))
                _, vjp = torch.func.vjp(adapter.module, z)
                (jtju,) = vjp(ju)
                value = jtju.norm().item()
                if value == 0.0:
                    break
                u = jtju / value
            largest = max(largest, value)
    return largest
