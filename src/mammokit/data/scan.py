"""``mammokit scan``: a folder tree of DICOM files (or named PNGs) -> manifest + rejects.

Every file under ``root`` is classified without reading pixels:

* DICOM (``.dcm``/``.dicom`` or the ``DICM`` marker, so extension-less archives work): the header
  gives exam, patient_id = PatientID, view = ``<ImageLaterality>-<view>``. The exam id is chosen
  so that it joins the labels table one has (``exam_id``; :data:`EXAM_ID_RULES`):
  ``study`` (default) = StudyInstanceUID; ``accession`` = AccessionNumber (what RIS / screening
  registries key on); ``patient-date`` = ``<PatientID>_<StudyDate>`` (e.g. ``P1_20190312``; two
  studies of one patient on one day become one exam). A file without the field the rule needs
  is rejected with the reason.
  Rejected, with a reason, when: unreadable header; Modality other than MG; PresentationIntentType
  FOR PROCESSING (raw detector data); no pixel data; several frames; missing laterality; missing
  view; a view other than CC/MLO (ML, LM, XCCL...); a view modifier (spot compression,
  magnification...); a pixel module that cannot give one 2-D grayscale image (colour, wrong
  BitsAllocated, pixel data shorter than Rows x Columns, unknown transfer syntax, see
  :mod:`mammokit.data.dicom_checks`); no StudyInstanceUID; a StudyInstanceUID or SOPInstanceUID that is not a
  valid UID (digits and dots, at most 64 characters, no leading zeros); a duplicate
  SOPInstanceUID (a copy of an earlier file). Header text (PatientID, reasons quoting header
  values) is escaped by :func:`mammokit.utils.text.safe_text`, so no control character or line
  break from a header reaches the manifest, the rejects CSV or the log.
* PNG named ``<exam>_<L|R>_<CC|MLO>[_<k>].png`` (the reference's naming): one manifest row each;
  other PNG names (including exam ids holding control characters or line breaks) and files that
  are not PNGs are rejected.
* Anything else (CSV, XML, text, hidden files) is ignored and counted in the log.

A bad file never stops the scan. Output order is deterministic: manifest rows sorted by
(exam_id, view in VIEWS order, path), rejects by path.
"""

from __future__ import annotations

import functools
import os
import re
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from mammokit.config import VIEWS
from mammokit.data.images import PNG_SIGNATURE, ImageReadError, is_dicom_file
from mammokit.data.manifest import ManifestRow, write_manifest
from mammokit.errors import InputFileError, MissingFileError, UsageError
from mammokit.utils.io import write_csv_atomic
from mammokit.utils.log import get_logger, progress
from mammokit.utils.text import safe_text, uid_problem

log = get_logger(__name__)

PNG_NAME = re.compile(r"^(?P<exam>.+)_(?P<side>[LR])_(?P<view>CC|MLO)(?:_(?P<k>\d+))?$")
REJECT_COLUMNS = ("path", "reason")
EXAM_ID_RULES = ("study", "accession", "patient-date")


@dataclass(frozen=True)
class Reject:
    """A file left out of the manifest. ``code`` is a short category for summaries."""

    path: str
    code: str
    reason: str


@dataclass
class ScanResult:
    """What :func:`scan` found and wrote."""

    rows: list[ManifestRow]
    rejects: list[Reject]
    n_files: int
    n_ignored: int
    manifest_path: Path
    rejects_path: Path | None = None
    reject_counts: dict[str, int] = field(default_factory=dict)

    @property
    def n_exams(self) -> int:
        return len({row.exam_id for row in self.rows})


@dataclass(frozen=True)
class _Item:
    path: Path
    row: ManifestRow | None = None
    reject: Reject | None = None
    sop_uid: str | None = None
    ignored: bool = False


def _walk(root: Path, skip: set[Path]) -> Iterator[Path]:
    # Sorted walk, hidden files and folders skipped: the same tree always gives the same order.
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            if path.resolve() in skip:
                continue
            yield path


def exam_id_of(info, rule: str = "study") -> tuple[str | None, str]:
    """``(exam id, reason when None)`` of a DICOM header by one of :data:`EXAM_ID_RULES`."""
    if rule == "study":
        return info.study_uid, "missing StudyInstanceUID (the exam id)"
    if rule == "accession":
        return info.accession_number, "missing AccessionNumber (the exam id with --exam-id accession)"
    if rule == "patient-date":
        if not info.patient_id or not info.study_date:
            missing = " and ".join(n for n, v in (("PatientID", info.patient_id), ("StudyDate", info.study_date)) if not v)
            return None, f"missing {missing} (the exam id with --exam-id patient-date)"
        return f"{info.patient_id}_{info.study_date}", ""
    raise UsageError(f"unknown exam id rule {rule!r}; choose one of {', '.join(EXAM_ID_RULES)}")


