"""The exam list: the pipeline's state, one record per exam (``WORKDIR/exams.json``).

Each exam is a plain dict with the reference implementation's keys and meanings, so it converts
losslessly to and from the authors' pickled exam lists::

    {"exam_id": "0", "patient_id": "p0", "split": "test", "horizontal_flip": "NO",
     "L-CC": ["0_L_CC"], "R-CC": ["0_R_CC"], "L-MLO": ["0_L_MLO"], "R-MLO": ["0_R_MLO"],
     # after preprocessing, per view a list aligned with the image names:
     "window_location": {"L-CC": [[top, bottom, left, right]], ...},
     "rightmost_points": {"L-CC": [[[y_start, y_end], x]], ...},
     "bottommost_points": {"L-CC": [[y, [x_start, x_end]]], ...},
     "distance_from_starting_side": {"L-CC": [0], ...},
     "best_center": {"L-CC": [[y, x]], ...},
     # after heatmaps: paths relative to the work folder, aligned with the image names
     "heatmap_malignant": {"L-CC": ["heatmaps/malignant/0_L_CC.png"]}, "heatmap_benign": {...},
     # mammokit extras
     "source_paths": {"L-CC": ["/archive/....dcm"]},
     "source_shape": {"L-CC": [[H, W]]}}     # the original image's size (preprocessing)

Image names are file stems under the work folder's image folder (``cropped/<name>.png``).
``window_location`` is in original-image coordinates; ``rightmost_points``, ``bottommost_points``
and ``best_center`` are in the flipped (chest wall on the left) frame of the cropped image.
JSON has no tuples: they are stored as lists and turned back into tuples on export to pickle.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mammokit.config import VIEWS
from mammokit.errors import InputFileError, MissingFileError
from mammokit.utils.io import write_bytes_atomic, write_json_atomic
from mammokit.utils.text import safe_text

FORMAT = "mammokit.exams"
FORMAT_VERSION = 1

GEOMETRY_FIELDS = (
    "window_location",
    "rightmost_points",
    "bottommost_points",
    "distance_from_starting_side",
    "best_center",
)
HEATMAP_FIELDS = ("heatmap_malignant", "heatmap_benign")
SOURCE_SHAPE_FIELD = "source_shape"
"""Per image, ``[H, W]`` of the original (uncropped) image, recorded by preprocessing: with
``window_location`` it maps original-image coordinates (lesion masks, boxes) into the crop."""
MASK_FIELDS = ("mask_malignant", "mask_benign")
"""Per image, the lesion mask path the manifest gave (or None)."""
PER_IMAGE_FIELDS = GEOMETRY_FIELDS + HEATMAP_FIELDS + ("source_paths", SOURCE_SHAPE_FIELD) + MASK_FIELDS
REFERENCE_EXAM_KEYS = ("horizontal_flip",) + VIEWS + GEOMETRY_FIELDS


class ExamListError(InputFileError):
    """A malformed exam list (names the file and the problem)."""


# ----------------------------------------------------------------------------- JSON (native)


def load_exams(path: str | Path) -> tuple[list[dict], dict]:
    """Read ``exams.json``. Returns ``(exams, meta)``; ``meta`` holds every top-level key other
    than ``exams`` (format, version, preset, image_dir, ...)."""
    import json

    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MissingFileError(f"{path}: no exam list here (run `mammokit preprocess` first)") from None
    except json.JSONDecodeError as exc:
        raise ExamListError(f"{path}: not valid JSON ({exc})") from None
    except UnicodeDecodeError as exc:
        raise ExamListError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except RecursionError:
        raise ExamListError(f"{path}: JSON nested too deeply to be an exam list") from None
    except IsADirectoryError:
        raise ExamListError(f"{path}: is a folder, not an exam list") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("exams"), list):
        raise ExamListError(f"{path}: not a mammokit exam list (expected format {FORMAT!r})")
    version = doc.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ExamListError(f"{path}: exam list version {str(version)[:20]!r} is not an integer")
    if version > FORMAT_VERSION:
        raise ExamListError(f"{path}: exam list version {doc['version']} is newer than this mammokit")
    exams = doc.pop("exams")
    for i, exam in enumerate(exams):
        validate_exam(exam, where=f"{path}: exam #{i}")
    return exams, doc


def save_exams(path: str | Path, exams: list[dict], **meta: Any) -> None:
    """Write ``exams.json`` atomically; ``meta`` keys (preset, image_dir, ...) go at top level."""
    doc = {"format": FORMAT, "version": FORMAT_VERSION, **meta, "exams": [_jsonable(e) for e in exams]}
    write_json_atomic(path, doc)


def validate_exam(exam: dict, where: str = "exam") -> None:
    """Check an exam record's structure: view lists, and per-image fields aligned with them."""
    if not isinstance(exam, dict):
        raise ExamListError(f"{where}: expected a dict, got {type(exam).__name__}")
    flip = exam.get("horizontal_flip", "NO")
    if flip not in ("YES", "NO"):
        raise ExamListError(f"{where}: horizontal_flip must be 'YES' or 'NO', got {flip!r}")
    for view in VIEWS:
        names = exam.get(view, [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ExamListError(f"{where}: {view} must be a list of image names")
        for name in names:
            problem = image_name_problem(name)
            if problem:
                raise ExamListError(f"{where}: {view} image name {name[:80]!r} {problem}")
    for field in PER_IMAGE_FIELDS:
        if field not in exam:
            continue
        per_view = exam[field]
        if not isinstance(per_view, dict):
            raise ExamListError(f"{where}: {field} must map views to lists")
        for view, values in per_view.items():
            if view not in VIEWS:
                raise ExamListError(f"{where}: {field} has unknown view {view!r}")
            if not isinstance(values, list) or len(values) != len(exam.get(view, [])):
                raise ExamListError(
                    f"{where}: {field}[{view}] has {len(values) if isinstance(values, list) else '?'} "
                    f"entries for {len(exam.get(view, []))} images"
                )
            check = _VALUE_CHECKS[field]
            for k, value in enumerate(values):
                if value is not None and not check(value):
                    raise ExamListError(f"{where}: {field}[{view}][{k}] = {str(value)[:80]!r} is not {_VALUE_SHAPES[field]}")


def image_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be an image name (a relative file stem under the work folder: it
    names output files such as ``heatmaps/<kind>/<name>.png``), or None."""
    from pathlib import PurePosixPath

    if not name:
        return "is empty"
    if name.startswith("/") or "\\" in name or ".." in PurePosixPath(name).parts:
        return "is not a safe relative file name (absolute, backslash or '..')"
    if not name.isprintable():
        return "holds control characters or line breaks"
    return None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_pair(v: Any) -> bool:
    return isinstance(v, list) and len(v) == 2 and all(_is_int(x) for x in v)


_VALUE_CHECKS = {
    "window_location": lambda v: isinstance(v, list) and len(v) == 4 and all(_is_int(x) for x in v),
    "rightmost_points": lambda v: isinstance(v, list) and len(v) == 2 and _is_pair(v[0]) and _is_int(v[1]),
    "bottommost_points": lambda v: isinstance(v, list) and len(v) == 2 and _is_int(v[0]) and _is_pair(v[1]),
    "distance_from_starting_side": _is_int,
    "best_center": _is_pair,
    "heatmap_malignant": lambda v: isinstance(v, str) and bool(v),
    "heatmap_benign": lambda v: isinstance(v, str) and bool(v),
    "source_paths": lambda v: isinstance(v, str) and bool(v),
    SOURCE_SHAPE_FIELD: _is_pair,
    **{field: (lambda v: isinstance(v, str) and bool(v)) for field in MASK_FIELDS},
}
_VALUE_SHAPES = {
    "window_location": "[top, bottom, left, right] (ints)",
    "rightmost_points": "[[y_start, y_end], x] (ints)",
    "bottommost_points": "[y, [x_start, x_end]] (ints)",
    "distance_from_starting_side": "an int",
    "best_center": "[y, x] (ints)",
    "heatmap_malignant": "a path",
    "heatmap_benign": "a path",
    "source_paths": "a path",
    SOURCE_SHAPE_FIELD: "[height, width] (ints)",
    **{field: "a path" for field in MASK_FIELDS},
}


def iter_images(exams: Iterable[dict]):
    """Yield ``(exam, view, index, name)`` for every image of every exam, in order."""
    for exam in exams:
        for view in VIEWS:
            for index, name in enumerate(exam.get(view, [])):
                yield exam, view, index, name


def image_field(exam: dict, field: str, view: str, index: int = 0) -> Any:
    """One image's per-image value, e.g. ``image_field(exam, "best_center", "L-CC")``."""
    try:
        return exam[field][view][index]
    except (KeyError, IndexError):
        raise InputFileError(f"exam {exam.get('exam_id', '?')}: no {field} for {view}[{index}]") from None


def set_image_field(exam: dict, field: str, view: str, index: int, value: Any) -> None:
    """Set one image's per-image value, creating aligned lists (``None``-filled) as needed."""
    per_view = exam.setdefault(field, {})
    values = per_view.setdefault(view, [None] * len(exam.get(view, [])))
    while len(values) < len(exam.get(view, [])):
        values.append(None)
    values[index] = value


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):  # numpy scalar
        return obj.item()
    return obj


# ----------------------------------------------------------------------- reference pickles

# Only plain data may come out of a reference exam list. Real files hold numpy scalars (ints from
# numpy arithmetic), which pickle as numpy.core.multiarray.scalar(dtype, bytes); nothing else is
# admitted, so a crafted pickle cannot call arbitrary code.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "dtype"),
    # Protocol-2 pickles written by Python 3 store bytes (a numpy scalar's payload) as
    # _codecs.encode(str, "latin1"): a pure string-to-bytes conversion, no code execution.
    ("_codecs", "encode"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("collections", "OrderedDict"),
}


class _PlainDataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: D401 - pickle API
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: exam lists hold plain data only")


def load_reference_pickle(path: str | Path) -> list[dict]:
    """Read the authors' pickled exam list safely and return mammokit exam records.

    Each record gets an ``exam_id`` (its position, as a string, unless one is present) and
    JSON-compatible values (tuples -> lists, numpy scalars -> Python numbers).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise MissingFileError(f"{path}: exam list not found") from None
    try:
        obj = _PlainDataUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as exc:
        if str(exc).startswith("refusing to load"):
            raise ExamListError(f"{path}: {safe_text(exc, max_len=200)}") from None
        raise ExamListError(f"{path}: not a readable pickle ({safe_text(' '.join(str(exc).split()), max_len=200)})") from None
    except Exception as exc:  # noqa: BLE001 - truncated or not a pickle at all: many error types
        text = safe_text(" ".join(str(exc).split()), max_len=200)
        raise ExamListError(f"{path}: not a readable pickle ({type(exc).__name__}: {text})") from None
    if not isinstance(obj, list) or not all(isinstance(e, dict) for e in obj):
        raise ExamListError(f"{path}: expected a list of exam dicts, got {type(obj).__name__}")
    import json

    exams = []
    for i, raw in enumerate(obj):
        try:
            exam = _jsonable(raw)
            json.dumps(exam, allow_nan=False)  # what save_exams will write: plain JSON data only
        except RecursionError:
            raise ExamListError(f"{path}: exam #{i} is nested too deeply to be an exam record") from None
        except (TypeError, ValueError) as exc:
            raise ExamListError(f"{path}: exam #{i} holds values that are not plain data ({safe_text(exc, max_len=200)})") from None
        exam.setdefault("exam_id", str(i))
        exam["exam_id"] = str(exam["exam_id"])
        exam.setdefault("horizontal_flip", "NO")
        for view in VIEWS:
            exam.setdefault(view, [])
        validate_exam(exam, where=f"{path}: exam #{i}")
        exams.append(exam)
    return exams


def _tuplify(field: str, value: Any) -> Any:
    if value is None:
        return None
    if field == "window_location" or field == "best_center":
        return tuple(int(v) for v in value)
    if field == "rightmost_points":
        (y0, y1), x = value
        return ((int(y0), int(y1)), int(x))
    if field == "bottommost_points":
        y, (x0, x1) = value
        return (int(y), (int(x0), int(x1)))
    if field == "distance_from_starting_side":
        return int(value)
    return value


def to_reference_exams(exams: Iterable[dict]) -> list[dict]:
    """Convert mammokit exam records to the reference's dicts (tuples, only its keys)."""
    out = []
    for exam in exams:
        ref: dict[str, Any] = {"horizontal_flip": exam.get("horizontal_flip", "NO")}
        for view in VIEWS:
            ref[view] = list(exam.get(view, []))
        for field in GEOMETRY_FIELDS:
            if field in exam:
                ref[field] = {v: [_tuplify(field, x) for x in vals] for v, vals in exam[field].items()}
        out.append(ref)
    return out


def save_reference_pickle(path: str | Path, exams: Iterable[dict]) -> None:
    """Write an exam list the reference implementation can read (pickle protocol 2)."""
    write_bytes_atomic(path, pickle.dumps(to_reference_exams(exams), protocol=2))


# ------------------------------------------------------------------ work-folder import / export


def import_reference_exam_list(
    pickle_path: str | Path, image_dir: str | Path, workdir: str | Path, preset: str = "paper"
) -> Path:
    """Reference exam list (``.pkl``) -> ``WORKDIR/exams.json`` whose ``image_dir`` is
    ``image_dir`` (stored relative to the work folder when inside it, else absolute).

    Images named in the list but absent from ``image_dir`` are logged (not fatal: a later stage
    reports them per exam). Returns the path of the written ``exams.json``.
    """
    import os

    from mammokit.config import get_preset
    from mammokit.utils.log import get_logger

    log = get_logger(__name__)
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise MissingFileError(f"{image_dir}: image folder not found")
    exams = load_reference_pickle(pickle_path)
    preset_obj = get_preset(preset)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        shown = Path(os.path.relpath(image_dir.resolve(), workdir.resolve()))
        shown_str = shown.as_posix() if not shown.as_posix().startswith("..") else str(image_dir.resolve())
    except ValueError:  # different drives (Windows)
        shown_str = str(image_dir.resolve())
    missing = [name for _, _, _, name in iter_images(exams) if not (image_dir / f"{name}.png").exists()]
    if missing:
        log.warning(
            "%d of the exam list's images are not in %s (first: %s.png)", len(missing), image_dir, missing[0]
        )
    out = workdir / "exams.json"
    save_exams(
        out,
        exams,
        preset=preset_obj.name,
        preset_config=preset_obj.to_dict(),
        image_dir=shown_str,
        source=str(Path(pickle_path).resolve()),
    )
    log.info("imported %d exams from %s -> %s", len(exams), pickle_path, out)
    return out


def export_reference_exam_list(workdir: str | Path, pickle_path: str | Path) -> int:
    """``WORKDIR/exams.json`` -> the reference's pickled exam list. Returns the number of exams."""
    exams, _ = load_exams(Path(workdir) / "exams.json")
    save_reference_pickle(pickle_path, exams)
    return len(exams)
