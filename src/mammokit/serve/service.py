"""The node as one object: state, DICOM SCP, worker, exporter (the HTTP app is built on it).

:class:`Service` is what ``mammokit serve`` runs and what the tests start in-process:

* at start-up it recovers the state folder (running studies re-queued, orphan files re-registered);
* :meth:`Service.ingest` takes an instance's bytes (the upload route), stores it durably and
  classifies it, exactly as the SCP does for C-STORE;
* the exporter thread C-STOREs each done version's SR and SEGs to ``send_to``, retrying temporary
  failures with exponential back-off (``retry_base`` * 2^attempt, at most ``max_attempts``); a
  permanent refusal stops at once with ``export_failed`` and a hint.
"""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from mammokit.errors import ImageReadError, MammokitError
from mammokit.serve.intake import classify, header_uids
from mammokit.serve.store import Store
from mammokit.utils.log import get_logger

log = get_logger(__name__)

__all__ = ["Service", "ServiceSettings"]


@dataclass
class ServiceSettings:
    state: Path
    ae_title: str = "MAMMOKIT"
    host: str = "127.0.0.1"
    dicom_port: int = 11112
    allow_ae: tuple[str, ...] = ()
    send_to: str | None = None
    study_timeout: float = 30.0
    batch_studies: int = 4
    tta: int = 10
    seed: int = 0
    retry_base: float = 2.0
    max_attempts: int = 8
    extra: dict = field(default_factory=dict)


class Service:
    """State + DICOM node + worker + exporter (see the module docstring)."""

    def __init__(self, settings: ServiceSettings, models) -> None:
        from mammokit.serve.worker import Worker, WorkerSettings

        if settings.send_to:
            from mammokit.serve.dicom_node import parse_destination

            parse_destination(settings.send_to)  # a typo fails at start-up
        self.settings = settings
        self.store = Store(settings.state)
        self.models = models
        self.worker = Worker(self.store, models, WorkerSettings(
            study_timeout=settings.study_timeout, batch_studies=settings.batch_studies, tta=settings.tta,
            seed=settings.seed, ae_title=settings.ae_title, export=bool(settings.send_to)))
        self.scp = None
        self._stop = threading.Event()
        self._exporter: threading.Thread | None = None
        self.started = time.time()

    # ------------------------------------------------------------------ life cycle
    def start(self, dicom: bool = True) -> None:
        recovered = self.store.recover()
        orphans = 0
        for path in self.store.orphans():
            try:
                info = classify(path)
            except MammokitError as exc:
                log.warning("%s: left in the state folder but unreadable (%s)", path, exc)
                continue
            orphans += int(self.store.add_instance(None, info, path))
        if recovered["requeued"] or orphans:
            log.info("recovered state: %d interrupted studies re-queued, %d instances re-registered",
                     recovered["requeued"], orphans)
        if dicom:
            from mammokit.serve.dicom_node import start_scp

            self.scp = start_scp(self.store, self.settings.ae_title, self.settings.host, self.settings.dicom_port,
                                 self.settings.allow_ae)
        self.worker.start()
        if self.settings.send_to:
            self._exporter = threading.Thread(target=self._export_loop, name="mammokit-export", daemon=True)
            self._exporter.start()

    def stop(self) -> None:
        self._stop.set()
        if self.scp is not None:
            self.scp.shutdown()
        self.worker.stop()
        if self._exporter is not None:
            self._exporter.join(10)
        self.store.close()

    # ------------------------------------------------------------------ intake
    def ingest(self, data: bytes, source: str = "upload") -> dict:
        """Store and classify one instance given as file bytes; returns ``{"sop_uid", "study_uid",
        "stored" (False: already known), "usable", "reason"}``.

        Raises:
            ImageReadError: not a DICOM file, or one without Study / SOP Instance UID.
        """
        import pydicom
        from pydicom.errors import InvalidDicomError

        try:
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
            study, sop = header_uids(ds)
        except InvalidDicomError:
            raise ImageReadError(f"{source}: not a DICOM file (no DICM prefix / file meta)") from None
        except ImageReadError as exc:
            raise ImageReadError(f"{source}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - a corrupt header raises many types
            raise ImageReadError(f"{source}: corrupt DICOM file ({type(exc).__name__}: {exc})") from None
        if self.store.has_instance(sop):
            return {"sop_uid": sop, "study_uid": study, "stored": False, "usable": None, "reason": "already received"}
        from mammokit.serve.store import write_durably

        path = self.store.instance_path(study, sop)
        write_durably(path, data)
        try:
            info = classify(path, source)
        except MammokitError as exc:
            info = {"study_uid": study, "sop_uid": sop, "usable": False, "reason": f"unreadable: {exc}",
                    "calling_ae": source, "modality": str(ds.get("Modality") or "") or None}
        stored = self.store.add_instance(None, info, path)
        if stored and not info.get("usable"):
            log.info("instance %s of study %s not usable: %s", sop, study, info.get("reason"))
        return {"sop_uid": sop, "study_uid": study, "stored": stored, "usable": info.get("usable"),
                "reason": info.get("reason")}

    # ------------------------------------------------------------------ export
    def _export_loop(self) -> None:
        while not self._stop.is_set():
            try:
                for study in self.store.due_exports():
                    self._export(study)
            except Exception:  # noqa: BLE001 - a bug must not stop the exporter; logged in full
                log.exception("exporter: unexpected error")
            self._stop.wait(0.5)

    def _export(self, study: dict) -> None:
        from mammokit.serve.dicom_node import send_files

        uid, version = study["study_uid"], int(study["version"])
        folder = self.store.result_dir(uid, version)
        files = [folder / "sr.dcm", *sorted(folder.glob("seg_*.dcm"))]
        attempts = int(study.get("export_attempts") or 0) + 1
        outcome = send_files(files, self.settings.send_to, self.settings.ae_title)
        if outcome.ok:
            self.store.set_export(uid, "sent", None, attempts, None)
            log.info("study %s v%d exported to %s (%d files)", uid, version, self.settings.send_to, len(files))
            return
        reason = outcome.reason + (f"; hint: {outcome.hint}" if outcome.hint else "")
        if outcome.permanent or attempts >= self.settings.max_attempts:
            final = reason if outcome.permanent else f"gave up after {attempts} attempts: {reason}"
            self.store.set_export(uid, "export_failed", final, attempts, None)
            log.error("study %s v%d: export_failed: %s", uid, version, final)
            return
        delay = self.settings.retry_base * 2 ** (attempts - 1)
        self.store.set_export(uid, "pending", reason, attempts, time.time() + delay)
        log.warning("study %s v%d: export attempt %d failed (%s); retrying in %.0f s", uid, version, attempts,
                    reason, delay)
