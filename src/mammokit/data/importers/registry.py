"""Finding a format's importer: every non-framework module of the package is a format."""

from __future__ import annotations

import importlib
import pkgutil

from mammokit.data.importers.base import FORMATS, REGISTRY, ImportFormatError, Importer

FRAMEWORK = frozenset({"base", "context", "registry", "split", "write", "run", "tables"})


def load_formats() -> None:
    """Import every format module of this package (each registers its importer on import)."""
    package = __name__.rpartition(".")[0]
    path = importlib.import_module(package).__path__
    for info in pkgutil.iter_modules(path):
        if info.name not in FRAMEWORK and not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")


def get_importer(name: str) -> Importer:
    """The importer of FORMAT ``name``; raises :class:`ImportFormatError` naming the choices."""
    if name not in FORMATS:
        raise ImportFormatError(f"unknown format {name!r}; expected one of {', '.join(FORMATS)}")
    load_formats()
    if name not in REGISTRY:
        raise ImportFormatError(f"format {name!r} is not implemented in this version of mammokit")
    return REGISTRY[name]
