"""Importers of public mammography data sets (``mammokit import FORMAT ROOT --out DIR``).

Framework: :mod:`.base` (records, the importer protocol, the registry), :mod:`.context` (the
parallel, resumable header reader and file checks), :mod:`.tables` (tolerant CSV / XLSX
readers), :mod:`.split`, :mod:`.write`, :mod:`.run` (:func:`run_import`), :mod:`.registry`.
Every other module of this package is a format: it defines an importer and calls
:func:`register`; :func:`load_formats` imports them all, so adding a format is adding a module.
"""

from __future__ import annotations

from mammokit.data.importers.base import FORMATS, REGISTRY, ImportFormatError, register
from mammokit.data.importers.registry import get_importer, load_formats

__all__ = ["FORMATS", "REGISTRY", "ImportFormatError", "get_importer", "register", "load_formats", "run_import"]


def run_import(*args, **kwargs):
    """See :func:`mammokit.data.importers.run.run_import`."""
    from mammokit.data.importers.run import run_import as _run_import

    return _run_import(*args, **kwargs)
