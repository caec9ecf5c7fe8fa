"""The ``mammokit`` command.

Each module in this package defines one group of subcommands with two names:

* ``ORDER`` (int): position in ``mammokit --help`` (pipeline order);
* ``register(subparsers)``: adds its subparsers, each with ``set_defaults(func=...)``; ``func``
  takes the parsed ``argparse.Namespace`` and returns an exit code.

Modules import heavy libraries (torch) inside their functions so ``mammokit --help`` stays fast.
Every subcommand is a thin wrapper over a Python function of the library.

Errors: a :class:`mammokit.errors.MammokitError` (bad file, bad flag, missing column...) is printed
as one line naming the file and the problem, exit status 2. So is an operating-system error on a
named file that the user can fix (no such file, permission denied, disk full, read-only file
system). Anything else is a bug in mammokit and shows its traceback.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import pkgutil
import sys

from mammokit import __version__


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
    from mammokit.errors import MammokitError

    try:
        return int(args.func(args) or 0)
    except MammokitError as exc:
        print(f"mammokit {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in USER_FIXABLE_ERRNOS:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"mammokit {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


# Operating-system errors on files the user named or the disk the user chose: their fix is the
# user's, so they get the one-line treatment (anything else from the OS is shown in full).
USER_FIXABLE_ERRNOS = frozenset({
    errno.ENOENT, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EISDIR,
    errno.ENOTDIR, errno.EEXIST, errno.ENAMETOOLONG,
})


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (a message holding line breaks from a file is folded,
    so one error stays one line in logs)."""
    return " ".join(str(exc).split()) or type(exc).__name__
