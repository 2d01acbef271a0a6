"""Subcommands of the ``cil-genreg`` command line (one module each; see :mod:`cil_genreg.cli`)."""
