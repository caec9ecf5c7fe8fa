"""The ``mammokit`` command.

Each module in this package defines one group of subcommands with two names:

* ``ORDER`` (int): position in ``mammokit --help`` (pipeline order);
* ``register(subparsers)``: adds its subparsers, each with ``set_defaults(func=...)``; ``func``
  takes the parsed ``argparse.Namespace`` and returns an exit code.

Modules import heavy libraries (torch) inside their functions so ``mammokit --help`` stays fast.
Every subcommand is a thin wrapper over a Python function of the library.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from mammokit import __version__


class CLIError(Exception):
    """A user error: printed as one line, exit code 2, no traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mammokit",
        description="Breast-cancer screening models of Wu et al. (IEEE TMI 2019), end to end. "
        "Research use only; not for clinical decisions.",
    )
    parser.add_argument("--version", action="version", version=f"mammokit {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        modules.append(importlib.import_module(f"{__name__}.{info.name}"))
    for module in sorted(modules, key=lambda m: (getattr(m, "ORDER", 100), m.__name__)):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from mammokit.utils.log import setup_logging

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    setup_logging(args.verbose, args.quiet)
    try:
        return int(args.func(args) or 0)
    except (CLIError, FileNotFoundError, ValueError) as exc:
        # Expected user errors (bad paths, malformed CSVs, bad options): one clear line.
        print(f"mammokit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
