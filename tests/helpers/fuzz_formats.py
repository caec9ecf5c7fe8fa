"""Fuzz case generators for tables, exam lists, checkpoints and configs (see tests/helpers/fuzz.py).

* manifest / labels CSV: random headers (missing, extra, duplicated, blank columns), cells from
  pools of valid and hostile values (NaN, unknown views, quotes, commas, embedded newlines,
  ``\\x85``, very long text), BOM, other encodings (latin-1, UTF-16, invalid UTF-8), ragged
  rows, then optional byte mutations. Accepted tables must round-trip through the writer.
* the reference's exam-list pickle: valid reference lists in every pickle protocol, mutated;
  random plain objects; globals that would run code; very deep nesting.
* ``exams.json`` and run ``config.json``: valid documents with random nodes replaced by values
  of other types, byte mutations, deep nesting.
* checkpoints: a small valid safetensors checkpoint with its JSON header edited (dtype, shape,
  offsets, metadata: format/version/kind/arch/model_args including huge widths, members), its
  length field changed, or its bytes mutated; the reference's ``.p``/``.pth`` torch.save files
  (zip and legacy formats) with mutated bytes or an edited inner pickle.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import pickle
import random
import struct
import zipfile
from pathlib import Path

from tests.helpers.fuzz import FuzzFailure, Reader, mutate_bytes

# ----------------------------------------------------------------------------- CSV tables

_HOSTILE = ("", "NaN", "nan", "null", " ", "\"", "a,b", "line\nbreak", "x\r\ny", "1.2\x853", "p\u2028q",
            "=cmd()", "é", "\x00", "../../x", "x" * 3000, "\ufeffbom")
_MANIFEST_VALUES = {
    "exam_id": ("e1", "e2", "1.2.840.5", " e1 ", ".hidden", "a/b") + _HOSTILE,
    "view": ("L-CC", "R-CC", "L-MLO", "R-MLO", "l_cc", "LCC", "L CC", "X-CC", "L-ML", "CC") + _HOSTILE,
    "path": ("a.png", "dir/b.dcm", "/abs/c.png", "~/d.png", "../e.png") + _HOSTILE,
    "patient_id": ("p1", "p2") + _HOSTILE,
    "horizontal_flip": ("YES", "NO", "yes", "maybe") + _HOSTILE,
    "split": ("train", "val", "test") + _HOSTILE,
}
_LABEL_VALUES = ("0", "1", "1.0", "0.0", "2", "-0", "1e0", "inf", "yes", " 1 ") + _HOSTILE


def _encode_table(rng: random.Random, header: list[str], rows: list[list[str]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator=rng.choice(("\n", "\r\n", "\r")),
                        quoting=rng.choice((csv.QUOTE_MINIMAL, csv.QUOTE_ALL)))
    writer.writerow(header)
    for row in rows:
        if rng.random() < 0.1:  # ragged row
            row = row[: rng.randrange(len(row) + 1)] if rng.random() < 0.5 else row + ["extra"]
        writer.writerow(row)
    text = buf.getvalue()
    if rng.random() < 0.05:
        text += "\n\n,,,\n"
    encoding = rng.choice(("utf-8", "utf-8", "utf-8", "utf-8-sig", "latin-1", "utf-16", "cp1252"))
    data = text.encode(encoding, errors="replace")
    if rng.random() < 0.2:
        data = mutate_bytes(rng, data)
    return data


def _columns(rng: random.Random, required: tuple[str, ...], optional: tuple[str, ...]) -> list[str]:
    header = list(required) + [c for c in optional if rng.random() < 0.5]
    roll = rng.random()
    if roll < 0.1 and header:
        header.pop(rng.randrange(len(header)))
    elif roll < 0.15:
        header.append(rng.choice(header))  # duplicate column
    elif roll < 0.25:
        header.append(rng.choice(("notes", "", "exam_id ", "EXAM_ID", "x" * 200)))
    rng.shuffle(header)
    return header


def generate_manifest(rng: random.Random) -> tuple[bytes, str]:
    from mammokit.data.manifest import MANIFEST_OPTIONAL, MANIFEST_REQUIRED

    header = _columns(rng, MANIFEST_REQUIRED, MANIFEST_OPTIONAL)
    hostile = rng.random() < 0.5
    rows = []
    for _ in range(rng.randint(0, 8)):
        row = []
        for column in header:
            pool = _MANIFEST_VALUES.get(column.strip(), _HOSTILE)
            row.append(rng.choice(pool if hostile else pool[:4]))
        rows.append(row)
    return _encode_table(rng, header, rows), f"manifest {len(rows)} rows, hostile={hostile}"


def read_manifest_case(path: Path) -> None:
    from mammokit.data.examlist import image_name_problem
    from mammokit.data.manifest import manifest_to_exams, read_manifest, write_manifest

    rows = read_manifest(path)
    exams = manifest_to_exams(rows, source=path)
    for exam in exams:
        for view in ("L-CC", "R-CC", "L-MLO", "R-MLO"):
            for name in exam[view]:
                if image_name_problem(name) or name.startswith("."):
                    raise FuzzFailure(f"unsafe image name {name!r} from exam id {exam['exam_id']!r}")
    again = path.with_name(path.stem + "-again.csv")
    write_manifest(again, rows)
    back = read_manifest(again)
    key = [(r.exam_id, r.view, Path(r.path).resolve(), r.patient_id, r.horizontal_flip, r.split) for r in rows]
    if key != [(r.exam_id, r.view, Path(r.path).resolve(), r.patient_id, r.horizontal_flip, r.split) for r in back]:
        raise FuzzFailure("manifest did not round-trip through write_manifest")


def generate_labels(rng: random.Random) -> tuple[bytes, str]:
    from mammokit.data.manifest import LABELS_REQUIRED

    header = _columns(rng, LABELS_REQUIRED, ("birads", "biopsied", "density", "split"))
    hostile = rng.random() < 0.5
    rows = []
    for i in range(rng.randint(0, 8)):
        row = []
        for column in header:
            if column.strip() == "exam_id":
                row.append(rng.choice(_HOSTILE + ("e1", "e1")) if hostile else f"e{i}")
            else:
                row.append(rng.choice(_LABEL_VALUES if hostile else _LABEL_VALUES[:2]))
        rows.append(row)
    return _encode_table(rng, header, rows), f"labels {len(rows)} rows, hostile={hostile}"


def read_labels_case(path: Path) -> None:
    from mammokit.data.manifest import read_labels, write_labels

    labels = read_labels(path)
    again = path.with_name(path.stem + "-again.csv")
    write_labels(again, labels)
    if read_labels(again) != labels:
        raise FuzzFailure("labels did not round-trip through write_labels")


# ----------------------------------------------------------------------------- exam lists


def _reference_exam(rng: random.Random, i: int) -> dict:
    exam: dict = {"horizontal_flip": rng.choice(("NO", "YES"))}
    geometry: dict = {k: {} for k in ("window_location", "rightmost_points", "bottommost_points",
                                      "distance_from_starting_side", "best_center")}
    for view in ("L-CC", "R-CC", "L-MLO", "R-MLO"):
        n = rng.choice((0, 1, 1, 2))
        exam[view] = [f"{i}_{view.replace('-', '_')}" + (f"_{k}" if k else "") for k in range(n)]
        geometry["window_location"][view] = [(0, 100, 0, 80)] * n
        geometry["rightmost_points"][view] = [((10, 20), 70)] * n
        geometry["bottommost_points"][view] = [(90, (5, 15))] * n
        geometry["distance_from_starting_side"][view] = [0] * n
        geometry["best_center"][view] = [(50, 40)] * n
    exam.update(geometry)
    return exam


def _random_plain(rng: random.Random, depth: int = 0):
    import numpy as np

    kind = rng.randrange(12 if depth < 4 else 7)
    leaves = (None, 1, -7, 2**70, 1.5, float("nan"), "L-CC", "../../etc/passwd", b"\x00\x85", True,
              np.int64(3), np.float32(2.5))
    if kind < 7:
        return rng.choice(leaves)
    items = [_random_plain(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if kind == 7:
        return items
    if kind == 8:
        return tuple(items)
    if kind == 9:
        return {str(x) if rng.random() < 0.7 else x: _random_plain(rng, depth + 1)
                for x in items if isinstance(x, (str, int, type(None)))}
    if kind == 10:
        exam = _reference_exam(rng, depth)
        key = rng.choice(sorted(exam))
        exam[key] = _random_plain(rng, depth + 1)
        return exam
    return {x for x in items if isinstance(x, (int, str))}


_MALICIOUS = (
    b"cos\nsystem\n(S'touch /tmp/mammokit-fuzz-pwned'\ntR.",
    b"\x80\x02cbuiltins\neval\nq\x00X\x06\x00\x00\x00print()q\x01\x85q\x02Rq\x03.",
    b"\x80\x04\x95\x15\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06getcwd\x94\x93\x94)R\x94.",
    b"csubprocess\nPopen\n(S'true'\ntR.",
)


def _deep_pickle(rng: random.Random) -> bytes:
    # [{"L-CC": [[[[...]]]]}] nested deeper than Python's recursion limit.
    n = rng.choice((2000, 100_000))
    key = b"X\x04\x00\x00\x00L-CC"
    return b"\x80\x02]}" + key + b"]" * n + b"a" * (n - 1) + b"sa."


def generate_exam_pickle(rng: random.Random) -> tuple[bytes, str]:
    kind = rng.randrange(10)
    exams = [_reference_exam(rng, i) for i in range(rng.randint(0, 3))]
    protocol = rng.randint(0, 5)
    if kind <= 2:
        return pickle.dumps(exams, protocol=protocol), f"valid, protocol {protocol}"
    if kind <= 5:
        return mutate_bytes(rng, pickle.dumps(exams, protocol=protocol)), f"mutated, protocol {protocol}"
    if kind <= 7:
        return pickle.dumps(_random_plain(rng), protocol=protocol), "random plain data"
    if kind == 8:
        return rng.choice(_MALICIOUS), "malicious global"
    return _deep_pickle(rng), "deep nesting"


def read_exam_pickle_case(path: Path) -> None:
    from mammokit.data.examlist import load_exams, load_reference_pickle, save_exams

    exams = load_reference_pickle(path)
    out = path.with_suffix(".json")
    save_exams(out, exams, preset="tiny", image_dir="cropped")
    back, _ = load_exams(out)
    if back != exams:
        raise FuzzFailure("exam list did not round-trip through exams.json")


def _mutate_json(rng: random.Random, doc):
    """Replace one random node of a JSON document by a value of another type."""
    replacements = (None, 0, -1, 1.5, 1e308, "x", "", [], {}, [1, 2], {"a": 1}, True, "../../x", "a\x85b")
    path = []
    node = doc
    while isinstance(node, (dict, list)) and node and rng.random() < 0.8:
        key = rng.choice(sorted(node)) if isinstance(node, dict) else rng.randrange(len(node))
        path.append(key)
        node = node[key]
    if not path:
        return rng.choice(replacements)
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = rng.choice(replacements)
    return doc


def _json_case(rng: random.Random, doc) -> tuple[bytes, str]:
    kind = rng.randrange(10)
    if kind == 0:
        return json.dumps(doc).encode(), "valid"
    if kind <= 5:
        for _ in range(rng.randint(1, 3)):
            doc = _mutate_json(rng, doc)
        return json.dumps(doc).encode(), "node replaced"
    if kind == 6:
        n = rng.choice((100, 5000, 200_000))
        return ("[" * n + "]" * n).encode(), f"nesting {n}"
    if kind == 7:
        return json.dumps(doc).encode("utf-16"), "UTF-16"
    return mutate_bytes(rng, json.dumps(doc).encode()), "bytes"


def generate_exams_json(rng: random.Random) -> tuple[bytes, str]:
    from mammokit.data.examlist import FORMAT, FORMAT_VERSION

    exams = []
    for i in range(rng.randint(0, 3)):
        exam = json.loads(json.dumps(_reference_exam(rng, i)))
        exam["exam_id"] = f"e{i}"
        exam["source_paths"] = {v: [f"/src/{n}.png" for n in exam[v]] for v in ("L-CC", "R-CC", "L-MLO", "R-MLO")}
        exams.append(exam)
    doc = {"format": FORMAT, "version": FORMAT_VERSION, "preset": "tiny", "image_dir": "cropped", "exams": exams}
    return _json_case(rng, doc)


def read_exams_json_case(path: Path) -> None:
    from mammokit.data.examlist import iter_images, load_exams, save_exams

    exams, meta = load_exams(path)
    list(iter_images(exams))
    out = path.with_name(path.stem + "-again.json")
    save_exams(out, exams, **{k: v for k, v in meta.items() if k not in ("format", "version")})
    if load_exams(out)[0] != exams:
        raise FuzzFailure("exams.json did not round-trip")


def generate_run_config(rng: random.Random) -> tuple[bytes, str]:
    from mammokit.training.config import PatchTrainConfig, TrainConfig

    if rng.random() < 0.5:
        doc = TrainConfig(workdir="w", labels="l.csv", out="o").to_dict()
    else:
        doc = PatchTrainConfig(workdir="w", masks_dir="m", labels="l.csv", out="o").to_dict()
    if rng.random() < 0.2:
        doc["unknown_field"] = 1
    return _json_case(rng, doc)


def read_run_config_case(path: Path) -> None:
    from mammokit.training.common import read_config_file
    from mammokit.training.config import PatchTrainConfig, TrainConfig

    patch = b"masks_dir" in path.read_bytes()  # which config the case was made from
    cls = PatchTrainConfig if patch else TrainConfig
    config = read_config_file(path, cls)
    if cls.from_dict(json.loads(json.dumps(config.to_dict()))) != config:
        raise FuzzFailure("config did not round-trip")


# ----------------------------------------------------------------------------- checkpoints


@functools.lru_cache(maxsize=1)
def checkpoint_seed() -> bytes:
    import tempfile

    import torch

    from mammokit.models import create_model
    from mammokit.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = create_model("patchnet_small", num_classes=3, width=4)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "seed.safetensors"
        save_checkpoint(path, model, arch="patchnet_small", model_args={"num_classes": 3, "width": 4},
                        preset="tiny", extra={"epoch": 1})
        return path.read_bytes()


_META_VALUES = {
    "format": ("mammokit.checkpoint", "other", ""),
    "version": ("1", "2", "x", "-1", "", "1" * 30),
    "kind": ("model", "ensemble", "bogus"),
    "arch": ("patchnet_small", "densenet121_patch", "view_wise", "nope", ""),
    "model_args": ('{"num_classes": 3, "width": 4}', "{}", "[]", "null", '{"width": 1000000}',
                   '{"width": -1}', '{"num_classes": 0, "width": 4}', '{"bogus": 1}', '{"width": "4"}', "not json",
                   '{"num_classes": 1000000000, "width": 4}', '{"width": 4.5}'),
    "preset": ('"tiny"', "null", "{", '{"name": 1}'),
    "extra": ("{}", "[", '{"epoch": "x"}'),
    "members": ('[{"arch": "patchnet_small", "model_args": {"num_classes": 3, "width": 4}}]', "[]", "{}", "[1]",
                '[{"arch": "nope"}]'),
}


def generate_checkpoint(rng: random.Random) -> tuple[bytes, str]:
    data = checkpoint_seed()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    kind = rng.randrange(10)
    if kind == 0:
        return data, "valid"
    if kind <= 5:
        notes = []
        for _ in range(rng.randint(1, 3)):
            if rng.random() < 0.5:
                key = rng.choice(sorted(_META_VALUES))
                header.setdefault("__metadata__", {})[key] = value = rng.choice(_META_VALUES[key])
                notes.append(f"{key}={value[:30]}")
            else:
                name = rng.choice(sorted(k for k in header if k != "__metadata__"))
                field = rng.choice(("dtype", "shape", "data_offsets", "drop"))
                if field == "drop":
                    del header[name]
                elif field == "dtype":
                    header[name]["dtype"] = rng.choice(("F16", "F64", "I64", "BOOL", "U8", "XX", "F8_E4M3"))
                elif field == "shape":
                    header[name]["shape"] = rng.choice(([], [0], [2**40], [-1], [3, 3], [1] * 9))
                else:
                    a, b = header[name]["data_offsets"]
                    header[name]["data_offsets"] = rng.choice(([b, a], [a, b + 4], [0, len(body) + 1], [a, a]))
                notes.append(f"{name}.{field}")
        text = json.dumps(header).encode()
        return struct.pack("<Q", len(text)) + text + body, "header: " + "; ".join(notes)
    if kind == 6:
        value = rng.choice((0, 1, n - 1, n + 1, len(data), 2**63, 2**64 - 1))
        return struct.pack("<Q", value) + data[8:], f"header length {value}"
    if kind == 7:
        return data[: rng.randrange(len(data))], "truncated"
    return mutate_bytes(rng, data), "bytes"


def read_checkpoint_case(path: Path) -> None:
    from mammokit.models.checkpoint import load_model

    load_model(path)


@functools.lru_cache(maxsize=1)
def reference_seeds() -> tuple[bytes, ...]:
    """torch.save files shaped like the authors': ``{"model": sd}`` of a (partial) breast-level
    model and a bare patch-model state dict, in the zip and the legacy format."""
    import torch

    g = torch.Generator().manual_seed(0)
    breast = {"model": {"four_view_resnet.cc.first_conv.weight": torch.randn(16, 1, 7, 7, generator=g),
                        "four_view_resnet.mlo.first_conv.weight": torch.randn(16, 1, 7, 7, generator=g),
                        "fc1_cc.weight": torch.randn(4, 4, generator=g)}}
    patch = {"features.conv0.weight": torch.randn(8, 3, 7, 7, generator=g),
             "classifier.weight": torch.randn(4, 8, generator=g), "classifier.bias": torch.zeros(4)}
    seeds = []
    for obj in (breast, patch):
        for zipped in (True, False):
            buf = io.BytesIO()
            torch.save(obj, buf, _use_new_zipfile_serialization=zipped)
            seeds.append(buf.getvalue())
    return tuple(seeds)


def _edit_inner_pickle(rng: random.Random, data: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        entries = {info.filename: z.read(info) for info in z.infolist()}
    name = next(k for k in entries if k.endswith("data.pkl"))
    entries[name] = rng.choice(_MALICIOUS) if rng.random() < 0.3 else mutate_bytes(rng, entries[name])
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for filename, content in entries.items():
            z.writestr(filename, content)
    return out.getvalue()


def generate_reference_weights(rng: random.Random) -> tuple[bytes, str]:
    seeds = reference_seeds()
    i = rng.randrange(len(seeds))
    seed = seeds[i]
    kind = rng.randrange(6)
    if kind == 0:
        return seed, f"valid seed {i}"
    if kind <= 2 and seed[:2] == b"PK":
        return _edit_inner_pickle(rng, seed), f"inner pickle of seed {i}"
    if kind == 3:
        return seed[: rng.randrange(len(seed))], f"truncated seed {i}"
    return mutate_bytes(rng, seed), f"bytes of seed {i}"


def read_reference_weights_case(path: Path) -> None:
    from mammokit.models.convert import reference_model

    reference_model(path)


def readers() -> list[Reader]:
    return [
        Reader("manifest", ".csv", generate_manifest, read_manifest_case),
        Reader("labels", ".csv", generate_labels, read_labels_case),
        Reader("exam-pickle", ".pkl", generate_exam_pickle, read_exam_pickle_case),
        Reader("exams-json", ".json", generate_exams_json, read_exams_json_case),
        Reader("run-config", ".json", generate_run_config, read_run_config_case),
        Reader("checkpoint", ".safetensors", generate_checkpoint, read_checkpoint_case),
        Reader("reference-weights", ".pth", generate_reference_weights, read_reference_weights_case, can_accept=False),
    ]
