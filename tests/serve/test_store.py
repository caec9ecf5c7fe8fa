"""Job store and intake: idempotent instances, the study life cycle, recovery, rejection reasons."""

from __future__ import annotations

import shutil

import pydicom
import pytest
from pydicom.uid import generate_uid

from mammokit.serve.intake import choose_views, classify
from mammokit.serve.store import Store


def _variant(src, dst, **changes):
    ds = pydicom.dcmread(src)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    for k, v in changes.items():
        if v is None:
            delattr(ds, k)
        else:
            setattr(ds, k, v)
    ds.save_as(dst, enforce_file_format=True)
    return dst


def test_classify_reasons(tmp_path, studies):
    src = studies[0]["L-CC"]
    ok = classify(src)
    assert ok["usable"] and ok["view"] == "L-CC" and ok["reason"] is None
    cases = {
        "ct": ({"Modality": "CT"}, "not MG"),
        "proc": ({"PresentationIntentType": "FOR PROCESSING"}, "FOR PROCESSING"),
        "nopix": ({"PixelData": None}, "no pixel data"),
        "ml": ({"ViewPosition": "ML", "ViewCodeSequence": None}, "other view (ML)"),
        "nolat": ({"ImageLaterality": None, "Laterality": None}, "no ImageLaterality"),
    }
    for name, (changes, reason) in cases.items():
        info = classify(_variant(src, tmp_path / f"{name}.dcm", **changes))
        assert not info["usable"] and reason in info["reason"], (name, info["reason"])


def test_instances_are_idempotent_and_studies_reopen(tmp_path, studies):
    store = Store(tmp_path / "state")
    infos = [classify(p) for p in studies[0].values()]
    data = {i["sop_uid"]: open(p, "rb").read() for i, p in zip(infos, studies[0].values())}
    for info in infos:
        assert store.add_instance(data[info["sop_uid"]], info)
        assert not store.add_instance(data[info["sop_uid"]], info)  # same SOP again: ignored
    uid = infos[0]["study_uid"]
    assert len(store.instances(uid)) == 4 and store.study(uid)["status"] == "received"
    assert store.due_studies(3600, lambda u: True) == [uid]
    assert store.claim(4) == [uid] and store.study(uid)["status"] == "running"
    # a crash now: the restart puts it back in the queue
    assert Store(tmp_path / "state").recover() == {"requeued": 1}
    assert store.claim(4) == [uid]
    assert store.finish(uid, 1, {"x": 1}, [i["sop_uid"] for i in infos], 0.1, export=False)
    assert not store.finish(uid, 1, {"x": 1}, [], 0.1, export=False)  # committed once only
    assert store.study(uid)["status"] == "done" and len(store.predictions(uid)) == 1
    # an unusable late instance is recorded without re-opening; a usable one re-opens
    bad = _variant(studies[0]["L-CC"], tmp_path / "ct.dcm", Modality="CT")
    assert store.add_instance(bad.read_bytes(), classify(bad))
    assert store.study(uid)["status"] == "done"
    late = _variant(studies[0]["L-CC"], tmp_path / "late.dcm")
    assert store.add_instance(late.read_bytes(), classify(late))
    assert store.study(uid)["status"] == "received"
    chosen, dropped = choose_views(store.instances(uid))
    assert chosen["L-CC"].sop_uid == classify(late)["sop_uid"]  # newest arrival wins (same content time)
    assert [r.view for r, _ in dropped] == ["L-CC"] and "duplicate L-CC" in dropped[0][1]


def test_orphan_files_are_found(tmp_path, studies):
    store = Store(tmp_path / "state")
    info = classify(studies[1]["R-CC"])
    path = store.instance_path(info["study_uid"], info["sop_uid"])
    path.parent.mkdir(parents=True)
    shutil.copy(studies[1]["R-CC"], path)  # on disk, not committed (a crash between the two)
    assert store.orphans() == [path]
    assert store.add_instance(None, classify(path), path)
    assert store.orphans() == []


def test_bad_uid_is_not_a_path(tmp_path):
    store = Store(tmp_path / "state")
    with pytest.raises(ValueError):
        store.instance_path("../..", "x")
    assert store.instance_path("1.2/../3", "4").parent.parent == store.incoming
