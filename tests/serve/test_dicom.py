"""The DICOM side with real peers: a real Orthanc as the PACS (its own C-STORE sends the study to
mammokit, mammokit's SR and SEGs come back into it), pynetdicom peers for echo, the AE
allow-list, compressed transfer syntaxes, idempotent re-sends and export refusals."""

from __future__ import annotations

import io
import time

import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless, RLELossless

from mammokit.serve.dicom_node import send_files
from mammokit.serve.results import read_sr_probabilities
from tests.serve.conftest import c_store, free_port, need, study_uid


@pytest.fixture(scope="module")
def setup(pacs):
    server, orthanc = pacs
    return server, orthanc


def test_echo_and_allow_list(setup):
    from pynetdicom import AE

    server, _ = setup
    for calling, ok in (("TESTSCU", True), ("INTRUDER", False)):
        ae = AE(ae_title=calling)
        ae.add_requested_context("1.2.840.10008.1.1")
        assoc = ae.associate("127.0.0.1", server.dicom_port, ae_title="MAMMOKIT")
        assert assoc.is_established == ok, calling
        if ok:
            assert assoc.send_c_echo().Status == 0
            assoc.release()
        else:
            assert assoc.is_rejected


def test_orthanc_sends_the_study_and_gets_the_sr_back(setup, studies):
    server, orthanc = setup
    if orthanc is None:
        need("Orthanc")
    study = studies[0]
    uid = study_uid(study)
    for path in study.values():
        assert orthanc.client.post("/instances", content=path.read_bytes()).status_code == 200
    (found,) = orthanc.client.post("/tools/lookup", content=uid).json()
    r = orthanc.client.post("/modalities/mammokit/store", json={"Resources": [found["ID"]], "Synchronous": True})
    assert r.status_code == 200, r.text
    s = server.wait_status(uid)
    deadline = time.time() + 60
    while time.time() < deadline:
        s = server.wait_status(uid)
        if s["export"] and s["export"]["status"] != "pending":
            break
        time.sleep(0.3)
    assert s["export"]["status"] == "sent", s["export"]
    instances = orthanc.client.get(f"/studies/{found['ID']}/instances", params={"expand": True}).json()
    by_modality = {}
    for inst in instances:
        tags = orthanc.client.get(f"/instances/{inst['ID']}/simplified-tags").json()
        by_modality.setdefault(tags["Modality"], []).append(inst["ID"])
    assert len(by_modality["MG"]) == 4 and len(by_modality["SEG"]) == 4 and len(by_modality["SR"]) == 1
    sr = pydicom.dcmread(io.BytesIO(orthanc.client.get(f"/instances/{by_modality['SR'][0]}/file").content))
    back = read_sr_probabilities(sr)
    p = s["probabilities"]
    assert back["L"]["malignant"] == pytest.approx(p["left_malignant"], abs=1e-6)
    assert back["R"]["benign"] == pytest.approx(p["right_benign"], abs=1e-6)
    assert "Traceback" not in server.log.read_text()


def test_compressed_syntaxes_and_idempotent_resend(tmp_path, setup, studies):
    server, _ = setup
    study = studies[2]
    paths = []
    for (view, path), syntax in zip(study.items(), (JPEG2000Lossless, RLELossless, None, None)):
        ds = pydicom.dcmread(path)
        if syntax is not None and ds.file_meta.TransferSyntaxUID != syntax:
            if ds.file_meta.TransferSyntaxUID.is_compressed:
                ds.decompress()
            ds.compress(syntax, generate_instance_uid=False)
        out = tmp_path / f"{view}.dcm"
        ds.save_as(out, enforce_file_format=True)
        paths.append(out)
    syntaxes = {str(pydicom.dcmread(p).file_meta.TransferSyntaxUID) for p in paths}
    assert {JPEG2000Lossless, RLELossless} <= syntaxes
    assert c_store(server.dicom_port, paths) == [0, 0, 0, 0]
    s = server.wait_status(study_uid(study))
    assert s["views_used"] == ["L-CC", "R-CC", "L-MLO", "R-MLO"]
    assert c_store(server.dicom_port, paths) == [0, 0, 0, 0]  # the same instances again
    time.sleep(1.5)
    s = server.wait_status(study_uid(study))
    assert s["version"] == 1 and len(s["predictions"]) == 1
    with pytest.raises(ConnectionRefusedError):
        c_store(server.dicom_port, paths[:1], calling="INTRUDER")


def test_export_refusals(tmp_path, studies, loaded_models):
    """A destination that does not know our AE title refuses permanently: export_failed with a hint,
    no retry loop; a closed port is temporary."""
    from pynetdicom import AE, evt

    from mammokit.serve.service import Service, ServiceSettings

    port = free_port()
    scp = AE(ae_title="PACS")
    scp.require_calling_aet = ["SOMEONE"]
    scp.add_supported_context("1.2.840.10008.5.1.4.1.1.88.34")
    server = scp.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, lambda e: 0)])
    try:
        sr = tmp_path / "sr.dcm"
        from tests.serve.test_results import MODEL
        from mammokit.serve.results import build_sr

        build_sr({"L-CC": pydicom.dcmread(studies[0]["L-CC"])}, {"L": {"malignant": 0.1, "benign": 0.2}},
                 MODEL).save_as(sr, enforce_file_format=True)
        out = send_files([sr], f"PACS@127.0.0.1:{port}")
        assert not out.ok and out.permanent and "rejected" in out.reason and "MAMMOKIT" in out.hint
        out = send_files([sr], f"PACS@127.0.0.1:{free_port()}", timeout=3)
        assert not out.ok and not out.permanent
        service = Service(ServiceSettings(state=tmp_path / "state", send_to=f"PACS@127.0.0.1:{port}", study_timeout=0.5,
                                          tta=0), loaded_models)
        service.start(dicom=False)
        try:
            for p in studies[1].values():
                service.ingest(p.read_bytes())
            uid = study_uid(studies[1])
            deadline = time.time() + 60
            while time.time() < deadline:
                st = service.store.study(uid)
                if st["export_status"] == "export_failed":
                    break
                time.sleep(0.2)
            assert st["status"] == "done" and st["export_status"] == "export_failed"
            assert st["export_attempts"] == 1 and "hint" in st["export_reason"]
        finally:
            service.stop()
    finally:
        server.shutdown()
