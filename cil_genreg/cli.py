"""The ``cil-genreg`` command line: ``cil-genreg <subcommand> [options]``.

Each subcommand lives in a module of :mod:`cil_genreg.commands` that provides
``NAME`` (the subcommand), ``HELP`` (one line), ``add_parser(subparsers)`` (adds its argparse
sub-parser) and ``run(args) -> int`` (the exit status). To add one, write the module and add its
name to :data:`COMMANDS`.
"""
import argparse
import importlib
import os
import sys

from .utilities.validation import UserError

#: Modules of :mod:`cil_genreg.commands`, in the order ``--help`` lists them.
COMMANDS = [
    "train",
    "evaluate_model",
    "fit_prior",
    "demo",
    "reconstruct",
]


def _modules():
    return [importlib.import_module(f"cil_genreg.commands.{name}") for name in COMMANDS]


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors on one line (``PROG: error: ... (see PROG --help)``)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser():
    """The top-level :class:`argparse.ArgumentParser` with every registered subcommand."""
    parser = _Parser(
        prog="cil-genreg",
        description="Generative regularisers (VAE/AE/GAN priors) for tomographic reconstruction "
                    "with CIL.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _modules():
        p = module.add_parser(sub)
        p.set_defaults(_run=module.run)
    return parser


#: what a command raises for a user's input or environment: printed as one ``error:`` line,
#: exit status 1. Anything else is a bug and keeps its traceback.
EXPECTED_ERRORS = (OSError, ValueError, UserError)
#: set this environment variable (to anything) to see the traceback of expected errors too.
DEBUG_VARIABLE = "CIL_GENREG_DEBUG"


def _error(command, err):
    message = " ".join(str(err).split()) or type(err).__name__
    print(f"cil-genreg {command}: error: {message}", file=sys.stderr)


def main(argv=None):
    """Run the command line; returns the exit status.

    0 on success; 2 for a usage error (an unknown option, a value out of its range: see
    :mod:`cil_genreg.commands._checks`); 1 when the command refuses its input or cannot run
    here (:data:`EXPECTED_ERRORS`), with one ``error:`` line on stderr; 130 when interrupted.
    Other exceptions are bugs: they propagate with their traceback.
    """
    from .commands._checks import check_options

    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:  # `torchrun ... -m cil_genreg.cli -- train ...`
        argv = argv[1:]
    args = parser.parse_args(argv)
    args._argv = argv
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 2
    try:
        check_options(args)
    except (TypeError, ValueError) as err:
        _error(args.command, err)
        return 2
    try:
        return int(args._run(args) or 0)
    except EXPECTED_ERRORS as err:
        if os.environ.get(DEBUG_VARIABLE):
            raise
        _error(args.command, err)
        return 1
    except KeyboardInterrupt:
        print(f"cil-genreg {args.command}: interrupted", file=sys.stderr)
        return 130


def script_status(main, argv=None):
    """For a demo script's ``__main__``: run ``main(argv)`` and return its exit status, with
    expected errors (:data:`EXPECTED_ERRORS`) as one ``error:`` line and status 1, as
    :func:`main` does (a result that is not an int counts as success)."""
    name = os.path.basename(sys.argv[0] or "demo")
    try:
        result = main(argv)
    except EXPECTED_ERRORS as err:
        if os.environ.get(DEBUG_VARIABLE):
            raise
        print(f"{name}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
