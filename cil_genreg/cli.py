"""The ``cil-genreg`` command line: ``cil-genreg <subcommand> [options]``.

Each subcommand lives in a module of :mod:`cil_genreg.commands` that provides
``NAME`` (the subcommand), ``HELP`` (one line), ``add_parser(subparsers)`` (adds its argparse
sub-parser) and ``run(args) -> int`` (the exit status). To add one, write the module and add its
name to :data:`COMMANDS`.
"""
import argparse
import importlib
import sys

#: Modules of :mod:`cil_genreg.commands`, in the order ``--help`` lists them.
COMMANDS = [
    "train",
    "evaluate_model",
    "demo",
    "reconstruct",
]


def _modules():
    return [importlib.import_module(f"cil_genreg.commands.{name}") for name in COMMANDS]


def build_parser():
    """The top-level :class:`argparse.ArgumentParser` with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="cil-genreg",
        description="Generative regularisers (VAE/AE/GAN priors) for tomographic reconstruction "
                    "with CIL.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _modules():
        p = module.add_parser(sub)
        p.set_defaults(_run=module.run)
    return parser


def main(argv=None):
    """Run the command line; returns the exit status (0 on success)."""
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
        return int(args._run(args) or 0)
    except (FileNotFoundError, FileExistsError, ValueError, KeyError, RuntimeError) as err:
        print(f"cil-genreg {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
