"""A real Orthanc (the Debian package) on free loopback ports with its own config and storage."""

from __future__ import annotations

import json
import subprocess
import time

from tests.serve.conftest import free_port, need


class Orthanc:
    def __init__(self, root, mammokit_port: int) -> None:
        self.exe = need("Orthanc")
        self.http, self.dicom = free_port(), free_port()
        root.mkdir(parents=True, exist_ok=True)
        self.config = root / "orthanc.json"
        self.config.write_text(json.dumps({
            "Name": "mammokit-test", "StorageDirectory": str(root / "db"), "IndexDirectory": str(root / "db"),
            "HttpPort": self.http, "DicomPort": self.dicom, "DicomAet": "ORTHANC", "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False, "HttpServerEnabled": True, "Plugins": [], "StableAge": 1,
            "DicomAlwaysAllowStore": True, "DicomAlwaysAllowEcho": True, "DicomCheckCalledAet": False,
            "DicomModalities": {"mammokit": ["MAMMOKIT", "127.0.0.1", mammokit_port]},
        }))
        self.log = open(root / "orthanc.log", "wb")
        self.proc = subprocess.Popen([self.exe, str(self.config)], stdout=self.log, stderr=subprocess.STDOUT)
        import httpx

        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.http}", timeout=60)
        for _ in range(100):
            try:
                if self.client.get("/system").status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("Orthanc did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)
        self.log.close()