def classify_dicom(path: Path, exam_id: str = "study") -> _Item:
    """Decide whether one DICOM file becomes a manifest row, from its header only (``exam_id``:
    one of :data:`EXAM_ID_RULES`)."""
    from mammokit.data.dicom import read_dicom_info

    def reject(code: str, reason: str) -> _Item:
        return _Item(path, reject=Reject(str(path), code, safe_text(reason, escape_backslash=False)))

    try:
        info = read_dicom_info(path)
    except ImageReadError as exc:
        return reject("unreadable", str(exc).removeprefix(f"{path}: "))
    if info.modality and info.modality.upper() != "MG":
        return reject("not_mg", f"modality {info.modality}, not MG")
    if info.presentation_intent and info.presentation_intent.upper() == "FOR PROCESSING":
        return reject("for_processing", "FOR PROCESSING image (raw detector data); use the FOR PRESENTATION image")
    if not info.has_pixel_data:
        return reject("no_pixels", "no pixel data")
    if info.frames > 1:
        return reject("multiframe", f"{info.frames} frames (tomosynthesis?); expected one 2-D image")
    if info.pixel_problem:
        # Checked from the header alone, so that every file in the manifest can be decoded.
        return reject("bad_pixels", info.pixel_problem)
    if info.laterality is None:
        return reject("no_laterality", "missing laterality (ImageLaterality / Laterality)")
    if info.view is None:
        return reject("no_view", "missing view (ViewPosition / ViewCodeSequence / PatientOrientation)")
    if info.view not in ("CC", "MLO"):
        return reject("other_view", f"view {info.view} is not CC or MLO")
    if info.view_modifiers:
        return reject("view_modifier", f"view modifier {', '.join(info.view_modifiers)} (not a standard screening view)")
    # UIDs become exam ids (CSV fields, JSON, file names) and duplicate keys: only well-formed
    # ones (digits and dots) are taken, so header bytes such as \x85 or "../" never travel on.
    for keyword, uid in (("StudyInstanceUID", info.study_uid), ("SOPInstanceUID", info.sop_instance_uid)):
        problem = uid_problem(uid) if uid is not None else None
        if problem:
            return reject("bad_uid", f"invalid {keyword} {safe_text(uid, max_len=80)!r}: {problem}")
    exam, why = exam_id_of(info, exam_id)
    if not exam:
        return reject({"study": "no_study", "accession": "no_accession", "patient-date": "no_patient_date"}[exam_id], why)
    if exam_id != "study":  # accession numbers and patient ids are free header text, not UIDs
        exam = safe_text(exam, escape_backslash=False)
    row = ManifestRow(exam_id=exam, view=info.view_name, path=path.resolve(), patient_id=info.patient_id)
    return _Item(path, row=row, sop_uid=info.sop_instance_uid)


def classify_png(path: Path) -> _Item:
    """A PNG named ``<exam>_<L|R>_<CC|MLO>[_<k>].png`` becomes a manifest row."""
    m = PNG_NAME.fullmatch(path.stem)
    if m is None:
        return _Item(path, reject=Reject(str(path), "png_name", "PNG name is not <exam>_<L|R>_<CC|MLO>[_<k>].png"))
    if safe_text(m.group("exam")) != m.group("exam"):
        return _Item(path, reject=Reject(
            str(path), "png_name", f"exam id {safe_text(m.group('exam'))!r} in the PNG name holds control characters, "
            "line breaks or backslashes"))
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as exc:
        return _Item(path, reject=Reject(str(path), "unreadable", f"cannot read file ({exc})"))
    if head != PNG_SIGNATURE:
        return _Item(path, reject=Reject(str(path), "unreadable", "not a PNG file (bad signature)"))
    row = ManifestRow(exam_id=m.group("exam"), view=f"{m.group('side')}-{m.group('view')}", path=path.resolve())
    return _Item(path, row=row)


def _classify(path: Path, exam_id: str = "study") -> _Item:
    try:
        if is_dicom_file(path):
            return classify_dicom(path, exam_id)
        if path.suffix.lower() == ".png":
            return classify_png(path)
        return _Item(path, ignored=True)
    except Exception as exc:  # noqa: BLE001 - one odd file must not stop a scan of thousands
        return _Item(path, reject=Reject(str(path), "unreadable", safe_text(f"{type(exc).__name__}: {exc}", escape_backslash=False)))


