"""Logging and progress bars used by every long-running stage."""

from __future__ import annotations

import logging
import sys

from tqdm.auto import tqdm

_CONFIGURED = False


class OneLineFormatter(logging.Formatter):
    """Each log record is one line: control characters and Unicode line breaks in the message
    (a file name, or header text quoted in a message) are escaped, so text from a file can never
    start a forged log line. A traceback (``exc_info``) is still printed on the lines after."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging API
        from mammokit.utils.text import safe_text

        record.message = safe_text(record.message, escape_backslash=False)
        return super().formatMessage(record)


def get_logger(name: str) -> logging.Logger:
    """A module logger under the ``mammokit`` hierarchy."""
    return logging.getLogger(name if name.startswith("mammokit") else f"mammokit.{name}")


def setup_logging(verbose: int = 0, quiet: bool = False) -> None:
    """Configure the root ``mammokit`` logger once (the CLI calls this)."""
    global _CONFIGURED
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 0 else logging.INFO)
    logger = logging.getLogger("mammokit")
    logger.setLevel(level)
    if not _CONFIGURED:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(OneLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.propagate = False
        _CONFIGURED = True


def progress(iterable=None, total=None, desc: str | None = None, disable: bool | None = None, **kwargs):
    """A tqdm progress bar on stderr; disabled automatically when stderr is not a terminal
    unless ``MAMMOKIT_PROGRESS=1``."""
    import os

    if disable is None:
        disable = not (sys.stderr.isatty() or os.environ.get("MAMMOKIT_PROGRESS") == "1")
    return tqdm(iterable, total=total, desc=desc, disable=disable, dynamic_ncols=True, **kwargs)
