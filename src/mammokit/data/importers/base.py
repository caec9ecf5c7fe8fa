"""What every importer returns, the importer protocol and the format registry.

An importer turns a public data set's folder, exactly as downloaded, into
:class:`ImportRecords`: images (one per kept DICOM), exam-level labels, lesion masks (files or
polygons), lesion boxes and rejects. It never writes anything: :func:`mammokit.data.importers.run.run_import`
splits, rasterises, writes and reports, the same way for every format.

Importers register themselves with :func:`register` under their command-line name
(``cbis-ddsm``, ``inbreast``...); :data:`REGISTRY` maps that name to the importer
(:func:`mammokit.data.importers.registry.get_importer` loads the format modules first).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from mammokit.config import LABEL_COLUMNS
from mammokit.data.scan import Reject
from mammokit.errors import UsageError
from mammokit.views import View

if TYPE_CHECKING:  # pragma: no cover
    from mammokit.data.importers.context import ImportContext

__all__ = [
    "FORMATS", "ImageRecord", "Box", "MaskSource", "ImportRecords", "Importer", "ImportFormatError",
    "REGISTRY", "register", "Reject", "empty_labels", "reject",
]

FORMATS: tuple[str, ...] = ("cbis-ddsm", "vindr-mammo", "rsna", "inbreast", "cmmd", "embed")
"""Every format name the ``import`` command accepts (an importer module registers each)."""

LESION_CLASSES: tuple[str, ...] = ("malignant", "benign")


class ImportFormatError(UsageError):
    """A FORMAT that is not one of :data:`FORMATS`, or a ROOT that does not have that format's
    layout. The ``import`` command prints it as one line and exits with status 1."""

    exit_code = 1


@dataclass
class ImageRecord:
    """One image kept for the manifest.

    Attributes:
        exam_id: exam identifier (labels.csv joins on it).
        view: ``L-CC``, ``R-CC``, ``L-MLO`` or ``R-MLO``.
        path: absolute path of the DICOM file.
        patient_id: patient identifier (splits are patient-disjoint); the exam id when the set
            has none.
        split: the set's official split (``train`` / ``test``) or None.
        extra: further manifest columns the set provides (density, age, manufacturer...).
        rows, columns: image size from the header (masks must have it), or None.
        mirrored: the header says the file is stored mirrored, so :func:`read_dicom_pixels` flips
            it; polygons and boxes given in stored pixels are flipped with it.
    """

    exam_id: str
    view: str
    path: str
    patient_id: str
    split: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    rows: int | None = None
    columns: int | None = None
    mirrored: bool = False

    def __post_init__(self) -> None:
        View.parse(self.view)  # the four standard views only


@dataclass
class Box:
    """A lesion box in original (stored) pixel coordinates, inclusive-exclusive not implied:
    the set's numbers, clipped to the image by the writer."""

    exam_id: str
    view: str
    label: str
    x0: float
    y0: float
    x1: float
    y1: float


@dataclass
class MaskSource:
    """One lesion outline: ``path`` of a mask file (DICOM or PNG, nonzero = lesion, at the image's
    full size) or ``polygon``, a list of ``(x, y)`` points in stored pixels (x = column).
    ``where`` names the source (file / row) for reject reasons."""

    exam_id: str
    view: str
    label: str
    path: str | None = None
    polygon: list[tuple[float, float]] | None = None
    where: str = ""

    def __post_init__(self) -> None:
        if self.label not in LESION_CLASSES:
            raise ValueError(f"mask label must be malignant or benign, got {self.label!r}")
        if (self.path is None) == (self.polygon is None):
            raise ValueError("a MaskSource has either a path or a polygon")


@dataclass
class ImportRecords:
    """What an importer found. ``labels``: exam_id -> columns (``left_benign``... 0/1,
    ``birads`` 0/1/2 or None, then the set's other labels)."""

    images: list[ImageRecord] = field(default_factory=list)
    labels: dict[str, dict] = field(default_factory=dict)
    masks: list[MaskSource] = field(default_factory=list)
    boxes: list[Box] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def empty_labels() -> dict:
    """The four label columns at 0 (a breast is negative until a finding says otherwise)."""
    return {column: 0 for column in LABEL_COLUMNS}


def reject(where: object, code: str, reason: str) -> Reject:
    """A :class:`Reject` for a file or a table row (``where`` e.g. ``"file.csv line 12"``)."""
    return Reject(str(where), code, reason)


@runtime_checkable
class Importer(Protocol):
    """A data set format. ``name`` is the FORMAT of ``mammokit import``."""

    name: str
    label_rule: str

    def detect(self, root: Path) -> None:
        """Raise :class:`ImportFormatError` ``"ROOT does not look like a <FORMAT> download:
        expected <what>"`` unless ``root`` has this format's layout. Cheap: no file is parsed."""

    def collect(self, root: Path, ctx: ImportContext) -> ImportRecords:
        """Read the tables and headers (through ``ctx``) and return the records; a malformed row
        or file is a reject, never an exception."""


REGISTRY: dict[str, Importer] = {}
"""Format name -> importer, filled by :func:`register` as the format modules are imported."""


def register(importer: Importer) -> Importer:
    """Add ``importer`` to :data:`REGISTRY` under ``importer.name`` (one of :data:`FORMATS`)."""
    if importer.name not in FORMATS:
        raise ValueError(f"unknown import format {importer.name!r}; add it to FORMATS")
    REGISTRY[importer.name] = importer
    return importer


def not_layout(root: Path, name: str, expected: str) -> ImportFormatError:
    """The one-line error of :meth:`Importer.detect`."""
    return ImportFormatError(f"{root} does not look like a {name} download: expected {expected}")
