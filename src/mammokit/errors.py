"""The errors a user can cause, as one family.

Every problem a *user* can cause (a bad file, a bad flag, a missing column, a model that does not
fit the data) raises a :class:`MammokitError` whose message names the file (or option) and the
problem. The ``mammokit`` command prints such an error as one line and exits with status 2;
anything else that escapes is a bug in mammokit and is shown with its traceback, so that a bug is
never mistaken for bad input.

The classes also derive from ``ValueError`` (and :class:`MissingFileError` from
``FileNotFoundError``) so that code written against the built-in types keeps working.

Batch jobs (preprocess, heatmaps, predict, import...) catch :class:`MammokitError` (and ``OSError``
for I/O) around each item, record the item with the message as its reason and go on; they never
catch a bare ``Exception``, so an out-of-memory error or a bug stops the job instead of being
recorded as a bad image.
"""

from __future__ import annotations

__all__ = [
    "MammokitError",
    "UsageError",
    "InputFileError",
    "MissingFileError",
    "ImageReadError",
    "ResourceError",
    "MissingDependencyError",
]


class MammokitError(Exception):
    """Base class of every user error: printed as one line, exit status 2, no traceback."""


class UsageError(MammokitError, ValueError):
    """A bad option, argument or combination of them (names the option and what is allowed)."""


class InputFileError(MammokitError, ValueError):
    """A file that cannot be used: unreadable, malformed, missing a column, inconsistent with
    another file (names the file, and the line or field where it helps)."""


class MissingFileError(MammokitError, FileNotFoundError):
    """A file or folder the job needs does not exist (names it, and the command that makes it)."""


class ImageReadError(InputFileError):
    """An image that cannot be read; the message names the file and the reason."""


class ResourceError(MammokitError, RuntimeError):
    """The machine cannot do the job as asked (e.g. out of GPU memory even at batch size 1, disk
    full); the message says what was tried and what to change."""


class MissingDependencyError(MammokitError, ImportError):
    """An optional package a feature needs is not installed (names the package and the extra)."""
