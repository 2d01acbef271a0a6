"""Checks of user input shared by the API and the command line: numbers, arrays, devices and
CIL containers, each refusing bad input with one line that names it and says what to do.

Torch and CIL are imported only inside the functions that need them, so the torch-only parts
of the package can use this module without CIL.
"""
import math
import numbers

import numpy as np


class UserError(Exception):
    """Base of the package's errors about a user's request or environment (not bugs); the
    command line prints them as one ``error:`` line. Concrete classes also derive from the
    built-in exception users expect (e.g. :class:`RuntimeError`)."""


class DeviceUnavailableError(UserError, RuntimeError):
    """A device or backend was asked for that this machine or build does not have."""


class InputError(UserError, ValueError):
    """A file or value the user gave that cannot be used as it is (named in the message)."""


class InputTypeError(UserError, TypeError):
    """Values of a kind that cannot be used (complex, booleans, text, Python objects)."""


def _is_tensor(value):
    return type(value).__module__.startswith("torch")


def check_real(value, name, *, low=None, high=None, low_open=False, high_open=False,
               finite=True):
    """``value`` as a float, refused unless a real number in the given range.

    Parameters
    ----------
    value : object
        a Python or numpy real number (not a bool, not a tensor).
    name : str
        how to call it in the message (e.g. ``"mu"`` or ``"--lam"``).
    low, high : float, optional
        bounds; ``low_open`` / ``high_open`` exclude them.
    finite : bool
        refuse NaN and infinities (NaN is always refused).

    Returns
    -------
    float

    Raises
    ------
    TypeError
        for a non-number (a tensor, a string, a bool, an array).
    ValueError
        for NaN, an infinity (with ``finite``) or a value out of range.
    """
    if _is_tensor(value):
        raise TypeError(f"{name} must be a number, got a {type(value).__name__}: pass "
                        f"float({name}) (a tensor would tie the step to the autograd graph).")
    if isinstance(value, (bool, np.bool_)) or not (
            isinstance(value, numbers.Real) or (np.ndim(value) == 0 and
                                                np.issubdtype(np.asarray(value).dtype,
                                                              np.number) and
                                                np.isrealobj(value))):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} "
                        f"{value!r}.")
    x = float(value)
    if math.isnan(x) or (finite and math.isinf(x)):
        raise ValueError(f"{name} must be a finite number, got {x}.")
    if low is not None and (x < low or (low_open and x == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low:g}, got {x:g}.")
    if high is not None and (x > high or (high_open and x == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high:g}, got {x:g}.")
    return x


def check_positive(value, name):
    """``check_real(value, name, low=0, low_open=True)``: a finite number > 0."""
    return check_real(value, name, low=0.0, low_open=True)


def check_non_negative(value, name):
    """``check_real(value, name, low=0)``: a finite number >= 0."""
    return check_real(value, name, low=0.0)


def check_fraction(value, name):
    """A finite number in the open interval (0, 1)."""
    return check_real(value, name, low=0.0, high=1.0, low_open=True, high_open=True)


def check_int(value, name, low=1):
    """``value`` as an int, refused unless an integer ``>= low``.

    Raises
    ------
    TypeError
        for a non-integer (a float with a fraction, a bool, a string).
    ValueError
        for a value below ``low``.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral,)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}.")
    n = int(value)
    if n < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {n}.")
    return n


def check_finite_array(array, name):
    """Refuse an array (or DataContainer) holding NaN or infinite values.

    Raises
    ------
    ValueError
        naming ``name`` and how many values are not finite.
    """
    a = array.as_array() if hasattr(array, "as_array") else np.asarray(array)
    if np.iscomplexobj(a):
        raise InputTypeError(f"{name} is complex ({a.dtype}): pass real values (e.g. its "
                             "magnitude np.abs(values) or its real part values.real).")
    if a.dtype.kind == "f":
        bad = int(a.size - np.count_nonzero(np.isfinite(a)))
        if bad:
            raise ValueError(f"{name} holds {bad} NaN or infinite value(s): clean or mask the "
                             "data first.")
    return array


def check_device(device):
    """A :class:`torch.device` from a name, refusing unknown names with what is accepted.

    Parameters
    ----------
    device : None, str or torch.device
        None means CPU.

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        for a name torch does not know (e.g. ``"gpu"``).
    DeviceUnavailableError
        for a CUDA device this machine or PyTorch build does not have.
    """
    import torch

    if device is None:
        return torch.device("cpu")
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a str such as 'cpu' or 'cuda:0', got "
                        f"{type(device).__name__}.")
    try:
        device = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"unknown device {device!r}: use 'cpu', 'cuda' or 'cuda:N'.") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                f"device={str(device)!r} was asked for but torch.cuda.is_available() is False "
                "(no NVIDIA GPU, or a CPU-only PyTorch build). Pass device='cpu' (--device "
                "cpu), or install a CUDA build of PyTorch on a machine with a GPU.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceUnavailableError(
                f"device={str(device)!r} was asked for but only {torch.cuda.device_count()} "
                "CUDA device(s) exist.")
    return device


def _container_kind(x):
    try:
        from cil.framework import AcquisitionData, ImageData
    except ImportError:  # pragma: no cover - the CIL side always has CIL
        return type(x).__name__
    if isinstance(x, AcquisitionData):
        return "AcquisitionData"
    if isinstance(x, ImageData):
        return "ImageData"
    return type(x).__name__


def check_image(x, name="x"):
    """Refuse what is not a real-valued image container: a non-DataContainer, an
    ``AcquisitionData`` (data, where an image is expected), or integer / complex values
    (a result written back into them would be truncated).

    Raises
    ------
    TypeError
        naming what was passed and what to pass instead.
    """
    if not hasattr(x, "as_array"):
        raise TypeError(f"{name} must be a CIL DataContainer (e.g. ImageData), got "
                        f"{type(x).__name__}.")
    if _container_kind(x) == "AcquisitionData":
        raise TypeError(f"{name} is AcquisitionData (projection data) but an image is expected: "
                        "pass an ImageData (e.g. A.domain_geometry().allocate() or an FBP "
                        "reconstruction).")
    dtype = np.dtype(getattr(x, "dtype", None) or x.as_array().dtype)
    if dtype.kind not in "f":
        raise TypeError(f"{name} has dtype {dtype}: the generative regularisers work on real "
                        f"floating-point images; convert it first (e.g. "
                        f"ImageData(x.as_array().astype('float32'), geometry=x.geometry)).")
    return x


def check_out(out, like, name="out"):
    """Refuse an ``out=`` container that cannot receive a result shaped like ``like``: another
    container kind (ImageData vs AcquisitionData), shape or dtype.

    Raises
    ------
    TypeError, ValueError
        naming both containers.
    """
    if out is None:
        return None
    if not hasattr(out, "as_array"):
        raise TypeError(f"{name} must be a CIL DataContainer like the input, got "
                        f"{type(out).__name__}.")
    kind, want = _container_kind(out), _container_kind(like)
    if kind != want and like is not None:
        raise TypeError(f"{name} is {kind} but the result is {want}: pass "
                        f"{name}=x.geometry.allocate() (or None).")
    if like is not None and tuple(out.shape) != tuple(like.shape):
        raise ValueError(f"{name} has shape {tuple(out.shape)} but the result has shape "
                         f"{tuple(like.shape)}.")
    dtype = np.dtype(getattr(out, "dtype", None) or out.as_array().dtype)
    want_dtype = np.dtype(getattr(like, "dtype", None) or np.float32) if like is not None \
        else np.dtype(np.float32)
    if dtype != want_dtype:
        raise TypeError(f"{name} has dtype {dtype} but the result is {want_dtype}: allocate "
                        f"{name} with x.geometry.allocate(), or pass None.")
    return out


#: what numpy's dtype kinds that are not numbers hold, for messages
_KINDS = {"U": "text", "S": "bytes", "O": "Python objects", "V": "records", "M": "dates",
          "m": "time spans"}


def real_array(array, name, dtype=np.float32, booleans=False):
    """``array`` as real ``dtype`` values, refused unless it holds finite numbers.

    The NaN / Inf check runs on the values *after* the cast too, so float64 values beyond
    float32's range are refused rather than turned into infinities.

    Parameters
    ----------
    array : array_like
    name : str
        how to call it in messages (e.g. ``"--data 'sino.npy'"``).
    dtype : numpy dtype
        the dtype returned.
    booleans : bool
        accept True / False as 1 / 0 (binary images); refused by default (a mask is not data).

    Returns
    -------
    numpy.ndarray

    Raises
    ------
    InputTypeError
        for complex, boolean (unless ``booleans``), text or object values.
    InputError
        for an empty array, NaN / Inf values or values out of ``dtype``'s range.
    """
    a = np.asarray(array)
    kind = a.dtype.kind
    if kind == "b" and not booleans:
        raise InputTypeError(f"{name} holds booleans (True/False), not measured values: pass "
                             "numbers (save them with np.save(path, values.astype('float32'))).")
    if kind not in "biufc":
        raise InputTypeError(f"{name} holds {_KINDS.get(kind, 'non-numbers')} ({a.dtype}), not "
                             "numbers: save a numeric array (np.save(path, values.astype("
                             "'float32'))).")
    check_finite_array(a, name)
    if a.size == 0:
        raise InputError(f"{name} is empty (shape {a.shape}): it holds no values; give an "
                         "array with data.")
    with np.errstate(over="ignore", invalid="ignore"):
        out = a.astype(dtype)
    if out.dtype.kind == "f" and not np.isfinite(out).all():
        raise InputError(f"{name} holds values beyond the range of {np.dtype(dtype)} (largest "
                         f"|value| {float(np.abs(a).max()):.3g}): rescale them first.")
    return out


#: the largest |angle| a geometry may have, per unit: beyond it angles are garbage (and ASTRA's
#: FBP can hang on them)
ANGLE_BOUND = {"degree": 1e4, "radian": 1e3}


def check_angles(angles, name, unit="degree"):
    """Projection angles as float64, refused unless finite, not all equal and of sane size
    (:data:`ANGLE_BOUND`); checked before any projector is built.

    Parameters
    ----------
    angles : array_like
    name : str
        how to call them in messages.
    unit : str
        ``"degree"`` or ``"radian"`` (or CIL's angle unit).

    Returns
    -------
    numpy.ndarray

    Raises
    ------
    InputError, InputTypeError
        naming ``name``, the problem and the fix.
    """
    unit = "radian" if str(getattr(unit, "value", unit)).lower().startswith("rad") else "degree"
    a = real_array(angles, name, np.float64).ravel()
    largest = float(np.abs(a).max())
    if largest > ANGLE_BOUND[unit]:
        raise InputError(f"{name}: an angle of {largest:.3g} {unit}s is beyond any scan "
                         f"(|angle| <= {ANGLE_BOUND[unit]:g} {unit}s is accepted): check the "
                         "values and their unit (--angles-unit).")
    if a.size > 1 and a.max() == a.min():
        raise InputError(f"{name}: all {a.size} angles are equal ({a[0]:g}), a degenerate "
                         "geometry: give the angle of each projection (spread over the scan, "
                         "e.g. 0 to 180 degrees), or use --angles-deg N for equispaced ones.")
    return a


def check_domain(x, operator, name="x0"):
    """Refuse a start image ``x`` that is not an image of ``operator``'s domain (None passes).

    Raises
    ------
    TypeError, InputError
        naming ``name``, both shapes and what to pass instead.
    """
    if x is None:
        return None
    check_image(x, name)
    domain = operator.domain_geometry()
    if tuple(x.shape) != tuple(domain.shape):
        raise InputError(f"{name} has shape {tuple(x.shape)} but the operator's images have "
                         f"shape {tuple(domain.shape)}: start from an image of "
                         "A.domain_geometry() (e.g. its allocate(0), or an FBP of the data), "
                         f"or leave {name} out.")
    return x
