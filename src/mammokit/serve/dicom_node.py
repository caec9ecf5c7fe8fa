"""The DICOM side (pynetdicom): a storage SCP for incoming studies and an SCU that exports results.

SCP (:func:`start_scp`): C-ECHO, and C-STORE of mammography images (MG For Presentation and For
Processing; DX, CR and Secondary Capture are accepted too, stored and listed as "not MG") in every
transfer syntax the reader decodes: the uncompressed ones plus each compressed syntax whose
pydicom decoder is installed (JPEG 2000 with pylibjpeg-openjpeg, JPEG lossless with
pylibjpeg-libjpeg, RLE always). With ``allow_ae`` only those calling AE titles can associate
(others are rejected at association, "calling AE title not recognised"); the called AE title
must be ours. A C-STORE is answered Success only after the instance is durably on disk and
registered (:meth:`mammokit.serve.store.Store.add_instance`): 0xA700 (out of resources) when it
cannot be written, 0xC000 when it cannot be parsed. One log line per association.

SCU (:func:`send_files`): C-STORE of the result files to ``--send-to AE@host:port``; the outcome
tells the exporter whether to retry (:class:`SendOutcome`).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mammokit.errors import MammokitError, UsageError
from mammokit.serve.intake import classify, header_uids
from mammokit.serve.store import Store
from mammokit.utils.log import get_logger

log = get_logger(__name__)

__all__ = ["start_scp", "send_files", "parse_destination", "SendOutcome", "accepted_transfer_syntaxes",
           "IMAGE_STORAGE"]

IMAGE_STORAGE = {
    "1.2.840.10008.5.1.4.1.1.1.2": "Digital Mammography X-Ray Image Storage - For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.2.1": "Digital Mammography X-Ray Image Storage - For Processing",
    "1.2.840.10008.5.1.4.1.1.1.1": "Digital X-Ray Image Storage - For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.1.1": "Digital X-Ray Image Storage - For Processing",
    "1.2.840.10008.5.1.4.1.1.1": "Computed Radiography Image Storage",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image Storage",
}
_UNCOMPRESSED = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2"]
_COMPRESSED = ["1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201",
               "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203", "1.2.840.10008.1.2.4.57",
               "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81",
               "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.5"]


def accepted_transfer_syntaxes() -> list[str]:
    """Uncompressed syntaxes plus every compressed one pydicom can decode here."""
    from pydicom.pixels import get_decoder

    out = list(_UNCOMPRESSED)
    for uid in _COMPRESSED:
        try:
            if get_decoder(uid).is_available:
                out.append(uid)
        except NotImplementedError:
            continue
    return out


def parse_destination(text: str) -> tuple[str, str, int]:
    """``AE@host:port`` -> ``(ae, host, port)``."""
    m = re.fullmatch(r"([^@\s]{1,16})@([^:\s]+):(\d{1,5})", text.strip())
    if not m or not 0 < int(m.group(3)) < 65536:
        raise UsageError(f"--send-to {text!r}: expected AE@host:port, e.g. ORTHANC@127.0.0.1:4242")
    return m.group(1), m.group(2), int(m.group(3))


class _Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_assoc: dict[int, dict] = {}


def start_scp(store: Store, ae_title: str = "MAMMOKIT", host: str = "127.0.0.1", port: int = 11112,
              allow_ae: Sequence[str] = (), on_instance=None):
    """Start the storage SCP in the background; returns the pynetdicom server (``.shutdown()``).

    ``on_instance(info)`` is called after each newly stored instance (e.g. to wake the worker).
    """
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import Verification

    ae = AE(ae_title=ae_title)
    ae.require_called_aet = True
    ae.require_calling_aet = [a for a in allow_ae if a]
    ae.maximum_pdu_size = 0
    ae.network_timeout = 60
    ae.acse_timeout = 30
    ae.dimse_timeout = 120
    ae.maximum_associations = 16
    syntaxes = accepted_transfer_syntaxes()
    ae.add_supported_context(Verification)
    for uid in IMAGE_STORAGE:
        ae.add_supported_context(uid, syntaxes)
    counts = _Counts()

    def opened(event) -> None:
        with counts.lock:
            counts.by_assoc[id(event.assoc)] = {"start": time.perf_counter(), "stored": 0, "dup": 0, "unusable": 0,
                                               "failed": 0}

    def closed(event, how: str) -> None:
        with counts.lock:
            c = counts.by_assoc.pop(id(event.assoc), None)
        if c is None:
            return
        req = event.assoc.requestor
        log.info("association from %s@%s:%s %s: %d stored (%d unusable), %d duplicates, %d failed in %.1f s",
                 req.ae_title, req.address, req.port, how, c["stored"], c["unusable"], c["dup"], c["failed"],
                 time.perf_counter() - c["start"])

    def bump(event, key: str) -> None:
        with counts.lock:
            c = counts.by_assoc.get(id(event.assoc))
            if c is not None:
                c[key] += 1

    def handle_echo(event) -> int:
        return 0x0000

    def handle_store(event) -> int:
        calling = event.assoc.requestor.ae_title
        try:
            study, sop = header_uids(event.dataset)
        except Exception as exc:  # noqa: BLE001 - pydicom raises many types for a malformed dataset
            log.warning("C-STORE from %s refused: cannot parse the dataset (%s)", calling, exc)
            bump(event, "failed")
            return 0xC000
        if store.has_instance(sop):
            bump(event, "dup")
            return 0x0000  # idempotent: acknowledged, not stored twice
        path = store.instance_path(study, sop)
        try:
            from mammokit.serve.store import write_durably

            write_durably(path, event.encoded_dataset())
        except OSError as exc:
            log.error("C-STORE from %s: cannot write %s (%s): answered out of resources", calling, path, exc)
            bump(event, "failed")
            return 0xA700
        try:
            info = classify(path, calling)
        except MammokitError as exc:
            # Stored and kept (never lose what was sent); listed as unusable with the reason.
            info = {"study_uid": study, "sop_uid": sop, "usable": False, "reason": f"unreadable: {exc}",
                    "calling_ae": calling, "sop_class": str(event.dataset.get("SOPClassUID", "")) or None,
                    "modality": str(event.dataset.get("Modality", "")) or None}
        try:
            new = store.add_instance(None, info, path)
        except Exception as exc:  # noqa: BLE001 - a database error must refuse the instance, not crash
            log.exception("C-STORE from %s: cannot register %s", calling, sop)
            bump(event, "failed")
            return 0xA700
        bump(event, "stored" if new else "dup")
        if new and not info.get("usable"):
            bump(event, "unusable")
            log.info("instance %s of study %s not usable: %s", sop, study, info.get("reason"))
        if new and on_instance is not None:
            on_instance(info)
        return 0x0000

    handlers = [
        (evt.EVT_C_ECHO, handle_echo), (evt.EVT_C_STORE, handle_store), (evt.EVT_ESTABLISHED, opened),
        (evt.EVT_RELEASED, lambda e: closed(e, "released")), (evt.EVT_ABORTED, lambda e: closed(e, "aborted")),
        (evt.EVT_REJECTED, lambda e: log.warning("association from %s@%s refused (calling AE title not allowed "
                                                 "or called AE title not %s)", e.assoc.requestor.ae_title,
                                                 e.assoc.requestor.address, ae_title)),
    ]
    server = ae.start_server((host, port), block=False, evt_handlers=handlers)
    log.info("DICOM node %s listening on %s:%d (allowed calling AEs: %s; %d transfer syntaxes)", ae_title, host,
             port, ", ".join(ae.require_calling_aet) or "any", len(syntaxes))
    return server


@dataclass
class SendOutcome:
    """Result of :func:`send_files`: ``ok``; otherwise ``permanent`` says whether retrying can
    help, ``reason`` what happened and ``hint`` what to change."""

    ok: bool
    permanent: bool = False
    reason: str = ""
    hint: str = ""


def send_files(paths: Sequence[Path], destination: str, ae_title: str = "MAMMOKIT", timeout: float = 30) -> SendOutcome:
    """C-STORE ``paths`` (SR / SEG files) to ``destination`` (``AE@host:port``) on one association.

    Temporary: connection refused or timed out, association rejected (transient), out of
    resources (0xA7xx), aborted. Permanent: association rejected (permanent), e.g. our calling
    AE title unknown to the destination; a refused SOP class; any other failure status.
    """
    import pydicom
    from pynetdicom import AE, evt

    aet, host, port = parse_destination(destination)
    datasets = [pydicom.dcmread(p) for p in paths]
    ae = AE(ae_title=ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    for uid in dict.fromkeys(str(d.SOPClassUID) for d in datasets):
        ae.add_requested_context(uid, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
    reject: dict = {}

    def on_acse(event) -> None:
        p = event.primitive
        if getattr(p, "result", None) in (0x01, 0x02):
            reject.update(result=p.result, source=p.result_source, diagnostic=p.diagnostic,
                          text=f"{p.result_str}, {p.source_str}: {p.reason_str}")

    assoc = ae.associate(host, port, ae_title=aet, evt_handlers=[(evt.EVT_ACSE_RECV, on_acse)])
    hint_aet = (f"the destination must know our AE title {ae_title!r} "
                f"(Orthanc: add it to DicomModalities, or PUT /modalities/mammokit "
                f"{{\"AET\": \"{ae_title}\", \"Host\": ..., \"Port\": ...}})")
    if not assoc.is_established:
        if assoc.is_rejected and reject:
            permanent = reject.get("result") == 0x01
            hint = hint_aet if reject.get("diagnostic") == 3 and reject.get("source") == 1 else (
                f"check the destination's AE title ({aet})" if reject.get("diagnostic") == 7 else "")
            return SendOutcome(False, permanent, f"association rejected by {destination}: {reject['text']}", hint)
        return SendOutcome(False, False, f"cannot associate with {destination} (connection refused, timed out or "
                                         f"aborted)")
    try:
        for ds, path in zip(datasets, paths):
            if not any(cx.abstract_syntax == ds.SOPClassUID for cx in assoc.accepted_contexts):
                return SendOutcome(False, True, f"{destination} does not accept {ds.SOPClassUID.name} "
                                                f"({ds.SOPClassUID})", "enable this SOP class on the destination")
            status = assoc.send_c_store(ds)
            code = int(getattr(status, "Status", -1)) if status else -1
            if code == -1:
                return SendOutcome(False, False, f"no response from {destination} to C-STORE of {path.name}")
            if code == 0x0000 or code in (0x0001, 0x0107, 0x0116) or 0xB000 <= code <= 0xBFFF:
                continue
            if 0xA700 <= code <= 0xA7FF:
                return SendOutcome(False, False, f"{destination} out of resources (0x{code:04X}) for {path.name}")
            hint = hint_aet if code == 0x0124 else ""
            return SendOutcome(False, True, f"{destination} refused {path.name} with status 0x{code:04X}", hint)
        return SendOutcome(True)
    finally:
        if assoc.is_established:
            assoc.release()
