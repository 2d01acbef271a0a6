"""Images from a folder of PNG/TIFF files, a TIFF stack, an array, or a CIL ImageData."""
import glob
import os

import numpy as np

from ._common import as_images

EXTENSIONS = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


def _read_file(path):
    ext = os.path.splitext(path)[1].lower()
    if ext in (".tif", ".tiff"):
        import tifffile

        a = tifffile.imread(path)
    else:
        from PIL import Image

        with Image.open(path) as im:
            a = np.asarray(im.convert("F") if im.mode not in ("L", "I;16", "I", "F") else im)
    a = np.asarray(a, dtype=np.float32)
    if a.ndim == 3 and a.shape[-1] in (3, 4) and ext in (".tif", ".tiff"):
        a = a[..., :3].mean(-1)
    return a


def image_folder(path, size=None):
    """Images as float32 (N, H, W) in [0, 1].

    Parameters
    ----------
    path : str, numpy.ndarray or object with ``as_array()``
        a directory of PNG/TIFF/JPEG files (sorted by name, all the same size; colour is
        converted to grey), a single TIFF stack (N, H, W) or image file, an array (N, H, W) or
        (H, W), or a CIL ``ImageData`` (its ``as_array()``).
    size : int, optional
        resize every image to ``size x size``.

    Intensities are kept when already in [0, 1]; otherwise the whole set is scaled by
    ``(x - min) / (max - min)`` (8-bit images: divide by 255 first).
    """
    if hasattr(path, "as_array") and not isinstance(path, (str, os.PathLike)):
        a = path.as_array()
    elif isinstance(path, np.ndarray):
        a = path
    else:
        path = os.fspath(path)
        if os.path.isdir(path):
            files = sorted(f for f in glob.glob(os.path.join(path, "*"))
                           if f.lower().endswith(EXTENSIONS))
            if not files:
                raise FileNotFoundError(f"no image files ({', '.join(EXTENSIONS)}) in {path!r}.")
            arrays = [_read_file(f) for f in files]
            shapes = {a.shape for a in arrays}
            if len(shapes) > 1:
                raise ValueError(f"images in {path!r} differ in shape ({sorted(shapes)}); "
                                 "crop or resize them to one shape first.")
            a = np.stack(arrays)
            if a.ndim == 4:
                raise ValueError(f"{path!r} holds multi-page images; pass each TIFF stack alone.")
        elif os.path.isfile(path):
            a = _read_file(path)
        else:
            raise FileNotFoundError(f"{path!r} does not exist: pass a folder of PNG/TIFF files, "
                                    "a TIFF stack, or an array.")
    a = np.asarray(a)
    if a.dtype == np.uint8:
        a = a.astype(np.float32) / 255.0
    images = as_images(a, "images")
    if size is not None:
        from ._common import resize

        images = np.clip(resize(images, int(size)), 0.0, 1.0)
    return images
