"""kill -9 in the middle of studies and restart on the same state folder: nothing received is lost,
pending studies complete, nothing is predicted twice."""

from __future__ import annotations

import sqlite3
import time

from tests.serve.conftest import Server, c_store, study_uid


def test_kill9_and_restart(tmp_path, tiny_models, studies):
    state = tmp_path / "state"
    a, b, c = studies[0], studies[1], studies[2]
    s = Server(state, tiny_models, study_timeout=60).start()
    try:
        assert c_store(s.dicom_port, list(a.values())) == [0] * 4
        s.wait_status(study_uid(a))
        # b complete (queued or running when killed), c half sent: both in flight
        assert c_store(s.dicom_port, list(b.values())) == [0] * 4
        half = list(c.values())
        assert c_store(s.dicom_port, half[:2]) == [0, 0]
        s.kill9()
    finally:
        s.stop()
    with sqlite3.connect(state / "mammokit.sqlite") as db:
        stored = {r[0] for r in db.execute("SELECT sop_uid FROM instances")}
    assert len(stored) == 10  # every acknowledged instance is in the store after the kill
    s2 = Server(state, tiny_models, study_timeout=60)
    s2.log = s.log  # one log for both runs
    s2.start()
    try:
        # the sender re-sends what it is not sure about: acknowledged, not stored twice
        assert c_store(s2.dicom_port, half) == [0] * 4
        for st in (a, b, c):
            s2.wait_status(study_uid(st))
        time.sleep(1.0)
        with s2.client() as client:
            for st in (a, b, c):
                info = client.get(f"/api/studies/{study_uid(st)}").json()
                assert info["status"] == "done" and info["version"] == 1, info
                assert [p["version"] for p in info["predictions"]] == [1]
                assert len(info["instances"]) == 4
    finally:
        s2.stop()
    assert "Traceback" not in s.log.read_text()