def scan(
    root: str | os.PathLike,
    manifest_out: str | os.PathLike,
    rejects_out: str | os.PathLike | None = None,
    workers: int = 1,
    strict: bool = False,
    exam_id: str = "study",
) -> ScanResult:
    """Scan ``root`` recursively and write a manifest CSV (and a ``path,reason`` rejects CSV).

    Args:
        root: folder of DICOM files (any extension or none) and/or named PNGs.
        manifest_out: manifest CSV to write (paths relative to its folder when under it).
        rejects_out: rejects CSV; default ``<manifest stem>.rejects.csv`` beside the manifest.
        workers: threads reading headers (helps on network storage); results do not depend on it.
        strict: make unreadable files (corrupt, truncated) fatal instead of rejected; files that
            are readable but unsuitable (other modality, view...) are still only rejected.
        exam_id: how DICOM exam ids are formed: ``study`` | ``accession`` | ``patient-date``
            (module docstring); PNG exam ids always come from the file name.

    Raises:
        FileNotFoundError / NotADirectoryError: ``root`` is not a folder.
        ValueError: nothing usable was found (the rejects CSV is still written).
    """
    if exam_id not in EXAM_ID_RULES:
        raise UsageError(f"unknown --exam-id {exam_id!r}; choose one of {', '.join(EXAM_ID_RULES)}")
    classify = functools.partial(_classify, exam_id=exam_id)
    root = Path(root)
    if not root.exists():
        raise MissingFileError(f"{root}: folder not found")
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: not a folder")
    manifest_out = Path(manifest_out)
    rejects_path = Path(rejects_out) if rejects_out is not None else manifest_out.with_name(
        f"{manifest_out.stem}.rejects.csv"
    )
    skip = {manifest_out.resolve(), rejects_path.resolve()}
    paths = list(_walk(root, skip))
    log.info("scanning %d files under %s", len(paths), root)

    bar = progress(total=len(paths), desc="scan", unit="file")
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            items = []
            for item in pool.map(classify, paths):  # map keeps input order
                items.append(item)
                bar.update(1)
    else:
        items = []
        for path in paths:
            items.append(classify(path))
            bar.update(1)
    bar.close()

    rows: list[ManifestRow] = []
    rejects: list[Reject] = []
    seen_sops: dict[str, Path] = {}
    n_ignored = 0
    for item in items:  # walk order, so "first copy wins" is deterministic
        if item.ignored:
            n_ignored += 1
        elif item.reject is not None:
            rejects.append(item.reject)
        elif item.sop_uid and item.sop_uid in seen_sops:
            rejects.append(
                Reject(str(item.path), "duplicate", f"same SOPInstanceUID as {seen_sops[item.sop_uid]}")
            )
        else:
            if item.sop_uid:
                seen_sops[item.sop_uid] = item.path
            rows.append(item.row)

    rows.sort(key=lambda r: (r.exam_id, VIEWS.index(r.view), str(r.path)))
    rejects.sort(key=lambda r: r.path)
    counts = dict(sorted(Counter(r.code for r in rejects).items()))

    write_csv_atomic(rejects_path, ({"path": r.path, "reason": r.reason} for r in rejects), REJECT_COLUMNS)
    if strict:
        bad = [r for r in rejects if r.code == "unreadable"]
        if bad:
            raise InputFileError(f"{bad[0].path}: {bad[0].reason} ({len(bad)} unreadable files; see {rejects_path})")
    result = ScanResult(rows, rejects, len(paths), n_ignored, manifest_out, rejects_path, counts)
    by_view = Counter(r.view for r in rows)
    log.info(
        "%d images in %d exams (%s); %d rejected%s; %d other files ignored",
        len(rows),
        result.n_exams,
        ", ".join(f"{v} {by_view.get(v, 0)}" for v in VIEWS),
        len(rejects),
        (" (" + ", ".join(f"{k} {n}" for k, n in counts.items()) + f"; see {rejects_path})") if rejects else "",
        n_ignored,
    )
    views_of: dict[str, set[str]] = {}
    for r in rows:
        views_of.setdefault(r.exam_id, set()).add(r.view)
    incomplete = sum(1 for v in views_of.values() if v != set(VIEWS))
    if incomplete:
        log.info("%d exams lack at least one of the four views", incomplete)
    if not rows:
        raise InputFileError(f"{root}: no usable mammograms found ({len(rejects)} rejected, see {rejects_path})")
    write_manifest(manifest_out, rows)
    return result
