"""Fixtures for the serve tests: tiny checkpoints, synthetic MG studies, a server process.

The server runs as a real ``mammokit serve`` process (``python -m mammokit serve``) on free
loopback ports with its own state folder, so the tests see what a user sees (and can kill it)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.serve_fixtures import make_studies, make_tiny_models

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-token-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def need(binary: str) -> str:
    path = shutil.which(binary) or (f"/usr/sbin/{binary}" if os.path.exists(f"/usr/sbin/{binary}") else None)
    if path is None:
        pytest.skip(f"{binary} not installed (run scripts/install-system-deps.sh as root)")
    return path


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    return make_tiny_models(tmp_path_factory.mktemp("serve_models"))


@pytest.fixture(scope="session")
def studies(tmp_path_factory):
    """Four synthetic four-view studies ``[{view: path}]``."""
    return make_studies(tmp_path_factory.mktemp("serve_studies"), n=4, seed=11)


@pytest.fixture(scope="session")
def loaded_models(tiny_models):
    from mammokit.inference.exam import load_exam_models

    patch, breast = tiny_models
    return load_exam_models([breast], patch, device="cpu")


class Server:
    """A ``mammokit serve`` process."""

    def __init__(self, state: Path, models, extra=(), study_timeout: float = 2.0) -> None:
        self.state, self.models, self.extra, self.study_timeout = state, models, list(extra), study_timeout
        self.dicom_port, self.http_port = free_port(), free_port()
        self.proc = None
        self.log = state.parent / f"{state.name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout: float = 90) -> "Server":
        import httpx

        patch, breast = self.models
        cmd = [sys.executable, "-m", "mammokit", "serve", "--state", str(self.state), "--model", str(breast),
               "--patch-model", str(patch), "--dicom-port", str(self.dicom_port), "--http-port", str(self.http_port),
               "--token", TOKEN, "--study-timeout", str(self.study_timeout), "--tta", "2", "--device", "cpu",
               *self.extra]
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
                   OMP_NUM_THREADS="1")
        self._logf = open(self.log, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self._logf, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"server did not start:\n{self.log.read_text()}")

    def client(self):
        import httpx

        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if getattr(self, "_logf", None):
            self._logf.close()

    def wait_status(self, uid: str, statuses=("done",), timeout: float = 60, version: int | None = None) -> dict:
        deadline = time.time() + timeout
        with self.client() as c:
            while time.time() < deadline:
                r = c.get(f"/api/studies/{uid}")
                if r.status_code == 200:
                    s = r.json()
                    if s["status"] in statuses and (version is None or s["version"] >= version):
                        return s
                time.sleep(0.3)
        raise AssertionError(f"study {uid} not {statuses} in {timeout} s; log:\n{self.log.read_text()[-4000:]}")


@pytest.fixture(scope="session")
def pacs(tmp_path_factory):
    """``(server, orthanc)``: one ``mammokit serve`` for the API, DICOM and viewer tests, and, when
    the Debian package is installed, a real Orthanc as its PACS (``orthanc`` None otherwise: the
    Orthanc test skips, the others run). Calling AEs allowed: ORTHANC and TESTSCU; uploads
    limited to 1 MB."""
    root = tmp_path_factory.mktemp("pacs")
    models = make_tiny_models(root / "models", seed=0)
    server = Server(root / "state", models, extra=["--max-upload-mb", "1", "--allow-ae", "ORTHANC,TESTSCU",
                                                     "--retry-base", "0.5"])
    orthanc = None
    if shutil.which("Orthanc") or os.path.exists("/usr/sbin/Orthanc"):
        from tests.serve.orthanc import Orthanc

        orthanc = Orthanc(root / "orthanc", server.dicom_port)
        server.extra += ["--send-to", f"ORTHANC@127.0.0.1:{orthanc.dicom}"]
    server.start()
    yield server, orthanc
    server.stop()
    if orthanc is not None:
        orthanc.stop()


@pytest.fixture(scope="session")
def server(pacs):
    return pacs[0]


def study_uid(study: dict) -> str:
    import pydicom

    return str(pydicom.dcmread(next(iter(study.values())), stop_before_pixels=True).StudyInstanceUID)


def c_store(port: int, paths, calling: str = "TESTSCU", called: str = "MAMMOKIT") -> list[int]:
    """Send files over one association; the statuses (or raises when not associated)."""
    import pydicom
    from pynetdicom import AE

    datasets = [pydicom.dcmread(p) for p in paths]
    ae = AE(ae_title=calling)
    for ds in datasets:
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    if not assoc.is_established:
        raise ConnectionRefusedError("association not established")
    try:
        return [int(assoc.send_c_store(ds).Status) for ds in datasets]
    finally:
        assoc.release()


def variant(src, dst, **changes):
    """A copy of a DICOM file with a new SOPInstanceUID and the given changes (None deletes)."""
    import pydicom
    from pydicom.uid import generate_uid

    ds = pydicom.dcmread(src)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    for k, v in changes.items():
        if v is None:
            if k in ds:
                delattr(ds, k)
        else:
            setattr(ds, k, v)
    ds.save_as(dst, enforce_file_format=True)
    return Path(dst)


def upload(client, paths):
    files = [("files", (Path(p).name, Path(p).read_bytes(), "application/dicom")) for p in paths]
    return client.post("/api/studies", files=files)
