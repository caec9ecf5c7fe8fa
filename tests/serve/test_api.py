"""The HTTP API of a running ``mammokit serve``: auth, upload, results that agree with the DICOM
objects, bad input refused with reasons while the server keeps serving, late instances."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from PIL import Image

from mammokit.serve.results import read_seg_maps, read_sr_probabilities
from tests.serve.conftest import TOKEN, study_uid, upload, variant
from tests.serve.test_results import dciodvfy_errors


@pytest.fixture(scope="module")
def api_server(server):
    return server  # the session's server (uploads limited to 1 MB)


def test_auth(api_server):
    import httpx

    assert httpx.get(api_server.url + "/healthz").json()["status"] == "ok"
    assert httpx.get(api_server.url + "/api/studies").status_code == 401
    assert httpx.get(api_server.url + "/api/studies", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert httpx.get(api_server.url + "/api/studies", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    with api_server.client() as c:
        assert c.get("/api/studies").status_code == 200
        assert c.get("/static/../app.py").status_code == 404


def test_upload_predict_and_results_agree(tmp_path, api_server, studies):
    study = studies[1]
    uid = study_uid(study)
    with api_server.client() as c:
        r = upload(c, study.values())
        assert r.status_code == 200 and all(f["stored"] and f["usable"] for f in r.json()["files"])
        assert upload(c, study.values()).json()["files"][0]["stored"] is False  # idempotent
        s = api_server.wait_status(uid)
        assert s["views_used"] == ["L-CC", "R-CC", "L-MLO", "R-MLO"] and len(s["predictions"]) == 1
        p = s["probabilities"]
        sr_bytes = c.get(f"/api/studies/{uid}/sr").content
        (tmp_path / "sr.dcm").write_bytes(sr_bytes)
        assert dciodvfy_errors(tmp_path / "sr.dcm") == []
        back = read_sr_probabilities(tmp_path / "sr.dcm")
        for side, name in (("L", "left"), ("R", "right")):
            for kind in ("malignant", "benign"):
                assert back[side][kind] == pytest.approx(p[f"{name}_{kind}"], abs=1e-6)
        listed = {x["study_uid"]: x for x in c.get("/api/studies").json()["studies"]}
        assert listed[uid]["probabilities"] == p and listed[uid]["status"] == "done"
        for view, path in study.items():
            src = pydicom.dcmread(path)
            seg_path = tmp_path / f"seg_{view}.dcm"
            seg_path.write_bytes(c.get(f"/api/studies/{uid}/seg/{view}").content)
            assert dciodvfy_errors(seg_path) == []
            maps = read_seg_maps(seg_path)
            png = np.asarray(Image.open(io.BytesIO(c.get(f"/api/studies/{uid}/heatmaps/{view}.png").content)))
            assert png.shape == (src.Rows, src.Columns, 4)
            # the overlay's alpha is the malignant map (display orientation = stored here)
            np.testing.assert_allclose(png[..., 3] / 255, maps["malignant"], atol=1.5 / 255)
            img = Image.open(io.BytesIO(c.get(f"/api/studies/{uid}/images/{view}.png").content))
            assert img.size == (src.Columns, src.Rows)
            # window/level: a narrow window around the centre saturates more pixels
            narrow = np.asarray(Image.open(io.BytesIO(
                c.get(f"/api/studies/{uid}/images/{view}.png?wc=2048&ww=64").content)))
            assert (narrow == 255).sum() > (np.asarray(img) == 255).sum()


def test_bad_input_is_refused_with_reasons(tmp_path, api_server, studies):
    good = studies[2]["L-CC"]
    ct = variant(good, tmp_path / "ct.dcm", Modality="CT", StudyInstanceUID=pydicom.uid.generate_uid())
    nopix = variant(good, tmp_path / "nopix.dcm", PixelData=None, StudyInstanceUID=pydicom.dcmread(ct).StudyInstanceUID)
    corrupt = tmp_path / "corrupt.dcm"
    corrupt.write_bytes(good.read_bytes()[:300])
    text = tmp_path / "notes.txt"
    text.write_text("not dicom")
    big = tmp_path / "big.dcm"
    big.write_bytes(b"\0" * (1 << 20) + good.read_bytes())
    with api_server.client() as c:
        r = upload(c, [ct, nopix])
        assert r.status_code == 200
        reasons = {f["file"]: f["reason"] for f in r.json()["files"]}
        assert "not MG" in reasons["ct.dcm"] and "no pixel data" in reasons["nopix.dcm"]
        r = upload(c, [corrupt, text])
        assert r.status_code == 400
        errors = {f["file"]: f["error"] for f in r.json()["files"]}
        assert "corrupt" in errors["corrupt.dcm"] or "DICOM" in errors["corrupt.dcm"]
        assert "not a DICOM file" in errors["notes.txt"]
        assert upload(c, [big]).status_code == 413
        uid = str(pydicom.dcmread(ct).StudyInstanceUID)
        s = api_server.wait_status(uid, statuses=("failed",))
        assert "no usable image" in s["reason"] and "not MG" in s["reason"] and "no pixel data" in s["reason"]
        assert c.get("/healthz").status_code == 200
        assert c.get(f"/api/studies/{uid}/sr").status_code == 404
    assert "Traceback" not in api_server.log.read_text()


def test_late_instance_gives_a_new_sr_version(tmp_path, api_server, studies):
    study = studies[3]
    uid = study_uid(study)
    with api_server.client() as c:
        upload(c, study.values())
        first = api_server.wait_status(uid)
        sr1 = pydicom.dcmread(io.BytesIO(c.get(f"/api/studies/{uid}/sr").content))
        late = variant(study["L-CC"], tmp_path / "late.dcm", ContentDate="20300101", ContentTime="120000")
        upload(c, [late])
        second = api_server.wait_status(uid, version=2)
        assert second["version"] == 2 and len(second["predictions"]) == 2
        dup = [r for r in second["rejected"] if r["view"] == "L-CC"]
        assert len(dup) == 1 and "duplicate L-CC" in dup[0]["reason"]
        sr2 = pydicom.dcmread(io.BytesIO(c.get(f"/api/studies/{uid}/sr").content))
        pre = sr2.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
        assert pre.ReferencedSOPInstanceUID == sr1.SOPInstanceUID and sr2.InstanceNumber == 2
        assert first["version"] == 1
