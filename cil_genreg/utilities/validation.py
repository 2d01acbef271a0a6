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
        raise TypeError(f"{name} is complex ({a.dtype}): pass real values.")
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
