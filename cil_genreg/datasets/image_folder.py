"""Images from a folder of PNG/TIFF files, a TIFF stack, an array, or a CIL ImageData."""
import glob
import os

import numpy as np

from ._common import as_images

EXTENSIONS = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


def _scaled(a):
    """8-bit values divided by 255 (their scale is known); anything else as it is."""
    return a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a


def _read_file(path):
    """The image(s) of one file (8-bit ones scaled to [0, 1]); colour becomes grey."""
    return _scaled(_read_raw(path))


def _read_raw(path):
    """The image(s) of one file as stored; a clear error, naming it, when it cannot be read."""
    try:
        a = _decode(path)
    except Exception as err:  # noqa: BLE001 - PIL and tifffile raise many kinds for bad files
        raise ValueError(f"cannot read image file {path!r} ({type(err).__name__}: {err}): it "
                         "is truncated or corrupt; replace or remove it.") from None
    if a.size == 0:
        raise ValueError(f"image file {path!r} holds no image (no pages or pixels): it is "
                         "truncated or corrupt; replace or remove it.")
    return a


def _decode(path):
    ext = os.path.splitext(path)[1].lower()
    if ext in (".tif", ".tiff"):
        import tifffile

        a = tifffile.imread(path)
        if a.ndim == 3 and a.shape[-1] in (3, 4):
            a = a[..., :3].mean(-1).astype(a.dtype)
        return a
    from PIL import Image

    with Image.open(path) as im:
        if im.mode not in ("L", "I;16", "I", "F"):
            im = im.convert("L")  # colour, palette or 1-bit: 8-bit grey
        return np.asarray(im)


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

    Intensities: 8-bit images are divided by 255 (a dim image stays dim); other images are
    kept when already in [0, 1], else the whole set is scaled by ``(x - min) / (max - min)``.

    Returns
    -------
    numpy.ndarray
        float32 (N, H, W) in [0, 1].
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
            raw = [_read_raw(f) for f in files]
            depths = {}
            for f, r in zip(files, raw):
                depths.setdefault(str(r.dtype) if r.dtype.kind in "uib" else "float", f)
            if len(depths) > 1:
                raise ValueError(f"images in {path!r} mix bit depths ("
                                 + ", ".join(f"{d} e.g. {os.path.basename(f)!r}"
                                             for d, f in depths.items())
                                 + "), so no one intensity scale fits them all: convert them "
                                 "to one depth first.")
            arrays = [_scaled(r) for r in raw]
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
    images = as_images(_scaled(np.asarray(a)), "images")
    if size is not None:
        from ._common import resize

        images = np.clip(resize(images, int(size)), 0.0, 1.0)
    return images
