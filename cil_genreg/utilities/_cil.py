"""The one place that imports CIL, so that a missing CIL gives one clear message."""

_HOW_TO_GET_CIL = (
    "cil_genreg needs the Core Imaging Library (CIL), which is a conda package and is not on "
    "PyPI. Install it into this environment with\n"
    "    conda install -c ccpi -c conda-forge cil astra-toolbox\n"
    "or create the project's environment with `conda env create -f environment.yml`. "
    "See https://github.com/TomographicImaging/CIL#installation."
)


def require_cil():
    """Import :mod:`cil` or raise an ImportError that says how to install it."""
    try:
        import cil  # noqa: F401
        import cil.framework  # noqa: F401
        import cil.optimisation.functions  # noqa: F401
    except ImportError as err:  # pragma: no cover - exercised only without CIL
        raise ImportError(_HOW_TO_GET_CIL) from err
    return cil
