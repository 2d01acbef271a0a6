"""The image files the commands write: ``.npy``, ``.tif`` / ``.tiff`` and ``.png``."""
import numpy as np

#: the image files ``--out`` can write
IMAGE_SUFFIXES = (".npy", ".tif", ".tiff", ".png")


def write_image(image, path):
    """Write a 2D array to ``.npy`` (as is), ``.tif``/``.tiff`` (float32) or ``.png`` (clipped
    to [0, 1], 8 bit), atomically: a file it replaces is never left half written."""
    from ..models.checkpoints import atomic_write

    low = path.lower()
    if low.endswith(".npy"):
        def write(tmp):
            with open(tmp, "wb") as f:
                np.save(f, image)
    elif low.endswith((".tif", ".tiff")):
        def write(tmp):
            import tifffile
            tifffile.imwrite(tmp, image.astype(np.float32))
    elif low.endswith(".png"):
        if image.ndim != 2:
            raise ValueError(f"a volume {image.shape} cannot be written as PNG: use .npy or .tif")

        def write(tmp):
            from PIL import Image
            Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8)).save(
                tmp, format="PNG")
    else:
        raise ValueError(f"--out must end in .npy, .tif, .tiff or .png, got {path!r}")
    return atomic_write(path, write)
