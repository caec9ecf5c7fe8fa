"""Text from untrusted files (DICOM headers, file names) made safe for CSV, JSON, logs and paths.

A DICOM header is written by whatever device or anonymiser produced it; its strings can hold
control characters, Unicode line breaks (``\\x85``, ``\\u2028``: Python's ``str.splitlines``
splits on them), path separators or ``..``. Three helpers keep such text from breaking the files
mammokit writes:

* :func:`uid_problem` checks a DICOM UID (PS3.5 section 9.1: components of digits separated by
  dots, no leading zero in a component other than ``"0"`` itself, at most 64 characters).
* :func:`safe_text` escapes every character that could end a line or is invisible (controls,
  Unicode line/paragraph separators, format characters) as ``\\xNN`` / ``\\uNNNN``; ordinary
  text, including non-ASCII letters, is kept. Backslashes are doubled so the escaping is
  reversible and two different values never become the same text.
* :func:`safe_filename` maps any text to one file-name component: only ``[A-Za-z0-9._-]``, never
  empty, never starting with a dot (so never ``.`` or ``..`` or hidden), at most ``max_len``
  characters (longer text is cut and given a hash suffix, so distinct long ids stay distinct).
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["uid_problem", "is_valid_uid", "safe_text", "safe_filename"]

UID_MAX_LENGTH = 64
_UID_COMPONENT = re.compile(r"0|[1-9][0-9]*")
_FILENAME_BAD = re.compile(r"[^A-Za-z0-9._-]")



def uid_problem(uid: str) -> str | None:
    """Why ``uid`` is not a valid DICOM UID, or None when it is.

    >>> uid_problem("1.2.840.10008.1.2.1") is None
    True
    >>> uid_problem("1.02.3")
    "component '02' has a leading zero"
    """
    if not uid:
        return "empty UID"
    if len(uid) > UID_MAX_LENGTH:
        return f"UID is {len(uid)} characters long (at most {UID_MAX_LENGTH})"
    for position, ch in enumerate(uid):
        if ch not in "0123456789.":
            return f"UID holds {safe_text(ch)!r} at position {position}; only digits 0-9 and dots are allowed"
    for component in uid.split("."):
        if component == "":
            return "UID has an empty component (two dots in a row, or a dot at an end)"
        if not _UID_COMPONENT.fullmatch(component):
            return f"component {component!r} has a leading zero"
    return None


def is_valid_uid(uid: str) -> bool:
    """True when ``uid`` is a valid DICOM UID (see :func:`uid_problem`)."""
    return uid_problem(uid) is None


def _escape_char(ch: str) -> str:
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def safe_text(text: object, max_len: int | None = None, escape_backslash: bool = True) -> str:
    """``text`` as one printable line: controls, line separators and invisible characters are
    written as ``\\xNN``/``\\uNNNN`` escapes, backslashes doubled (unless ``escape_backslash``
    is False: log lines, where Windows paths stay readable); other characters are kept.
    ``max_len`` (optional) cuts the result, marking the cut with ``...``.

    >>> safe_text("1.2\\x853")
    '1.2\\\\x853'
    """
    text = str(text)
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\" if escape_backslash else ch)
        else:
            # str.isprintable is False exactly for the characters that do not belong in one line
            # of text: controls (Cc, which include \x85), format characters (Cf: zero-width and
            # bidi overrides that reorder what a reader sees), line and paragraph separators
            # (Zl, Zp), spaces other than " " (Zs), surrogates (Cs), private use and unassigned.
            out.append(ch if ch.isprintable() else _escape_char(ch))
    result = "".join(out)
    if max_len is not None and len(result) > max_len:
        result = result[: max(0, max_len - 3)] + "..."
    return result


def safe_filename(text: object, max_len: int = 120) -> str:
    """One safe file-name component derived from ``text`` (see the module docstring).

    Characters outside ``[A-Za-z0-9._-]`` become ``_``; leading dots become ``_`` (no ``.``,
    ``..`` or hidden names); an empty result is ``_``. Text longer than ``max_len`` is cut and
    ends with ``-`` and 12 hex digits of its SHA-256, so different long inputs stay different.
    """
    if max_len < 16:
        raise ValueError(f"max_len must be >= 16, got {max_len}")
    raw = str(text)
    name = _FILENAME_BAD.sub("_", raw)
    stripped = name.lstrip(".")
    name = "_" * (len(name) - len(stripped)) + stripped
    if not name:
        name = "_"
    if len(name) > max_len:
        digest = hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        name = name[: max_len - 13] + "-" + digest
    return name
